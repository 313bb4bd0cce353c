"""Volume rendering of packed rays: march through an occupancy grid, query a field at the
samples, composite. The field is passed in as a callable, so marching, field evaluation and
compositing never know about each other."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..kernels.compositing import composite, composited_counts
from ..kernels.marching import PackedSamples, march_rays
from .occupancy import OccupancyGrid

#: ``(positions [S, 3], directions [S, 3]) -> (sigma [S], rgb [S, 3])``
FieldFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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


def keep_composited(samples: PackedSamples, sigma: torch.Tensor,
                    config: MarchingConfig) -> tuple[PackedSamples, torch.Tensor]:
    """The samples that compositing with densities ``sigma`` [S] uses (on each ray, those in
    front of the point where transmittance falls below ``config.transmittance_threshold``),
    re-packed, and their indices [S'] (int64) into ``samples``. Compositing the kept samples
    gives the same colours, depths and opacities as compositing all of them."""
    counts = composited_counts(sigma, samples.dt, samples.ray_starts, samples.ray_counts,
                               transmittance_threshold=config.transmittance_threshold)
    rays = samples.ray_indices.long()
    rank = torch.arange(samples.n_samples, device=sigma.device) - samples.ray_starts.long()[rays]
    index = torch.nonzero(rank < counts.long()[rays]).squeeze(1)
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


def render_rays(field_fn: FieldFn, grid: OccupancyGrid, origins: torch.Tensor,
                directions: torch.Tensor, *, near: float | torch.Tensor, far: float | torch.Tensor,
                background: torch.Tensor, config: MarchingConfig,
                jitter: float | torch.Tensor | None = None) -> RenderOutput:
    """Render N rays: march (no gradient), evaluate ``field_fn`` at the samples, composite.

    Args:
        field_fn: ``(positions [S, 3], directions [S, 3]) -> (sigma [S], rgb [S, 3])``.
        grid: occupancy grid whose occupied cells are sampled.
        origins, directions: [N, 3] float32, directions of unit length.
        near, far: distance range along the rays (world units), scalars or [N].
        background: [N, 3] or [3] colour behind the scene.
        config: step size, caps and early-termination threshold.
        jitter: in [0, 1), the shift of each ray's first sample in steps: [N] (training draws
            it at random), one value for every ray, or ``None`` (0).
    """
    with torch.no_grad():
        samples = march(grid, origins, directions, near=near, far=far, config=config, jitter=jitter)
    if samples.n_samples == 0:
        sigma = torch.zeros(0, device=origins.device)
        rgb = torch.zeros(0, 3, device=origins.device)
    else:
        sigma, rgb = field_fn(samples.positions, samples.directions)
    return composite_samples(sigma, rgb, samples, background, config)


#: Samples the CPU evaluates at once when rendering without gradients: about a second of work
#: for the slower fields, so that a stop request or Ctrl-C is answered between slices.
CPU_SAMPLES_PER_SLICE = 1 << 16
#: Samples a GPU evaluates at once when rendering without gradients: enough to fill it, while a
#: chunk of rays through an untrained or open scene (hundreds of samples a ray, tens of millions
#: in a chunk) does not hold every sample's features in memory at once.
GPU_SAMPLES_PER_SLICE = 1 << 22


def render_rays_chunked(field_fn: FieldFn, grid: OccupancyGrid, origins: torch.Tensor,
                        directions: torch.Tensor, *, near: float, far: float,
                        background: torch.Tensor, config: MarchingConfig,
                        chunk: int = 1 << 16, should_stop: Callable[[], bool] | None = None,
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render many rays without gradients in chunks of ``chunk`` rays.

    The field is evaluated :data:`CPU_SAMPLES_PER_SLICE` samples at a time on the CPU, so that
    no single call runs for minutes, and :data:`GPU_SAMPLES_PER_SLICE` at a time on a GPU.
    ``should_stop`` (optional) is asked between chunks and slices; when it answers True the
    rendering stops by raising :class:`KeyboardInterrupt`.

    Returns ``(rgb [N, 3], depth [N], opacity [N])``. ``background`` is [3] or [N, 3].
    """
    per_slice = CPU_SAMPLES_PER_SLICE if origins.device.type == "cpu" else GPU_SAMPLES_PER_SLICE

    def stop_if_asked() -> None:
        if should_stop is not None and should_stop():
            raise KeyboardInterrupt("rendering stopped on request")

    def sliced_field_fn(x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[0] <= per_slice:
            return field_fn(x, d)
        sigmas, rgbs = [], []
        for start in range(0, x.shape[0], per_slice):
            stop_if_asked()
            sigma, rgb = field_fn(x[start : start + per_slice], d[start : start + per_slice])
            sigmas.append(sigma)
            rgbs.append(rgb)
        return torch.cat(sigmas), torch.cat(rgbs)

    rgbs, depths, opacities = [], [], []
    with torch.no_grad():
        for i in range(0, origins.shape[0], chunk):
            stop_if_asked()
            bg = background if background.dim() == 1 else background[i : i + chunk]
            out = render_rays(sliced_field_fn, grid, origins[i : i + chunk], directions[i : i + chunk],
                              near=near, far=far, background=bg, config=config)
            rgbs.append(out.rgb)
            depths.append(out.depth)
            opacities.append(out.opacity)
    return torch.cat(rgbs), torch.cat(depths), torch.cat(opacities)
