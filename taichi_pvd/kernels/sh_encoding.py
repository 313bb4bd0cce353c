"""Real spherical harmonics of directions: Taichi forward/backward kernels and a torch reference.

``sh_encode(d, n_bands)`` returns the ``n_bands**2`` real SH basis functions of bands
``0 .. n_bands - 1`` at unit directions ``d = (x, y, z)``: 4 bands (16 values, "degree 4" in
Instant-NGP's naming) for the shared colour head, 3 bands (9 values, "SH degree 2") for the
Plenoxels-style grid. Constants, ordering and signs are those of Instant-NGP (tiny-cuda-nn) and
Plenoxels (svox2 ``eval_sh_bases``), orthonormal on the unit sphere::

    band 0: C0
    band 1: -C1 y,  C1 z,  -C1 x
    band 2: C2a xy, -C2a yz, C2b (2zz - xx - yy), -C2a xz, C2c (xx - yy)
    band 3: -C3a y (3xx - yy), C3b xyz, -C3c y (4zz - xx - yy), C3d z (2zz - 3xx - 3yy),
            -C3c x (4zz - xx - yy), C3e z (xx - yy), -C3a x (xx - 3yy)

with the constants below. Band ``l`` is written as a homogeneous polynomial of degree ``l`` (the
Plenoxels form); for unit ``d`` it equals tiny-cuda-nn's form (which substitutes
``xx + yy + zz = 1``). ``d`` is not normalised here: pass unit vectors. The kernels compute in
float32 and take float32 only.
"""

import taichi as ti
import torch

from taichi_pvd import backend
from taichi_pvd.kernels.fast_launch import fast_launch
from taichi_pvd.errors import ConfigError

C0 = 0.28209479177387814  # 1 / (2 sqrt(pi))
C1 = 0.4886025119029199  # sqrt(3) / (2 sqrt(pi))
C2A = 1.0925484305920792  # sqrt(15) / (2 sqrt(pi))
C2B = 0.31539156525252005  # sqrt(5) / (4 sqrt(pi))
C2C = 0.5462742152960396  # sqrt(15) / (4 sqrt(pi))
C3A = 0.5900435899266435  # sqrt(35 / 2) / (4 sqrt(pi))
C3B = 2.890611442640554  # sqrt(105) / (2 sqrt(pi))
C3C = 0.4570457994644658  # sqrt(21 / 2) / (4 sqrt(pi))
C3D = 0.3731763325901154  # sqrt(7) / (4 sqrt(pi))
C3E = 1.445305721320277  # sqrt(105) / (4 sqrt(pi))

#: Supported numbers of bands (output width ``n_bands**2``).
MAX_BANDS = 4
_BLOCK_DIM = 128


@fast_launch
@ti.kernel
def _sh_forward(
    d: ti.types.ndarray(dtype=ti.f32, ndim=2),
    out: ti.types.ndarray(dtype=ti.f32, ndim=2),
    n_bands: ti.i32,
):
    ti.loop_config(block_dim=_BLOCK_DIM)
    for n in range(d.shape[0]):
        x, y, z = d[n, 0], d[n, 1], d[n, 2]
        out[n, 0] = C0
        if n_bands > 1:
            out[n, 1] = -C1 * y
            out[n, 2] = C1 * z
            out[n, 3] = -C1 * x
        if n_bands > 2:
            xx, yy, zz = x * x, y * y, z * z
            out[n, 4] = C2A * x * y
            out[n, 5] = -C2A * y * z
            out[n, 6] = C2B * (2.0 * zz - xx - yy)
            out[n, 7] = -C2A * x * z
            out[n, 8] = C2C * (xx - yy)
        if n_bands > 3:
            xx, yy, zz = x * x, y * y, z * z
            out[n, 9] = -C3A * y * (3.0 * xx - yy)
            out[n, 10] = C3B * x * y * z
            out[n, 11] = -C3C * y * (4.0 * zz - xx - yy)
            out[n, 12] = C3D * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
            out[n, 13] = -C3C * x * (4.0 * zz - xx - yy)
            out[n, 14] = C3E * z * (xx - yy)
            out[n, 15] = -C3A * x * (xx - 3.0 * yy)


@fast_launch
@ti.kernel
def _sh_backward(
    d: ti.types.ndarray(dtype=ti.f32, ndim=2),
    grad_out: ti.types.ndarray(dtype=ti.f32, ndim=2),
    grad_d: ti.types.ndarray(dtype=ti.f32, ndim=2),
    n_bands: ti.i32,
):
    ti.loop_config(block_dim=_BLOCK_DIM)
    for n in range(d.shape[0]):
        x, y, z = d[n, 0], d[n, 1], d[n, 2]
        gx, gy, gz = 0.0, 0.0, 0.0
        if n_bands > 1:
            gx -= C1 * grad_out[n, 3]
            gy -= C1 * grad_out[n, 1]
            gz += C1 * grad_out[n, 2]
        if n_bands > 2:
            g4, g5, g6 = grad_out[n, 4], grad_out[n, 5], grad_out[n, 6]
            g7, g8 = grad_out[n, 7], grad_out[n, 8]
            gx += C2A * (y * g4 - z * g7) + 2.0 * x * (C2C * g8 - C2B * g6)
            gy += C2A * (x * g4 - z * g5) - 2.0 * y * (C2B * g6 + C2C * g8)
            gz += -C2A * (y * g5 + x * g7) + 4.0 * C2B * z * g6
        if n_bands > 3:
            g9, g10, g11, g12 = grad_out[n, 9], grad_out[n, 10], grad_out[n, 11], grad_out[n, 12]
            g13, g14, g15 = grad_out[n, 13], grad_out[n, 14], grad_out[n, 15]
            xx, yy, zz = x * x, y * y, z * z
            gx += (
                -6.0 * C3A * x * y * g9
                + C3B * y * z * g10
                + 2.0 * C3C * x * y * g11
                - 6.0 * C3D * x * z * g12
                - C3C * (4.0 * zz - 3.0 * xx - yy) * g13
                + 2.0 * C3E * x * z * g14
                - 3.0 * C3A * (xx - yy) * g15
            )
            gy += (
                -3.0 * C3A * (xx - yy) * g9
                + C3B * x * z * g10
                - C3C * (4.0 * zz - xx - 3.0 * yy) * g11
                - 6.0 * C3D * y * z * g12
                + 2.0 * C3C * x * y * g13
                - 2.0 * C3E * y * z * g14
                + 6.0 * C3A * x * y * g15
            )
            gz += (
                C3B * x * y * g10
                - 8.0 * C3C * y * z * g11
                + 3.0 * C3D * (2.0 * zz - xx - yy) * g12
                - 8.0 * C3C * x * z * g13
                + C3E * (xx - yy) * g14
            )
        grad_d[n, 0] = gx
        grad_d[n, 1] = gy
        grad_d[n, 2] = gz


class _ShEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, d, n_bands):
        out = torch.empty((d.shape[0], n_bands * n_bands), dtype=torch.float32, device=d.device)
        if d.shape[0] > 0:
            _sh_forward(d.detach(), out, n_bands)
        ctx.save_for_backward(d)
        ctx.n_bands = n_bands
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        if not ctx.needs_input_grad[0]:
            return None, None
        (d,) = ctx.saved_tensors
        grad_d = torch.empty_like(d)
        if d.shape[0] > 0:
            _sh_backward(d.detach(), grad_out.contiguous(), grad_d, ctx.n_bands)
        return grad_d, None


def sh_encode(d: torch.Tensor, n_bands: int) -> torch.Tensor:
    """Real spherical harmonics of bands ``0 .. n_bands - 1`` at directions ``d``.

    Args:
        d: ``[N, 3]`` float32 unit directions (not normalised here), on the backend's device;
            differentiable (the gradient is that of the polynomials in the module docstring).
        n_bands: 1 to 4; 4 gives the 16-value encoding of the colour head, 3 the 9 values of
            the Plenoxels-style grid.

    Returns:
        ``[N, n_bands**2]`` float32, ordered by band then by ``m`` from ``-l`` to ``l``.

    Raises:
        ConfigError: ``n_bands`` outside 1..4.
        TypeError: ``d`` not float32.
        ValueError: ``d`` not of shape ``[N, 3]`` or not on the backend's device.

    Example:
        >>> sh_encode(torch.tensor([[0.0, 0.0, 1.0]]), 2)
        tensor([[0.2821, -0.0000, 0.4886, -0.0000]])
    """
    if isinstance(n_bands, bool) or not isinstance(n_bands, int) or not 1 <= n_bands <= MAX_BANDS:
        raise ConfigError(f"sh_encode supports 1 to {MAX_BANDS} bands, got n_bands={n_bands!r}")
    arch = backend.init()
    if d.dtype != torch.float32:
        raise TypeError(f"sh_encode takes float32 directions, got {d.dtype}")
    if d.dim() != 2 or d.shape[1] != 3:
        raise ValueError(f"sh_encode: d must have shape [N, 3], got {list(d.shape)}")
    if d.device.type != arch:
        raise ValueError(f"sh_encode: d is on {d.device}, the backend runs on {arch}")
    return _ShEncode.apply(d.contiguous(), n_bands)


def sh_encode_reference(d: torch.Tensor, n_bands: int) -> torch.Tensor:
    """Pure-torch :func:`sh_encode` in the dtype of ``d`` (use float64 to check the kernel),
    differentiable through torch autograd. Same shapes as :func:`sh_encode`."""
    x, y, z = d.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    bands = [
        [torch.full_like(x, C0)],
        [-C1 * y, C1 * z, -C1 * x],
        [C2A * x * y, -C2A * y * z, C2B * (2 * zz - xx - yy), -C2A * x * z, C2C * (xx - yy)],
        [
            -C3A * y * (3 * xx - yy),
            C3B * x * y * z,
            -C3C * y * (4 * zz - xx - yy),
            C3D * z * (2 * zz - 3 * xx - 3 * yy),
            -C3C * x * (4 * zz - xx - yy),
            C3E * z * (xx - yy),
            -C3A * x * (xx - 3 * yy),
        ],
    ]
    return torch.stack([v for band in bands[:n_bands] for v in band], dim=-1)

