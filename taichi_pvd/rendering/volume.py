"""Volume rendering of packed rays: march through an occupancy grid, composite the densities and
colours a field gives at the samples. Marching and compositing never know about the field (the
field's features come in through a function); rendering a trained field without gradients is
:mod:`taichi_pvd.rendering.inference`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..fields.base import density_from_raw
from ..kernels.compositing import composite, composited_counts
from ..kernels.marching import PackedSamples, march_rays
from .occupancy import OccupancyGrid

#: Where the rounds of density evaluation end, counted in samples from each ray's start: the
#: first round takes every ray's first samples, each later one only the samples of rays still
#: transparent, the last one the rest of them. Rays seldom composite more than a few samples
#: (a surface turns them opaque), so most marched samples are never evaluated.
DENSITY_ROUNDS = (8, 32)


@dataclass
class MarchingConfig:
    """How rays are sampled."""

    steps_across_box: int = 1024
    """Base step size is ``sqrt(3) * box size / steps_across_box`` (Instant-NGP: 1024)."""
    cone_angle: float = 0.0
    """Step growth with distance, ``dt = max(base, t * cone_angle)``; 0 for object scenes,
    1/256 for large scenes."""
    max_samples_per_ray: int = 1024
    """Hard cap on samples per ray."""
    transmittance_threshold: float = 1e-4
    """Compositing stops once transmittance falls below this."""

    def step_size(self, grid: OccupancyGrid) -> float:
        """Base step (world units) for the box of ``grid``."""
        lo, hi = grid.bounds
        return math.sqrt(3.0) * max(b - a for a, b in zip(lo, hi)) / self.steps_across_box


@dataclass
class RenderOutput:
    """Composited results for N rays."""

    rgb: torch.Tensor
    """[N, 3] colour including the background."""
    depth: torch.Tensor
    """[N] expected distance along the ray (world units), 0 where the ray is empty."""
    opacity: torch.Tensor
    """[N] accumulated opacity in [0, 1]."""
    samples: PackedSamples
    """The packed samples the rays were marched into."""


def march(grid: OccupancyGrid, origins: torch.Tensor, directions: torch.Tensor, *,
          near: float | torch.Tensor, far: float | torch.Tensor, config: MarchingConfig,
          jitter: float | torch.Tensor | None = None) -> PackedSamples:
    """Packed samples of rays ``origins, directions`` [N, 3] (unit directions) through the
    occupied cells of ``grid``, with the step size ``config`` gives for the grid's box."""
    return march_rays(
        origins.contiguous(), directions.contiguous(), grid,
        near=near, far=far, step_size=config.step_size(grid), cone_angle=config.cone_angle,
        max_samples_per_ray=config.max_samples_per_ray, jitter=jitter,
    )


def composite_samples(sigma: torch.Tensor, rgb: torch.Tensor, samples: PackedSamples,
                      background: torch.Tensor, config: MarchingConfig) -> RenderOutput:
    """Composite per-sample density [S] and colour [S, 3] of ``samples`` over ``background``
    ([N, 3] or [3]); differentiable in ``sigma`` and ``rgb``."""
    colour, depth, opacity = composite(
        sigma.float().contiguous(), rgb.float().contiguous(), samples.dt, samples.t,
        samples.ray_starts, samples.ray_counts,
        transmittance_threshold=config.transmittance_threshold,
    )
    colour = colour + (1.0 - opacity)[:, None] * background
    return RenderOutput(rgb=colour, depth=depth, opacity=opacity, samples=samples)


def _ranks_along_rays(samples: PackedSamples) -> torch.Tensor:
    """[S] int64: each sample's index along its own ray (0 for a ray's first sample)."""
    return (torch.arange(samples.n_samples, device=samples.t.device)
            - samples.ray_starts.long()[samples.ray_indices.long()])


def keep_composited(samples: PackedSamples, sigma: torch.Tensor,
                    config: MarchingConfig) -> tuple[PackedSamples, torch.Tensor]:
    """The samples that compositing with densities ``sigma`` [S] uses (on each ray, those in
    front of the point where transmittance falls below ``config.transmittance_threshold``),
    re-packed, and their indices [S'] (int64) into ``samples``. Compositing the kept samples
    gives the same colours, depths and opacities as compositing all of them."""
    counts = composited_counts(sigma, samples.dt, samples.ray_starts, samples.ray_counts,
                               transmittance_threshold=config.transmittance_threshold)
    rays = samples.ray_indices.long()
    index = torch.nonzero(_ranks_along_rays(samples) < counts.long()[rays]).squeeze(1)
    kept = PackedSamples(
        ray_indices=samples.ray_indices[index],
        ray_starts=(torch.cumsum(counts, 0, dtype=torch.int32) - counts).contiguous(),
        ray_counts=counts,
        t=samples.t[index],
        dt=samples.dt[index],
        positions=samples.positions[index],
        directions=samples.directions[index],
    )
    return kept, index


def features_in_rounds(features_fn: Callable[[torch.Tensor], torch.Tensor], samples: PackedSamples,
                       config: MarchingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [S, F] float32 (``features_fn``: positions [K, 3] -> [K, F], column 0 the raw
    density) and densities [S] at the samples of ``samples`` that compositing can use,
    evaluated in rounds of each ray's samples (:data:`DENSITY_ROUNDS`): after a round only the
    rays whose transmittance is still at least ``config.transmittance_threshold`` go on.
    Samples never evaluated (behind the point where their ray turned opaque) get features and
    density 0; compositing never reaches them, so :func:`keep_composited` drops them."""
    rays = samples.ray_indices.long()
    rank = _ranks_along_rays(samples)
    features = sigma = None
    alive = None
    begin = 0
    for end in (*DENSITY_ROUNDS, None):
        todo = rank >= begin
        if end is not None:
            todo &= rank < end
        if alive is not None:
            todo &= alive[rays]
        index = torch.nonzero(todo).squeeze(1)
        if index.numel():
            part = features_fn(samples.positions[index]).float()
            if features is None:
                features = part.new_zeros(samples.n_samples, part.shape[1])
                sigma = part.new_zeros(samples.n_samples)
            features[index] = part
            sigma[index] = density_from_raw(part[:, 0])
        if end is None or features is None:
            break
        used = composited_counts(sigma, samples.dt, samples.ray_starts, samples.ray_counts,
                                 transmittance_threshold=config.transmittance_threshold)
        alive = used > end
        begin = end
    if features is None:  # no sample at all
        features = features_fn(samples.positions).float()
        sigma = density_from_raw(features[:, 0])
    return features, sigma
