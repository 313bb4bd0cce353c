"""The distortion loss of mip-NeRF 360 (Barron et al. 2022, eq. 15) on packed samples.

For a ray whose samples have compositing weights ``w_i``, interval midpoints ``t_i`` and lengths
``dt_i`` (sorted by ``t``), it is ``sum_ij w_i w_j |t_i - t_j| + 1/3 sum_i w_i^2 dt_i``: small when
the ray's weight gathers in one short stretch (a surface), large when it spreads along the ray
(floaters, fog in front of and behind the surface). It is computed in O(samples) from the
running sums of ``w`` and ``w * t`` along each ray, ``sum_ij w_i w_j |t_i - t_j| =
2 sum_i w_i (t_i W_i - (wt)_i)`` with ``W_i`` and ``(wt)_i`` the sums over the samples in front of
``i``, in float64 (the running sums over a whole batch would lose float32's precision).
"""

from __future__ import annotations

import torch

from ..kernels.marching import PackedSamples


def interval_distortion(weights: torch.Tensor, samples: PackedSamples) -> torch.Tensor:
    """Distortion [N] float32 of each ray of ``samples`` under compositing weights ``weights``
    [S] (differentiable; :func:`~taichi_pvd.kernels.compositing.render_weights`); ``t`` and ``dt``
    in the marching space's units (world units, or NDC depth in [0, 1] for forward-facing
    scenes). Rays without samples get 0."""
    w = weights.double()
    t = samples.t.double()
    rays = samples.ray_indices.long()
    first = samples.ray_starts.long()[rays]
    w_before = torch.cumsum(w, 0) - w
    wt = w * t
    wt_before = torch.cumsum(wt, 0) - wt
    w_in_front = w_before - w_before[first]
    wt_in_front = wt_before - wt_before[first]
    per_sample = 2.0 * w * (t * w_in_front - wt_in_front) + w * w * samples.dt.double() / 3.0
    out = torch.zeros(samples.ray_counts.shape[0], dtype=torch.float64, device=w.device)
    return out.index_add_(0, rays, per_sample).float()


def interval_distortion_reference(weights: torch.Tensor, samples: PackedSamples) -> torch.Tensor:
    """:func:`interval_distortion` by its definition, ray by ray over all sample pairs, in the
    dtype of ``weights`` (float64 to check it)."""
    t, dt = samples.t.to(weights.dtype), samples.dt.to(weights.dtype)
    rows = []
    for start, count in zip(samples.ray_starts.tolist(), samples.ray_counts.tolist()):
        w, m, d = weights[start:start + count], t[start:start + count], dt[start:start + count]
        pairs = (w[:, None] * w[None, :] * (m[:, None] - m[None, :]).abs()).sum()
        rows.append(pairs + (w * w * d).sum() / 3.0)
    return torch.stack(rows) if rows else weights.new_zeros(0)
