"""Inference rendering of a trained field: images from cameras, without gradients.

:func:`render_image` renders with the training renderer
(:func:`~taichi_pvd.rendering.volume.render_rays_chunked`: march, evaluate every marched sample,
composite) under ``torch.no_grad`` and float16 autocast on CUDA.
"""


from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import backend
from ..data import generate_rays, load_scene, orbit_path, spiral_path, subpixel_offsets
from ..data.camera_rig import CameraRig
from ..data.demo import demo_scene_path
from ..errors import CheckpointError, ConfigError, SceneError
from ..fields import RadianceField
from ..io.runs import LoadedRun, load_run
from .occupancy import OccupancyGrid
from .volume import FieldFn, MarchingConfig, render_rays_chunked

#: Elevation of the orbit cameras above the plane perpendicular to the rig's up, degrees.
ORBIT_ELEVATION_DEG = 30.0


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


# -- views of a run -----------------------------------------------------------------------------


@dataclass
class ViewSet:
    """Cameras to render, all of one image size, with optional ground truth."""

    c2w: torch.Tensor
    """[F, 3, 4] camera-to-world (OpenGL convention)."""
    intrinsics: torch.Tensor
    """[F, 4] ``(fx, fy, cx, cy)`` in pixels."""
    width: int
    height: int
    near: float
    """Distance range along the rays, world units."""
    far: float
    ground_truth: torch.Tensor | None = None
    """[F, H, W, 3] float32 images in [0, 1] (composited on ``background``), or None."""
    view_indices: list[int] | None = None
    """Index of each camera in its scene split, when the views come from one."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Colour rendered behind the scene: white, or for the views of an opaque scene the black
    that training composites behind it (such a model may leave some light through)."""

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    def view(self, i: int) -> ViewSet:
        """The set holding only camera ``i``."""
        return ViewSet(self.c2w[i : i + 1], self.intrinsics[i : i + 1], self.width, self.height,
                       self.near, self.far,
                       None if self.ground_truth is None else self.ground_truth[i : i + 1],
                       None if self.view_indices is None else self.view_indices[i : i + 1],
                       self.background)


@dataclass
class Frame:
    """One rendered view, as host arrays."""

    rgb: np.ndarray
    """[H, W, 3] float32 in [0, 1]."""
    depth: np.ndarray
    """[H, W] float32, opacity-weighted distance (world units)."""
    opacity: np.ndarray
    """[H, W] float32 in [0, 1]."""


def marching_config(run: LoadedRun) -> MarchingConfig:
    """The marching settings a run was trained or distilled with (defaults if unrecorded)."""
    for section in ("train", "distill"):
        recorded = run.config.get(section, {}).get("marching")
        if recorded is not None:
            return MarchingConfig(**recorded)
    return MarchingConfig()


def camera_rig(run: LoadedRun) -> CameraRig:
    """The camera rig recorded in a run's config; :class:`CheckpointError` if absent."""
    if "camera_rig" not in run.config:
        raise CheckpointError(f"{run.path} records no camera rig: retrain or re-distil it with this version")
    return CameraRig(**run.config["camera_rig"])


def scene_path(run: LoadedRun) -> Path:
    """The scene folder a run was trained on (the teacher's, for a distilled run).

    A demo-scene run whose cached scene was deleted gets it rendered again."""
    scene = run.config.get("scene") or {}
    if scene.get("path") and Path(scene["path"]).exists():
        return Path(scene["path"])
    if scene.get("demo"):
        return demo_scene_path()
    raise SceneError(
        f"the scene of {run.path} ({scene.get('path') or 'not recorded'}) is not on this machine: "
        "put the scene folder back at that path"
    )


def render_background(run: LoadedRun) -> tuple[float, float, float]:
    """The colour to render a run on along free camera paths: white for a scene with
    transparent images (and for runs that do not record which), black for an opaque scene, the
    background its training composited behind it."""
    scene = run.config.get("scene") or {}
    return (0.0, 0.0, 0.0) if scene.get("transparent") is False else (1.0, 1.0, 1.0)


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` (or a single ``"N"`` for N x N) -> ``(width, height)`` in pixels."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise ConfigError(f"size must look like 640x480 (width x height, positive), got {text!r}")
    return values[0], values[1]


def rig_intrinsics(rig: CameraRig, n: int, width: int, height: int) -> torch.Tensor:
    """[n, 4] ``(fx, fy, cx, cy)`` of the rig's cameras for ``width`` x ``height`` images: the
    horizontal field of view and square pixels are kept (a different aspect ratio shows more or
    less above and below), the principal point stays at the same relative place."""
    scale = width / rig.width
    values = [rig.fx * scale, rig.fy * scale, rig.cx * scale, rig.cy * height / rig.height]
    return torch.tensor(values).expand(n, 4).contiguous()


def orbit_views(rig: CameraRig, n_frames: int, size: tuple[int, int] | None = None,
                elevation_deg: float = ORBIT_ELEVATION_DEG,
                background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> ViewSet:
    """``n_frames`` cameras on a circle around the rig's centre at its radius, ``elevation_deg``
    above the plane perpendicular to its up vector, with the rig's horizontal field of view at
    ``size`` ``(width, height)`` (default: the training image size), rendered on
    ``background`` (see :func:`render_background`)."""
    width, height = size or (rig.width, rig.height)
    c2w = orbit_path(n_frames, rig.radius, elevation_deg, rig.centre, rig.up)
    return ViewSet(c2w, rig_intrinsics(rig, n_frames, width, height), width, height, rig.near, rig.far,
                   background=background)


def spiral_views(rig: CameraRig, scene_dir: Path, n_frames: int, size: tuple[int, int] | None = None,
                 background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> ViewSet:
    """A forward-facing spiral of ``n_frames`` cameras around the training cameras of the
    scene at ``scene_dir``, with the rig's horizontal field of view at ``size`` (default: the
    training size), rendered on ``background`` (see :func:`render_background`)."""
    if n_frames < 1:
        raise ConfigError(f"a spiral needs at least one frame, got {n_frames}")
    width, height = size or (rig.width, rig.height)
    train = load_scene(scene_dir, "train", background=(1.0, 1.0, 1.0))
    c2w = spiral_path(train.c2w, n_frames)
    return ViewSet(c2w, rig_intrinsics(rig, n_frames, width, height), width, height, rig.near, rig.far,
                   background=background)


def split_views(scene_dir: Path, split: str = "test", n_views: int | None = None,
                size: tuple[int, int] | None = None) -> ViewSet:
    """The posed views of one split of a scene with their images: transparent images on white
    and rendered on white; opaque ones rendered on black, the background they were trained on.

    Args:
        scene_dir: the scene folder.
        split: ``'train'``, ``'val'`` or ``'test'``.
        n_views: how many views, evenly spaced over the split (None: all).
        size: ``(width, height)``; must divide the images' size by one integer factor.
    """
    scene = load_scene(scene_dir, split)
    if size is not None and size != (scene.width, scene.height):
        factor = scene.width // size[0]
        if factor < 1 or (scene.width // factor, scene.height // factor) != size:
            raise ConfigError(
                f"the {split} images are {scene.width}x{scene.height}: --size must be that size "
                "divided by a whole number"
            )
        scene = load_scene(scene_dir, split, downscale=factor)
    total = len(scene)
    if n_views is not None and n_views < 1:
        raise ConfigError(f"--views must be positive, got {n_views}")
    count = total if n_views is None else min(n_views, total)
    pick = torch.linspace(0, total - 1, count).round().long().unique()
    background = (1.0, 1.0, 1.0) if scene.alphas is not None else (0.0, 0.0, 0.0)
    return ViewSet(scene.c2w[pick], scene.intrinsics[pick], scene.width, scene.height,
                   scene.near, scene.far, scene.composited(background)[pick], pick.tolist(), background)


def render_views(run: LoadedRun, views: ViewSet, *, background: tuple[float, float, float] | None = None,
                 chunk: int = 1 << 16, supersample: int = 1,
                 on_frame: Callable[[int, Frame], None] | None = None) -> list[Frame]:
    """Render every camera of ``views`` with the field of ``run``.

    Args:
        run: a loaded run (field and grid on one device).
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
    bg = torch.tensor(views.background if background is None else background, dtype=torch.float32,
                      device=device)
    if supersample < 1:
        raise ConfigError(f"supersample must be a positive number of rays per pixel side, got {supersample}")
    marching = marching_config(run)
    rig = camera_rig(run)
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
                                                views.height, views.width, pixels=corners + offset)
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


def render_path(runs: Sequence[LoadedRun], views: ViewSet, *,
                background: tuple[float, float, float] | None = None,
                ) -> Iterator[tuple[int, list[Frame]]]:
    """Render each camera of ``views`` with every run in turn (for side-by-side comparisons),
    on ``background`` (None: ``views.background``); yields ``(index, [frame of each run])``
    one camera at a time."""
    for i in range(len(views)):
        yield i, [render_views(run, views.view(i), background=background)[0] for run in runs]


@dataclass
class FpsMeasurement:
    """Rendering speed of one run."""

    fps: float
    """Frames per second of :func:`render_views`."""
    frames: int
    width: int
    height: int


def _timed_fps(run: LoadedRun, views: ViewSet) -> float:
    render_views(run, views.view(0))  # kernels compiled, caches warm
    if run.grid.aabb.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    render_views(run, views)
    if run.grid.aabb.device.type == "cuda":
        torch.cuda.synchronize()
    return len(views) / (time.perf_counter() - start)


def measure_fps(run: LoadedRun | str | Path, size: int | tuple[int, int], n_frames: int) -> FpsMeasurement:
    """Frames per second of rendering an orbit of ``run``.

    Args:
        run: a loaded run, or a run directory (loaded onto :func:`taichi_pvd.backend.device`).
        size: frame size in pixels, ``N`` (N x N) or ``(width, height)``.
        n_frames: frames timed (after one untimed warm-up frame), orbiting the scene.
    """
    backend.init()
    if not isinstance(run, LoadedRun):
        run = load_run(run, backend.device())
    width, height = (size, size) if isinstance(size, int) else size
    views = orbit_views(camera_rig(run), n_frames, (width, height))
    return FpsMeasurement(fps=_timed_fps(run, views), frames=n_frames, width=width, height=height)
