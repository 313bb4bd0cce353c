"""Volume rendering of packed samples: Taichi forward/backward kernels and torch references.

Along each ray, front to back (samples packed as described in :mod:`taichi_pvd.kernels`)::

    alpha_i = 1 - exp(-sigma_i * dt_i),   w_i = T_i * alpha_i,
    T_0 = 1,   T_{i+1} = T_i * (1 - alpha_i)
    rgb = sum_i w_i * c_i,   depth = sum_i w_i * t_i,   opacity = sum_i w_i

Early termination: sample ``i`` is composited only while ``T_i >= transmittance_threshold``;
the first sample in front of which transmittance has fallen below it, and every later one,
contributes nothing and gets zero gradient. The caller adds the background,
``rgb + (1 - opacity) * background``.

The backward kernels are written by hand (no Taichi autodiff). With ``v_i`` the upstream
gradient dotted with sample ``i``'s contribution per unit weight (``g_rgb . c_i + g_depth * t_i
+ g_opacity``) and ``L = sum_i w_i v_i``::

    dL/dc_i = w_i * g_rgb,   dL/dsigma_i = dt_i * (T_{i+1} * v_i - sum_{j > i} w_j v_j)

where the suffix sum is the forward total ``g_rgb . rgb + g_depth * depth + g_opacity * opacity``
minus the running prefix (ngp_pl's trick), so each ray is walked once, front to back. The
number of composited samples per ray is kept from the forward pass, so both passes stop at the
same sample. The kernels compute in float32; the references in any dtype.
"""

import taichi as ti
import torch

from taichi_pvd import backend
from taichi_pvd.kernels.fast_launch import fast_launch
from taichi_pvd.errors import ConfigError

_F32_1D = ti.types.ndarray(dtype=ti.f32, ndim=1)
_F32_2D = ti.types.ndarray(dtype=ti.f32, ndim=2)
_I32_1D = ti.types.ndarray(dtype=ti.i32, ndim=1)
#: Threads per block of the one-thread-per-ray loops: small, so that a batch of 8192 rays
#: spreads over all of an H100's 132 SMs.
_RAYS_PER_BLOCK = 64


# -- Taichi kernels -----------------------------------------------------------------------------


@fast_launch
@ti.kernel
def _composite_forward(sigmas: _F32_1D, rgbs: _F32_2D, dt: _F32_1D, t: _F32_1D,
                       ray_starts: _I32_1D, ray_counts: _I32_1D, threshold: ti.f32,
                       rgb_out: _F32_2D, depth_out: _F32_1D, opacity_out: _F32_1D,
                       n_used: _I32_1D):
    ti.loop_config(block_dim=_RAYS_PER_BLOCK)
    for i in range(ray_starts.shape[0]):
        start = ray_starts[i]
        count = ray_counts[i]
        trans = 1.0
        colour = ti.Vector([0.0, 0.0, 0.0])
        depth = 0.0
        opacity = 0.0
        j = 0
        while j < count and trans >= threshold:
            s = start + j
            keep = ti.exp(-sigmas[s] * dt[s])
            w = trans * (1.0 - keep)
            colour += w * ti.Vector([rgbs[s, 0], rgbs[s, 1], rgbs[s, 2]])
            depth += w * t[s]
            opacity += w
            trans *= keep
            j += 1
        for a in ti.static(range(3)):
            rgb_out[i, a] = colour[a]
        depth_out[i] = depth
        opacity_out[i] = opacity
        n_used[i] = j


@fast_launch
@ti.kernel
def _composite_backward(sigmas: _F32_1D, rgbs: _F32_2D, dt: _F32_1D, t: _F32_1D,
                        ray_starts: _I32_1D, n_used: _I32_1D, rgb_out: _F32_2D,
                        depth_out: _F32_1D, opacity_out: _F32_1D, grad_rgb: _F32_2D,
                        grad_depth: _F32_1D, grad_opacity: _F32_1D, grad_sigmas: _F32_1D,
                        grad_rgbs: _F32_2D):
    ti.loop_config(block_dim=_RAYS_PER_BLOCK)
    for i in range(ray_starts.shape[0]):
        g = ti.Vector([grad_rgb[i, 0], grad_rgb[i, 1], grad_rgb[i, 2]])
        total = (g.dot(ti.Vector([rgb_out[i, 0], rgb_out[i, 1], rgb_out[i, 2]]))
                 + grad_depth[i] * depth_out[i] + grad_opacity[i] * opacity_out[i])
        start = ray_starts[i]
        trans = 1.0
        prefix = 0.0
        for j in range(n_used[i]):
            s = start + j
            keep = ti.exp(-sigmas[s] * dt[s])
            w = trans * (1.0 - keep)
            v = (g.dot(ti.Vector([rgbs[s, 0], rgbs[s, 1], rgbs[s, 2]])) + grad_depth[i] * t[s]
                 + grad_opacity[i])
            for a in ti.static(range(3)):
                grad_rgbs[s, a] = w * g[a]
            prefix += w * v
            trans *= keep
            grad_sigmas[s] = dt[s] * (trans * v - (total - prefix))


@fast_launch
@ti.kernel
def _weights_forward(sigmas: _F32_1D, dt: _F32_1D, ray_starts: _I32_1D, ray_counts: _I32_1D,
                     threshold: ti.f32, weights: _F32_1D, n_used: _I32_1D):
    ti.loop_config(block_dim=_RAYS_PER_BLOCK)
    for i in range(ray_starts.shape[0]):
        start = ray_starts[i]
        count = ray_counts[i]
        trans = 1.0
        j = 0
        while j < count and trans >= threshold:
            s = start + j
            keep = ti.exp(-sigmas[s] * dt[s])
            weights[s] = trans * (1.0 - keep)
            trans *= keep
            j += 1
        n_used[i] = j


@fast_launch
@ti.kernel
def _weights_backward(sigmas: _F32_1D, dt: _F32_1D, ray_starts: _I32_1D, n_used: _I32_1D,
                      weights: _F32_1D, grad_weights: _F32_1D, grad_sigmas: _F32_1D):
    ti.loop_config(block_dim=_RAYS_PER_BLOCK)
    for i in range(ray_starts.shape[0]):
        start = ray_starts[i]
        total = 0.0
        for j in range(n_used[i]):
            total += weights[start + j] * grad_weights[start + j]
        trans = 1.0
        prefix = 0.0
        for j in range(n_used[i]):
            s = start + j
            prefix += weights[s] * grad_weights[s]
            trans *= ti.exp(-sigmas[s] * dt[s])
            grad_sigmas[s] = dt[s] * (trans * grad_weights[s] - (total - prefix))


# -- autograd wrappers --------------------------------------------------------------------------


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sigmas, rgbs, dt, t, ray_starts, ray_counts, threshold):
        n = ray_starts.shape[0]
        rgb = torch.zeros(n, 3, device=sigmas.device)
        depth = torch.zeros(n, device=sigmas.device)
        opacity = torch.zeros(n, device=sigmas.device)
        n_used = torch.zeros(n, dtype=torch.int32, device=sigmas.device)
        _composite_forward(sigmas.detach(), rgbs.detach(), dt, t, ray_starts, ray_counts,
                           threshold, rgb, depth, opacity, n_used)
        ctx.save_for_backward(sigmas, rgbs, dt, t, ray_starts, n_used, rgb, depth, opacity)
        return rgb, depth, opacity

    @staticmethod
    def backward(ctx, grad_rgb, grad_depth, grad_opacity):
        # Saved outputs come back attached to this node: detach so Taichi sees no grad tensors.
        sigmas, rgbs, dt, t, ray_starts, n_used, rgb, depth, opacity = (
            x.detach() for x in ctx.saved_tensors)
        grad_sigmas = torch.zeros_like(sigmas)
        grad_rgbs = torch.zeros_like(rgbs)
        _composite_backward(sigmas, rgbs, dt, t, ray_starts, n_used, rgb,
                            depth, opacity, grad_rgb.float().contiguous(),
                            grad_depth.float().contiguous(), grad_opacity.float().contiguous(),
                            grad_sigmas, grad_rgbs)
        return grad_sigmas, grad_rgbs, None, None, None, None, None


class _RenderWeights(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sigmas, dt, ray_starts, ray_counts, threshold):
        weights = torch.zeros_like(sigmas)
        n_used = torch.zeros(ray_starts.shape[0], dtype=torch.int32, device=sigmas.device)
        _weights_forward(sigmas.detach(), dt, ray_starts, ray_counts, threshold, weights, n_used)
        ctx.save_for_backward(sigmas, dt, ray_starts, n_used, weights)
        return weights

    @staticmethod
    def backward(ctx, grad_weights):
        sigmas, dt, ray_starts, n_used, weights = (x.detach() for x in ctx.saved_tensors)
        grad_sigmas = torch.zeros_like(sigmas)
        _weights_backward(sigmas, dt, ray_starts, n_used, weights,
                          grad_weights.float().contiguous(), grad_sigmas)
        return grad_sigmas, None, None, None, None


# -- public API ---------------------------------------------------------------------------------


def _check_packed(sigmas: torch.Tensor, dt: torch.Tensor, ray_starts: torch.Tensor,
                  ray_counts: torch.Tensor, threshold: float, **per_sample: torch.Tensor) -> None:
    n_samples = sigmas.shape[0]
    if sigmas.dim() != 1:
        raise ValueError(f"sigmas must be [S], got {tuple(sigmas.shape)}")
    for name, value in {"dt": dt, **per_sample}.items():
        if value.shape[0] != n_samples:
            raise ValueError(f"{name} has {value.shape[0]} samples, sigmas {n_samples}")
    if ray_starts.dim() != 1 or ray_counts.shape != ray_starts.shape:
        raise ValueError(
            f"ray_starts and ray_counts must both be [N], got {tuple(ray_starts.shape)} and "
            f"{tuple(ray_counts.shape)}"
        )
    if not 0.0 <= threshold < 1.0:
        raise ConfigError(f"transmittance_threshold must lie in [0, 1), got {threshold}")


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x.float().contiguous()


def _i32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.int32).contiguous()


def composite(sigmas: torch.Tensor, rgbs: torch.Tensor, dt: torch.Tensor, t: torch.Tensor,
              ray_starts: torch.Tensor, ray_counts: torch.Tensor, *,
              transmittance_threshold: float = 1e-4,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite packed samples front to back into colour, depth and opacity per ray.

    Args:
        sigmas: [S] density (1 / world unit), >= 0.
        rgbs: [S, 3] colour in [0, 1].
        dt: [S] interval length per sample (world units).
        t: [S] distance of each sample along its ray (world units).
        ray_starts, ray_counts: [N] int32, the packed layout (ray ``i`` owns samples
            ``ray_starts[i] : ray_starts[i] + ray_counts[i]``); rays may have zero samples.
        transmittance_threshold: compositing of a ray stops at the first sample in front of
            which transmittance is below this (0 composites every sample).

    Returns:
        ``(rgb [N, 3], depth [N], opacity [N])`` float32; differentiable w.r.t. ``sigmas`` and
        ``rgbs`` through all three outputs (not w.r.t. ``dt`` or ``t``). A ray without samples
        gets zeros.

    Raises:
        ConfigError: ``transmittance_threshold`` outside [0, 1).

    Example:
        >>> rgb, depth, opacity = composite(
        ...     torch.tensor([1e4]), torch.tensor([[1.0, 0.5, 0.0]]), torch.tensor([0.1]),
        ...     torch.tensor([2.0]), torch.tensor([0, 1], dtype=torch.int32),
        ...     torch.tensor([1, 0], dtype=torch.int32))
        >>> rgb.tolist(), depth.tolist(), opacity.tolist()
        ([[1.0, 0.5, 0.0], [0.0, 0.0, 0.0]], [2.0, 0.0], [1.0, 0.0])
    """
    _check_packed(sigmas, dt, ray_starts, ray_counts, transmittance_threshold, rgbs=rgbs, t=t)
    if rgbs.dim() != 2 or rgbs.shape[1] != 3:
        raise ValueError(f"rgbs must be [S, 3], got {tuple(rgbs.shape)}")
    backend.init()
    return _Composite.apply(_f32(sigmas), _f32(rgbs), _f32(dt.detach()), _f32(t.detach()),
                            _i32(ray_starts), _i32(ray_counts), float(transmittance_threshold))


def render_weights(sigmas: torch.Tensor, dt: torch.Tensor, ray_starts: torch.Tensor,
                   ray_counts: torch.Tensor, *, transmittance_threshold: float = 1e-4,
                   ) -> torch.Tensor:
    """Compositing weight ``w_i = T_i * alpha_i`` of every sample, as :func:`composite` uses.

    Args:
        sigmas: [S] density (1 / world unit); dt: [S] interval lengths (world units).
        ray_starts, ray_counts: [N] int32 packed layout.
        transmittance_threshold: as in :func:`composite`.

    Returns:
        ``w`` [S] float32, 0 for samples after early termination or owned by no ray;
        differentiable w.r.t. ``sigmas``.
    """
    _check_packed(sigmas, dt, ray_starts, ray_counts, transmittance_threshold)
    backend.init()
    return _RenderWeights.apply(_f32(sigmas), _f32(dt.detach()), _i32(ray_starts),
                                _i32(ray_counts), float(transmittance_threshold))


def composited_counts(sigmas: torch.Tensor, dt: torch.Tensor, ray_starts: torch.Tensor,
                      ray_counts: torch.Tensor, *, transmittance_threshold: float = 1e-4,
                      ) -> torch.Tensor:
    """How many of each ray's samples :func:`composite` uses: those in front of the first
    sample at which transmittance has fallen below ``transmittance_threshold``.

    Args:
        sigmas: [S] density (1 / world unit); dt: [S] interval lengths (world units).
        ray_starts, ray_counts: [N] int32 packed layout.
        transmittance_threshold: as in :func:`composite`.

    Returns:
        [N] int32, at most ``ray_counts``: ray ``i`` composites samples
        ``ray_starts[i] : ray_starts[i] + result[i]``.
    """
    _check_packed(sigmas, dt, ray_starts, ray_counts, transmittance_threshold)
    backend.init()
    # The weights kernel walks each ray exactly as compositing does and counts the samples it uses.
    sigmas = _f32(sigmas.detach())
    weights = torch.empty_like(sigmas)
    n_used = torch.zeros(ray_starts.shape[0], dtype=torch.int32, device=sigmas.device)
    _weights_forward(sigmas, _f32(dt.detach()), _i32(ray_starts), _i32(ray_counts),
                     float(transmittance_threshold), weights, n_used)
    return n_used


# -- torch references ---------------------------------------------------------------------------


def _padded_weights(sigmas: torch.Tensor, dt: torch.Tensor, ray_starts: torch.Tensor,
                    ray_counts: torch.Tensor, threshold: float,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights on a padded [N, K] layout: ``(w [N, K], index [N, K], valid [N, K],
    composited [N, K])``, ``composited`` marking the samples early termination keeps."""
    width = int(ray_counts.max()) if ray_counts.numel() else 0
    j = torch.arange(width, device=sigmas.device)
    valid = j < ray_counts[:, None].long()
    index = torch.where(valid, ray_starts[:, None].long() + j, torch.zeros_like(j))
    optical = torch.where(valid, sigmas[index] * dt[index],
                          torch.zeros_like(index, dtype=sigmas.dtype))
    alpha = 1.0 - torch.exp(-optical)
    trans = torch.cumprod(1.0 - alpha, dim=1)
    trans = torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], dim=1)
    composited = valid & (trans.detach() >= threshold)
    return torch.where(composited, trans * alpha, torch.zeros_like(alpha)), index, valid, composited


def render_weights_reference(sigmas: torch.Tensor, dt: torch.Tensor, ray_starts: torch.Tensor,
                             ray_counts: torch.Tensor, *, transmittance_threshold: float = 1e-4,
                             ) -> torch.Tensor:
    """Torch version of :func:`render_weights` in the inputs' dtype (a plain cumulative product
    over a padded layout); differentiable by torch autograd."""
    w, index, valid, _ = _padded_weights(sigmas, dt, ray_starts, ray_counts, transmittance_threshold)
    return torch.zeros_like(sigmas).index_put((index[valid],), w[valid])


def composite_reference(sigmas: torch.Tensor, rgbs: torch.Tensor, dt: torch.Tensor,
                        t: torch.Tensor, ray_starts: torch.Tensor, ray_counts: torch.Tensor, *,
                        transmittance_threshold: float = 1e-4,
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Torch version of :func:`composite` in the inputs' dtype (a plain cumulative product
    over a padded layout); differentiable by torch autograd."""
    w, index, _, _ = _padded_weights(sigmas, dt, ray_starts, ray_counts, transmittance_threshold)
    rgb = (w[..., None] * rgbs[index]).sum(dim=1)
    depth = (w * t[index]).sum(dim=1)
    opacity = w.sum(dim=1)
    return rgb, depth, opacity


def composited_counts_reference(sigmas: torch.Tensor, dt: torch.Tensor, ray_starts: torch.Tensor,
                                ray_counts: torch.Tensor, *, transmittance_threshold: float = 1e-4,
                                ) -> torch.Tensor:
    """Torch version of :func:`composited_counts` ([N] int32) in the inputs' dtype."""
    *_, composited = _padded_weights(sigmas, dt, ray_starts, ray_counts, transmittance_threshold)
    return composited.sum(dim=1).to(torch.int32)
