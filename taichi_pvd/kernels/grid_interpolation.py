"""Trilinear interpolation of a dense channels-last voxel grid: Taichi kernels, torch reference.

The grid ``[Rx, Ry, Rz, C]`` stores ``C`` channels at vertices; index order is (x, y, z, channel),
so the ``C`` values of one vertex are contiguous. A point ``x`` in ``[0, 1]^3`` (clamped) sits at
continuous vertex coordinate ``p = x * (R - 1)`` on each axis: ``x = 0`` is the first vertex and
``x = 1`` the last (``align_corners=True`` in ``F.grid_sample`` terms). The lower corner is
``i = min(floor(p), R - 2)`` and the weight of the upper one ``p - i``, so ``x = 1`` uses the last
cell with weight 1 on its upper vertex. Kernels compute in float32 and take float32 only; ``x``
receives no gradient.
"""

import taichi as ti
import torch

from taichi_pvd import backend
from taichi_pvd.kernels.fast_launch import fast_launch
from taichi_pvd.kernels.cell_math import axis_cell, corner_weight
from taichi_pvd.kernels.index_limits import row_blocks

_BLOCK_DIM = 128


@ti.func
def _point_cell(x: ti.template(), n, grid: ti.template()):
    ix, fx = axis_cell(x[n, 0], grid.shape[0])
    iy, fy = axis_cell(x[n, 1], grid.shape[1])
    iz, fz = axis_cell(x[n, 2], grid.shape[2])
    return ti.Vector([ix, iy, iz]), ti.Vector([fx, fy, fz])


@fast_launch
@ti.kernel
def _grid_forward(
    x: ti.types.ndarray(dtype=ti.f32, ndim=2),
    grid: ti.types.ndarray(dtype=ti.f32, ndim=4),
    out: ti.types.ndarray(dtype=ti.f32, ndim=2),
):
    ti.loop_config(block_dim=_BLOCK_DIM)
    for n, c in ti.ndrange(x.shape[0], grid.shape[3]):
        cell, frac = _point_cell(x, n, grid)
        acc = 0.0
        for bits in ti.static(range(8)):
            i = cell + ti.Vector([(bits >> a) & 1 for a in ti.static(range(3))])
            acc += corner_weight(frac, bits) * grid[i[0], i[1], i[2], c]
        out[n, c] = acc


@fast_launch
@ti.kernel
def _grid_backward(
    x: ti.types.ndarray(dtype=ti.f32, ndim=2),
    grad_out: ti.types.ndarray(dtype=ti.f32, ndim=2),
    grad_grid: ti.types.ndarray(dtype=ti.f32, ndim=4),
):
    ti.loop_config(block_dim=_BLOCK_DIM)
    for n, c in ti.ndrange(x.shape[0], grad_grid.shape[3]):
        cell, frac = _point_cell(x, n, grad_grid)
        g = grad_out[n, c]
        for bits in ti.static(range(8)):
            i = cell + ti.Vector([(bits >> a) & 1 for a in ti.static(range(3))])
            ti.atomic_add(grad_grid[i[0], i[1], i[2], c], corner_weight(frac, bits) * g)


class _GridInterpolate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, grid):
        out = torch.empty((x.shape[0], grid.shape[3]), dtype=torch.float32, device=x.device)
        if out.numel() > 0:
            for rows in row_blocks(x.shape[0], out.shape[1]):
                _grid_forward(x[rows], grid.detach(), out[rows])
        ctx.save_for_backward(x)
        ctx.grid_shape = grid.shape
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        if not ctx.needs_input_grad[1]:
            return None, None
        (x,) = ctx.saved_tensors
        grad_grid = torch.zeros(ctx.grid_shape, dtype=torch.float32, device=x.device)
        if grad_out.numel() > 0:
            grad_out = grad_out.contiguous()
            for rows in row_blocks(x.shape[0], grad_out.shape[1]):
                _grid_backward(x[rows], grad_out[rows], grad_grid)
        return None, grad_grid


def grid_interpolate(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Trilinearly interpolate a dense grid of ``C`` channels at points ``x``.

    Args:
        x: ``[N, 3]`` float32 positions normalised to ``[0, 1]^3`` (values outside are clamped);
            ``x`` receives no gradient.
        grid: ``[Rx, Ry, Rz, C]`` float32, contiguous, each ``R >= 2``, fewer than 2^31 values,
            any ``C >= 1`` (e.g. 28 = 1 density + 27 SH coefficients); on the backend's device;
            differentiable (backward: a Taichi scatter kernel).

    Returns:
        ``[N, C]`` float32.

    Raises:
        TypeError: a tensor that is not float32.
        ValueError: a wrong shape, a non-contiguous grid or tensors off the backend's device.

    Example:
        >>> grid = torch.zeros(2, 2, 2, 1); grid[1, 1, 1] = 1.0
        >>> grid_interpolate(torch.tensor([[0.5, 0.5, 1.0]]), grid)
        tensor([[0.2500]])
    """
    arch = backend.init()
    if x.dtype != torch.float32 or grid.dtype != torch.float32:
        raise TypeError(
            f"grid_interpolate takes float32 x and grid, got {x.dtype} and {grid.dtype}"
        )
    if x.dim() != 2 or x.shape[1] != 3:
        raise ValueError(f"grid_interpolate: x must have shape [N, 3], got {list(x.shape)}")
    if grid.dim() != 4 or min(grid.shape[:3]) < 2 or grid.shape[3] < 1:
        raise ValueError(
            f"grid_interpolate: grid must have shape [Rx, Ry, Rz, C] with R >= 2 and C >= 1, "
            f"got {list(grid.shape)}"
        )
    if grid.numel() >= 2**31:
        raise ValueError(f"grid_interpolate: grid has {grid.numel()} values, the limit is 2^31 - 1")
    if not grid.is_contiguous():
        raise ValueError(
            "grid_interpolate: grid must be contiguous (channels-last [Rx, Ry, Rz, C])"
        )
    if x.device != grid.device or x.device.type != arch:
        raise ValueError(
            f"grid_interpolate: x ({x.device}) and grid ({grid.device}) must both be on the "
            f"backend's device ({arch})"
        )
    return _GridInterpolate.apply(x.detach().contiguous(), grid)


def _axis_cell_reference(coordinate: torch.Tensor, resolution: int):
    p = coordinate.clamp(0.0, 1.0) * (resolution - 1)
    i = torch.floor(p).long().clamp(max=resolution - 2)
    return i, p - i


def grid_interpolate_reference(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Pure-torch :func:`grid_interpolate` by explicit gathers, in the dtype of ``x`` and ``grid``
    (use float64 to check the kernel); differentiable w.r.t. ``grid`` through torch autograd."""
    cells = [_axis_cell_reference(x[:, a], grid.shape[a]) for a in range(3)]
    out = torch.zeros(x.shape[0], grid.shape[3], dtype=grid.dtype, device=grid.device)
    for bits in range(8):
        index, w = [], torch.ones_like(x[:, 0])
        for a, (i, f) in enumerate(cells):
            upper = (bits >> a) & 1
            index.append(i + upper)
            w = w * (f if upper else 1.0 - f)
        out = out + w[:, None] * grid[index[0], index[1], index[2]]
    return out
