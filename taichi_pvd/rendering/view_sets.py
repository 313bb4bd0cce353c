"""Cameras to render: :class:`ViewSet` (cameras of one image size, with optional ground truth),
built along a camera path around a run's camera rig (:func:`orbit_views`, :func:`spiral_views`,
:func:`ellipse_views`) or from the posed views of a scene split (:func:`split_views`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import load_scene, orbit_path, spiral_path
from ..data.camera_paths import ellipse_path
from ..data.camera_rig import CameraRig
from ..data.distortion import Lens
from ..errors import ConfigError, OptionValueError

#: Elevation of the orbit cameras above the plane perpendicular to the rig's up, degrees.
ORBIT_ELEVATION_DEG = 30.0


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
    lens: Lens | None = None
    """The distortion of the cameras (the views of a captured split), or None for pinholes."""

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    def view(self, i: int) -> ViewSet:
        """The set holding only camera ``i``."""
        return ViewSet(self.c2w[i : i + 1], self.intrinsics[i : i + 1], self.width, self.height,
                       self.near, self.far,
                       None if self.ground_truth is None else self.ground_truth[i : i + 1],
                       None if self.view_indices is None else self.view_indices[i : i + 1],
                       self.background, None if self.lens is None else self.lens.select(slice(i, i + 1)))


def default_path(rig: CameraRig) -> str:
    """The camera path that suits the rig's scene: ``spiral`` for a forward-facing scene,
    ``ellipse`` for an unbounded one, ``orbit`` for a bounded object."""
    if rig.forward_facing:
        return "spiral"
    return "ellipse" if rig.contraction is not None else "orbit"


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
    ``background`` (see :meth:`~taichi_pvd.io.runs.LoadedRun.render_background`)."""
    width, height = size or (rig.width, rig.height)
    c2w = orbit_path(n_frames, rig.radius, elevation_deg, rig.centre, rig.up)
    return ViewSet(c2w, rig_intrinsics(rig, n_frames, width, height), width, height, rig.near, rig.far,
                   background=background)


def spiral_views(rig: CameraRig, train_c2w: torch.Tensor, n_frames: int, size: tuple[int, int] | None = None,
                 background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> ViewSet:
    """A forward-facing spiral of ``n_frames`` cameras around the training cameras
    ``train_c2w`` [N, 3, 4], with the rig's horizontal field of view at ``size`` (default: the
    training size), rendered on ``background`` (see
    :meth:`~taichi_pvd.io.runs.LoadedRun.render_background`)."""
    if n_frames < 1:
        raise ConfigError(f"a spiral needs at least one frame, got {n_frames}")
    width, height = size or (rig.width, rig.height)
    c2w = spiral_path(train_c2w.cpu(), n_frames)
    return ViewSet(c2w, rig_intrinsics(rig, n_frames, width, height), width, height, rig.near, rig.far,
                   background=background)


def ellipse_views(rig: CameraRig, train_c2w: torch.Tensor, n_frames: int, size: tuple[int, int] | None = None,
                  background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> ViewSet:
    """``n_frames`` cameras along the ellipse fitted to the training cameras ``train_c2w``
    [N, 3, 4] of a 360-degree capture (:func:`~taichi_pvd.data.camera_paths.ellipse_path`), with
    the rig's horizontal field of view at ``size`` (default: the training size), rendered on
    ``background``."""
    width, height = size or (rig.width, rig.height)
    c2w = ellipse_path(train_c2w.cpu(), n_frames)
    return ViewSet(c2w, rig_intrinsics(rig, n_frames, width, height), width, height, rig.near, rig.far,
                   background=background)


def split_views(scene_dir: Path, split: str = "test", n_views: int | None = None,
                size: tuple[int, int] | None = None, scene_options: dict[str, Any] | None = None) -> ViewSet:
    """The posed views of one split of a scene with their images: transparent images on white
    and rendered on white; opaque ones rendered on black, the background they were trained on.

    Args:
        scene_dir: the scene folder.
        split: ``'train'``, ``'val'`` or ``'test'``.
        n_views: how many views, evenly spaced over the split (None: all).
        size: ``(width, height)``; must divide the loaded images' size by one integer factor.
        scene_options: keyword arguments of :func:`~taichi_pvd.data.load_scene` (a run's
            ``downscale``, ``holdout_every``, ``scene_type``: see
            :meth:`~taichi_pvd.io.runs.LoadedRun.scene_options`); None: the loader's defaults.
    """
    options = dict(scene_options or {})
    scene = load_scene(scene_dir, split, **options)
    if size is not None and size != (scene.width, scene.height):
        factor = scene.width // size[0]
        if factor < 1 or (scene.width // factor, scene.height // factor) != size:
            raise OptionValueError(
                "size", f"must be the {split} images' size ({scene.width}x{scene.height}) divided by a whole number"
            )
        scene = load_scene(scene_dir, split, **{**options, "downscale": options.get("downscale", 1) * factor})
    total = len(scene)
    if n_views is not None and n_views < 1:
        raise OptionValueError("n_views", f"must be positive, got {n_views}")
    count = total if n_views is None else min(n_views, total)
    pick = torch.linspace(0, total - 1, count).round().long().unique()
    background = (1.0, 1.0, 1.0) if scene.alphas is not None else (0.0, 0.0, 0.0)
    return ViewSet(scene.c2w[pick], scene.intrinsics[pick], scene.width, scene.height,
                   scene.near, scene.far, scene.composited(background)[pick], pick.tolist(), background,
                   None if scene.lens is None else scene.lens.select(pick))
