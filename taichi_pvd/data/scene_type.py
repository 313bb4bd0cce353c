"""What kind of capture a scene is: ``bounded``, ``unbounded`` or ``forward-facing``, and why.

The type decides the space its fields live in: a bounded scene's box, the contracted world of an
unbounded capture (:mod:`taichi_pvd.data.contracted_space`), or the normalized device
coordinates of a forward-facing one (:mod:`taichi_pvd.data.ndc`). The first rule that applies
decides:

1. a type asked for (``--scene-type``) wins;
2. an LLFF folder (``poses_bounds.npy``) is forward-facing;
3. a ``transforms.json`` marker: ``"unbounded": true|false``, else an explicit ``aabb``
   (bounded), else ``aabb_scale`` (unbounded above 1, as Instant-NGP writes for captures that
   reach beyond the unit cube; bounded otherwise);
4. images with transparent pixels (RGBA with a transparent background, like NeRF-Synthetic) are
   an object capture: bounded;
5. opaque images (RGB, or alpha 255 everywhere) from cameras around the scene are a 360-degree
   capture: unbounded. The cameras surround the scene when their optical axes meet near one
   point (least squares) that they look at (mean angle to it under 45 degrees), and, seen from
   that point around the mean camera up axis, they spread over more than 180 degrees (the
   widest empty gap between them is under 180 degrees);
6. otherwise (opaque images, cameras not around one point): bounded, in the default box.

A ``transforms.json`` scene can be made bounded or unbounded; forward-facing scenes are LLFF
folders only (their NDC space needs the depth bounds of ``poses_bounds.npy``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taichi_pvd.data.camera_paths import axes_focus_point
from taichi_pvd.errors import OptionValueError, SceneError

SCENE_TYPES = ("bounded", "unbounded", "forward-facing")
#: Cameras look at the point their axes meet when their mean angle to it is below this.
MAX_MEAN_ANGLE_TO_FOCUS_DEG = 45.0
#: Cameras surround that point when they spread over more than this around it.
MIN_SPREAD_DEG = 180.0


@dataclasses.dataclass(frozen=True)
class SceneType:
    """A scene's type and the rule that chose it."""

    #: One of :data:`SCENE_TYPES`.
    name: str
    #: The rule that fired, in words.
    reason: str

    def describe(self) -> str:
        """One line: the type and why."""
        return f"{self.name} ({self.reason})"

    def to_dict(self) -> dict:
        """JSON-compatible form (``SceneType(**d)`` restores it)."""
        return dataclasses.asdict(self)


def check_scene_type(value: Any) -> str | None:
    """``value`` as a requested scene type (None: decide by the rules); a :class:`ConfigError`
    (:class:`OptionValueError`) for anything else."""
    if value is None or value in SCENE_TYPES:
        return value
    raise OptionValueError("scene_type", f"must be one of {', '.join(SCENE_TYPES)}, got {value!r}")


def llff_scene_type(requested: str | None) -> SceneType:
    """The type of an LLFF folder: forward-facing (rules 1 and 2); :class:`SceneError` when
    another type is asked for."""
    if requested not in (None, "forward-facing"):
        raise SceneError(
            f"an LLFF folder (poses_bounds.npy) loads as forward-facing only, not {requested}: its rays are "
            "marched in normalized device coordinates; drop the scene type or convert the capture to a "
            "transforms.json"
        )
    return SceneType("forward-facing", "requested" if requested else "an LLFF folder (poses_bounds.npy)")


def marked_scene_type(meta: dict[str, Any], json_path: Path) -> SceneType | None:
    """Rule 3: the type a ``transforms.json`` marks (``unbounded``, ``aabb``, ``aabb_scale``),
    or None when it marks none. :class:`SceneError` for a marker that is not a boolean, or
    ``"unbounded": true`` beside an ``aabb``."""
    flag = meta.get("unbounded")
    if flag is not None:
        if not isinstance(flag, bool):
            raise SceneError(f"'unbounded' in {json_path} must be true or false, got {flag!r}")
        if flag and "aabb" in meta:
            raise SceneError(
                f"{json_path} has both \"unbounded\": true and an explicit 'aabb': an unbounded scene "
                "is contracted into a fixed box, so remove one of them"
            )
        return SceneType("unbounded" if flag else "bounded", f"\"unbounded\": {str(flag).lower()} in the json")
    if "aabb" in meta:
        return SceneType("bounded", "the json gives an 'aabb'")
    scale = meta.get("aabb_scale")
    if scale is None:
        return None
    if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 1:
        return SceneType("unbounded", f"aabb_scale {scale:g} in the json, above 1")
    return SceneType("bounded", f"aabb_scale {scale} in the json")


def transforms_scene_type(meta: dict[str, Any], json_path: Path, train_c2w: np.ndarray, transparent: bool,
                          requested: str | None) -> SceneType:
    """The type of a ``transforms.json`` scene by the module's rules, from its training json
    ``meta``, its training cameras ``train_c2w`` [N, 3, 4] (OpenGL) and whether its images have
    transparent pixels. :class:`SceneError` when forward-facing is asked for."""
    if requested == "forward-facing":
        raise SceneError(
            f"{json_path} cannot load as forward-facing: forward-facing scenes are LLFF folders "
            "(poses_bounds.npy gives the depth bounds their NDC space needs); use bounded or unbounded"
        )
    if requested is not None:
        return SceneType(requested, "requested")
    marked = marked_scene_type(meta, json_path)
    if marked is not None:
        return marked
    if transparent:
        return SceneType("bounded", "images with a transparent background: an object capture")
    around, detail = cameras_surround(train_c2w)
    if around:
        return SceneType("unbounded", f"opaque images, {detail}: a 360-degree capture")
    return SceneType("bounded", f"opaque images but {detail}: the default box")


def cameras_surround(c2w: np.ndarray) -> tuple[bool, str]:
    """Rule 5's camera test on [N, 3, 4] OpenGL cameras: whether they surround the point their
    optical axes meet, and what was found, in words."""
    poses = torch.from_numpy(np.asarray(c2w, dtype=np.float64))
    focus = axes_focus_point(poses)
    if focus is None:
        return False, "the cameras' optical axes are parallel"
    centres, forward = poses[:, :, 3], -poses[:, :, 2]
    to_focus = focus - centres
    cosines = (to_focus * forward).sum(-1) / (to_focus.norm(dim=-1) * forward.norm(dim=-1)).clamp_min(1e-12)
    mean_angle = math.degrees(float(torch.acos(cosines.clamp(-1, 1)).mean()))
    if mean_angle >= MAX_MEAN_ANGLE_TO_FOCUS_DEG:
        return False, f"the cameras look {mean_angle:.0f} degrees away from the point their axes meet"
    up = poses[:, :, 1].mean(0)
    up = up / up.norm().clamp_min(1e-12)
    helper = torch.zeros(3, dtype=torch.float64)
    helper[int(up.abs().argmin())] = 1.0
    e1 = helper - (helper @ up) * up
    e1 = e1 / e1.norm()
    e2 = torch.linalg.cross(up, e1, dim=-1)
    offsets = centres - focus
    azimuth = torch.sort(torch.atan2(offsets @ e2, offsets @ e1)).values
    gaps = torch.diff(torch.cat([azimuth, azimuth[:1] + 2 * math.pi]))
    spread = 360.0 - math.degrees(float(gaps.max()))
    if spread > MIN_SPREAD_DEG:
        return True, f"cameras spread over {spread:.0f} degrees around the point they look at"
    return False, f"the cameras spread over only {spread:.0f} degrees around the point they look at"
