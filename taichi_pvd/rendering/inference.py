"""Rendering a trained field without gradients: rays (:func:`render_image`), every camera of a
:class:`~taichi_pvd.rendering.view_sets.ViewSet` (:func:`render_views`), and a camera path
with several runs side by side (:func:`render_path`).

Rendering (:func:`render_rays_chunked`) marches as training does and composites the same
samples, under ``torch.no_grad`` and float16 autocast on CUDA; it evaluates the densities in
rounds, up to where each ray turns opaque, and the colour only where compositing uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from .. import backend
from ..data import generate_rays, subpixel_offsets
from ..data.camera_rig import CameraRig
from ..errors import ConfigError
from ..memory import check_render_memory
from ..fields import RadianceField
from .occupancy import OccupancyGrid
from .view_sets import ViewSet
from .volume import MarchingConfig, composite_samples, features_in_rounds, keep_composited, march


#: Samples the CPU evaluates at once when rendering without gradients: about a second of work
#: for the slower fields, so that a stop request or Ctrl-C is answered between slices.
CPU_SAMPLES_PER_SLICE = 1 << 16
#: Samples a GPU evaluates at once when rendering without gradients: enough to fill it, while a
#: chunk of rays through an untrained or open scene (hundreds of samples a ray, tens of millions
#: in a chunk) does not hold every sample's activations in memory at once.
GPU_SAMPLES_PER_SLICE = 1 << 22


def render_rays_chunked(field: RadianceField, grid: OccupancyGrid, origins: torch.Tensor,
                        directions: torch.Tensor, *, near: float | torch.Tensor, far: float | torch.Tensor,
                        background: torch.Tensor, config: MarchingConfig, chunk: int = 1 << 16,
                        should_stop: Callable[[], bool] | None = None,
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render N rays of ``field`` without gradients, ``chunk`` rays at a time.

    Each chunk is marched through ``grid``; the field's features (phi1) are evaluated in rounds
    (:func:`~taichi_pvd.rendering.volume.features_in_rounds`) at the samples compositing can
    use, its colour (phi2) only at those it uses (in front of the point where transmittance
    falls below ``config.transmittance_threshold``, most of the marched ones being behind
    surfaces), under float16 autocast on CUDA. The field runs on
    :data:`CPU_SAMPLES_PER_SLICE` samples at a time on the CPU and :data:`GPU_SAMPLES_PER_SLICE`
    on a GPU. ``should_stop`` (optional) is asked between chunks and slices; when it answers True
    the rendering stops by raising :class:`KeyboardInterrupt`.

    Args:
        field: the radiance field (on the grid's device).
        grid: its occupancy grid.
        origins, directions: [N, 3] float32, unit directions.
        near, far: distance range along the rays (world units).
        background: [3] or [N, 3] colour behind the scene.
        config: step size, caps and early-termination threshold.

    Returns:
        ``(rgb [N, 3], depth [N], opacity [N])`` float32, as :func:`composite_samples` gives.
    """
    device = origins.device
    per_slice = CPU_SAMPLES_PER_SLICE if device.type == "cpu" else GPU_SAMPLES_PER_SLICE

    def stop_if_asked() -> None:
        if should_stop is not None and should_stop():
            raise KeyboardInterrupt("rendering stopped on request")

    def in_slices(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
        parts = []
        for start in range(0, inputs[0].shape[0], per_slice):
            if start:
                stop_if_asked()
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                parts.append(fn(*(x[start : start + per_slice] for x in inputs)).float())
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    rgbs, depths, opacities = [], [], []
    with torch.no_grad():
        for i in range(0, origins.shape[0], chunk):
            stop_if_asked()
            bg = background if background.dim() == 1 else background[i : i + chunk]
            samples = march(grid, origins[i : i + chunk], directions[i : i + chunk], near=near, far=far,
                            config=config)
            if samples.n_samples == 0:
                sigma, rgb = torch.zeros(0, device=device), torch.zeros(0, 3, device=device)
            else:
                features, sigma = features_in_rounds(lambda x: in_slices(field.features, x), samples, config)
                samples, kept = keep_composited(samples, sigma, config)
                sigma = sigma[kept]
                rgb = in_slices(field.colour, features[kept], samples.directions)
            out = composite_samples(sigma, rgb, samples, bg, config)
            rgbs.append(out.rgb)
            depths.append(out.depth)
            opacities.append(out.opacity)
    return torch.cat(rgbs), torch.cat(depths), torch.cat(opacities)


def render_image(field: RadianceField, grid: OccupancyGrid, origins: torch.Tensor,
                 directions: torch.Tensor, *, near: float, far: float, background: torch.Tensor,
                 marching: MarchingConfig, chunk: int = 1 << 16,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render N rays of a trained field without gradients.

    Args:
        field: the radiance field (on the grid's device).
        grid: its occupancy grid.
        origins, directions: [N, 3] float32, unit directions, on the grid's device.
        near, far: distance range along the rays, world units.
        background: [3] or [N, 3] colour in [0, 1] behind the scene.
        marching: step size, sample cap and early-termination threshold (the run's own).
        chunk: rays marched at once (bounds the memory of the packed samples).

    Returns:
        ``(rgb [N, 3], depth [N], opacity [N])`` float32: colour over ``background``, the
        opacity-weighted distance ``sum_i w_i t_i`` (world units) and ``sum_i w_i``.
    """
    backend.init()
    if chunk < 1:
        raise ConfigError(f"chunk must be positive, got {chunk}")
    with torch.no_grad():
        return render_rays_chunked(field, grid, origins, directions, near=near, far=far,
                                   background=background, config=marching, chunk=chunk)


@dataclass
class Frame:
    """One rendered view, as host arrays."""

    rgb: np.ndarray
    """[H, W, 3] float32 in [0, 1]."""
    depth: np.ndarray
    """[H, W] float32, opacity-weighted distance (world units)."""
    opacity: np.ndarray
    """[H, W] float32 in [0, 1]."""


class RenderableRun(Protocol):
    """A trained field with what rendering it needs (:class:`~taichi_pvd.io.runs.LoadedRun`
    is one)."""

    field: RadianceField
    grid: OccupancyGrid
    """The field's occupancy grid, on the field's device."""

    def marching_config(self) -> MarchingConfig:
        """The marching settings the field was trained with."""
        ...

    def camera_rig(self) -> CameraRig:
        """The rig that maps world rays into the space the field is marched in."""
        ...


def render_views(run: RenderableRun, views: ViewSet, *, background: tuple[float, float, float] | None = None,
                 chunk: int = 1 << 16, supersample: int = 1,
                 on_frame: Callable[[int, Frame], None] | None = None) -> list[Frame]:
    """Render every camera of ``views`` with the field of ``run``.

    Args:
        run: a trained run (field and grid on one device).
        views: the cameras.
        background: colour behind the scene (None: ``views.background``).
        chunk: rays marched at once.
        supersample: ``k`` renders ``k x k`` rays per pixel, through the centres of a grid of
            strata over the pixel (:func:`~taichi_pvd.data.subpixel_offsets`), and averages
            colour, depth and opacity (anti-aliased, ``k**2`` times the work); 1: one ray
            through each pixel's centre.
        on_frame: called with ``(index, frame)`` after each frame (progress display).

    Returns:
        One :class:`Frame` per camera, in order.
    """
    device = run.grid.aabb.device
    check_render_memory(views.width, views.height, device)
    bg = torch.tensor(views.background if background is None else background, dtype=torch.float32,
                      device=device)
    if supersample < 1:
        raise ConfigError(f"supersample must be a positive number of rays per pixel side, got {supersample}")
    marching = run.marching_config()
    rig = run.camera_rig()
    rows, cols = torch.meshgrid(torch.arange(views.height, dtype=torch.float32, device=device),
                                torch.arange(views.width, dtype=torch.float32, device=device), indexing="ij")
    corners = torch.stack([cols, rows], dim=-1)[None]
    offsets = subpixel_offsets(supersample, device)
    frames = []
    for i in range(len(views)):
        rgb = depth = opacity = 0.0
        for offset in offsets:
            origins, directions = generate_rays(views.c2w[i : i + 1].to(device),
                                                views.intrinsics[i : i + 1].to(device),
                                                views.height, views.width, pixels=corners + offset,
                                                lens=None if views.lens is None else views.lens.select(slice(i, i + 1)))
            origins, directions = rig.scene_rays(origins.reshape(-1, 3), directions.reshape(-1, 3))
            outputs = render_image(run.field, run.grid, origins.contiguous(), directions.contiguous(),
                                   near=views.near, far=views.far, background=bg, marching=marching,
                                   chunk=chunk)
            rgb, depth, opacity = (total + part / len(offsets) for total, part in zip((rgb, depth, opacity), outputs))
        shape = (views.height, views.width)
        frame = Frame(rgb.reshape(*shape, 3).cpu().numpy(), depth.reshape(shape).cpu().numpy(),
                      opacity.reshape(shape).cpu().numpy())
        frames.append(frame)
        if on_frame is not None:
            on_frame(i, frame)
    return frames


def render_path(runs: Sequence[RenderableRun], views: ViewSet, *,
                background: tuple[float, float, float] | None = None,
                ) -> Iterator[tuple[int, list[Frame]]]:
    """Render each camera of ``views`` with every run in turn (for side-by-side comparisons),
    on ``background`` (None: ``views.background``); yields ``(index, [frame of each run])``
    one camera at a time."""
    for i in range(len(views)):
        yield i, [render_views(run, views.view(i), background=background)[0] for run in runs]
