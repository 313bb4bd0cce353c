"""Rendering a trained field without gradients: rays (:func:`render_image`), every camera of a
:class:`~taichi_pvd.rendering.view_sets.ViewSet` (:func:`render_views`), and a camera path
with several runs side by side (:func:`render_path`).

Rendering uses the training renderer (:func:`~taichi_pvd.rendering.volume.render_rays_chunked`:
march, evaluate every marched sample, composite) under ``torch.no_grad`` and float16 autocast
on CUDA.
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
from .volume import FieldFn, MarchingConfig, render_rays_chunked


def inference_fn(field: RadianceField) -> FieldFn:
    """``field`` as the renderer's callable: ``(positions [S, 3], directions [S, 3]) ->
    (sigma [S], rgb [S, 3])`` float32, under float16 autocast on CUDA (a no-op on the CPU)."""

    def field_fn(x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(x.device.type, dtype=torch.float16, enabled=x.device.type == "cuda"):
            sigma, rgb = field(x, d)
        return sigma.float(), rgb.float()

    return field_fn


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
        return render_rays_chunked(inference_fn(field), grid, origins, directions, near=near, far=far,
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
