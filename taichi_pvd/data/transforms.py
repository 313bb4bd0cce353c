"""Loading a posed-image scene from ``transforms*.json`` into torch tensors.

Two flavours of the same format are read:

- NeRF-Synthetic / Blender: ``camera_angle_x`` (and optionally ``camera_angle_y``) at the top
  level, ``frames[].file_path`` often without extension (``.png`` is tried), RGBA images.
- Instant-NGP / nerfstudio: ``fl_x, fl_y, cx, cy, w, h`` at the top level or per frame (per-frame
  values win), optional ``aabb_scale`` or an explicit ``aabb``; lens distortion
  (``camera_model`` OPENCV with ``k1, k2, p1, p2``, or OPENCV_FISHEYE with ``k1..k4``, global or
  per frame) is undistorted into the rays (:mod:`taichi_pvd.data.distortion`). nerfstudio's
  ``applied_transform`` (COLMAP's world -> the world the poses are written in) is already part
  of the poses, as nerfstudio's own parser reads them: it is checked and not applied again.

A single ``transforms.json`` serves every split, holding out every 8th frame for testing
(:mod:`taichi_pvd.data.splits`). Which space the scene lives in (bounded, unbounded) follows the
rules of :mod:`taichi_pvd.data.scene_type`, decided on the training split's json and cameras.

Unbounded scenes: the world is normalised so that the training cameras fit in the unit cube
(mean camera centre at the origin, the farthest camera on the cube's surface; see
:class:`~taichi_pvd.data.contracted_space.ContractedSpace`), and the fields see contracted
coordinates in ``[-2, 2]^3``: the :class:`Scene` carries ``contraction``, its ``aabb`` is that
box, ``near`` defaults to :data:`UNBOUNDED_NEAR` and ``far`` to :data:`UNBOUNDED_FAR`
(normalised units; ``near``/``far`` keys in the json are in its own units and scaled). Every
split is normalised by the training split's cameras, so all splits share one space, and every
split's json must mark the scene's type as the training split's does.

Poses are camera-to-world matrices in the OpenGL/Blender convention (the camera looks down its
-Z axis, +Y is up in the image, +X to the right), 4x4 or 3x4. Pixel ``(x, y)`` has its centre at
``(column + 0.5, row + 0.5)``; ``cx, cy`` use the same continuous coordinates.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from taichi_pvd.data.contracted_space import ContractedSpace
from taichi_pvd.data.distortion import MODEL_COEFFICIENTS, Lens
from taichi_pvd.data.scene import Scene
from taichi_pvd.data.scene_type import marked_scene_type, transforms_scene_type
from taichi_pvd.data.splits import SplitSummary, holdout_indices
from taichi_pvd.errors import ConfigError, SceneError

#: Half-size of the default scene box: NeRF-Synthetic objects fit in [-1.5, 1.5]^3.
DEFAULT_AABB_HALF_SIZE = 1.5
#: Default ``near`` and ``far`` of unbounded scenes, in normalised units (the training cameras
#: span the unit cube): close to the cameras, and far enough for distant backgrounds.
UNBOUNDED_NEAR = 0.05
UNBOUNDED_FAR = 1000.0
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y")
_DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
_CAMERA_MODELS = (None, "PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "OPENCV_FISHEYE")


def load_transforms(
    path: str | os.PathLike[str],
    split: str,
    *,
    downscale: int,
    holdout_every: int,
    scene_type: str | None,
    background: tuple[float, float, float] | None,
    device: torch.device | str,
) -> Scene:
    """Read one split of a ``transforms*.json`` scene (checked arguments; see
    :func:`~taichi_pvd.data.formats.load_scene`).

    Args:
        path: the scene folder (holding ``transforms_{train,val,test}.json`` or a single
            ``transforms.json``), or a ``transforms*.json`` file. An unbounded capture (see the
            module notes) is normalised and contracted.
        split: ``'train'``, ``'val'`` or ``'test'``.
        downscale: integer factor; each output pixel is the mean of a ``downscale`` x
            ``downscale`` block (rows/columns that do not fill a block are cropped at the
            bottom/right, which leaves ``cx, cy`` valid).
        holdout_every: for a json that serves every split, the test frames are every
            ``holdout_every``-th of its frames sorted by ``file_path`` (0: every frame in every
            split); see :mod:`taichi_pvd.data.splits`.
        scene_type: ``'bounded'`` or ``'unbounded'`` to override the rule of
            :mod:`taichi_pvd.data.scene_type`, or None to follow it.
        background: ``(r, g, b)`` in [0, 1] to composite RGBA images onto, giving
            ``alphas=None``; ``None`` keeps the alpha channel (see :class:`Scene`).
        device: where the tensors go.

    Returns:
        The :class:`Scene`. Raises :class:`SceneError` for a missing folder, an unreadable or
        malformed json, missing keys, bad matrices or NaN/Inf, missing, unreadable or
        mis-sized images, unsupported camera models or distortion coefficients, a split with no
        frames, and unbounded scenes whose markers contradict each other (within a json or
        between splits) or whose training cameras all stand at one point, each message naming
        the file and what to do.
    """
    root = Path(path)
    json_path = _find_transforms(root, split)
    meta = _read_json(json_path)
    all_frames = _frames(meta, json_path)
    all_poses = np.stack([_frame_pose(f, i, json_path) for i, f in enumerate(all_frames)])
    _check_applied_transform(meta, json_path)
    shared = json_path.name != f"transforms_{split}.json"
    if shared:
        order = sorted(range(len(all_frames)), key=lambda i: str(all_frames[i]["file_path"]))
        names = [Path(str(all_frames[i]["file_path"])).name for i in order]
        summary = SplitSummary.held_out(names, holdout_every)
        picked = [order[i] for i in holdout_indices(len(order), split, holdout_every)]
        train_path, train_meta = json_path, meta
        train_poses = all_poses[[order[i] for i in holdout_indices(len(order), "train", holdout_every)]]
    else:
        picked = list(range(len(all_frames)))
        train_path, train_meta, train_poses = _training_split(root, json_path, meta, all_poses)
        summary = _split_files_summary(root, json_path, split, all_frames)
    if not picked:
        raise SceneError(
            f"{json_path} has {len(all_frames)} frame(s): too few for a {split} split when every "
            f"{holdout_every}th frame is held out for testing; add frames or change the holdout rule"
        )
    frames = [all_frames[i] for i in picked]
    poses = all_poses[picked]
    file_paths = [_image_path(all_frames[i], i, json_path) for i in picked]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        pixels = list(pool.map(_read_image, file_paths))
    height, width = pixels[0].shape[:2]
    has_alpha = pixels[0].shape[2] == 4
    intrinsics = np.stack(
        [
            _frame_intrinsics(meta, f, i, json_path, file_paths[k], pixels[k].shape[:2])
            for k, (i, f) in enumerate(zip(picked, frames))
        ]
    )
    lens = _split_lens(meta, frames, picked, json_path)
    for i, image in enumerate(pixels):
        if image.shape[:2] != (height, width):
            raise SceneError(
                f"{file_paths[i]} is {image.shape[1]}x{image.shape[0]} pixels but "
                f"{file_paths[0]} is {width}x{height}: all views of a split must have one size; "
                "resize the images or split them into separate scenes"
            )
        if (image.shape[2] == 4) != has_alpha:
            raise SceneError(
                f"{file_paths[i]} and {file_paths[0]} differ in having an alpha channel: "
                "save every image of the scene as RGBA, or every one as RGB"
            )
    transparent = has_alpha and any(bool((image[..., 3] < 1.0).any()) for image in pixels)
    if "aabb_scale" in meta:
        _aabb_scale(meta, json_path)
    if scene_type is None and train_path != json_path and _marked(meta, json_path) != _marked(train_meta, train_path):
        raise SceneError(
            f"{json_path} and the training split {train_path} disagree on whether the scene is "
            "unbounded: mark every split's json the same way ('unbounded', 'aabb' or 'aabb_scale')"
        )
    kind = transforms_scene_type(train_meta, train_path, train_poses, transparent, scene_type)

    out_h, out_w = height // downscale, width // downscale
    if out_h < 1 or out_w < 1:
        raise ConfigError(f"downscale {downscale} leaves no pixels of {width}x{height} images")
    images = torch.empty((len(pixels), out_h, out_w, 3), dtype=torch.float32)
    alphas = torch.empty((len(pixels), out_h, out_w, 1)) if has_alpha else None
    for i, image in enumerate(pixels):
        rgba = _premultiply_and_downscale(image, downscale)
        if alphas is None:
            images[i] = rgba
        else:
            images[i], alphas[i] = rgba[..., :3], rgba[..., 3:]
    if alphas is not None and background is not None:
        images += (1.0 - alphas) * torch.tensor(background, dtype=torch.float32)
        alphas = None
    intrinsics /= downscale

    contraction = None
    if kind.name == "bounded":
        aabb = _aabb(meta, json_path)
        near, far, radius = _near_far_radius(meta, json_path, poses[:, :, 3], aabb)
    else:
        contraction = _contraction(train_path, train_poses)
        poses = contraction.normalise_poses(poses)
        aabb = contraction.aabb().double().numpy()
        near, far, radius = _unbounded_near_far_radius(meta, json_path, poses[:, :, 3], contraction)
    return Scene(
        images=images.to(device),
        alphas=None if alphas is None else alphas.to(device),
        c2w=torch.from_numpy(poses).float().to(device),
        intrinsics=torch.from_numpy(intrinsics).float().to(device),
        height=out_h,
        width=out_w,
        aabb=torch.from_numpy(aabb).float().to(device),
        near=near,
        far=far,
        camera_radius=radius,
        name=json_path.parent.name,
        split=split,
        file_paths=file_paths,
        scene_type=kind,
        split_summary=summary,
        contraction=contraction,
        lens=lens,
    )


def _focal_from_angle(size: int, angle: float) -> float:
    """Focal length in pixels of an image ``size`` pixels across with a field of view of
    ``angle`` radians; infinite where the angle is too small to represent one (the caller's
    range check then refuses it)."""
    with np.errstate(divide="ignore", over="ignore"):
        return float(np.float64(0.5 * size) / np.tan(np.float64(0.5 * angle)))


def _fits_float32(values: Any) -> bool:
    """Whether every value is a finite number that stays finite as float32 (the tensors' dtype)."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return False
    return bool(np.isfinite(array).all() and (np.abs(array) <= np.finfo(np.float32).max).all())


def _find_transforms(path: Path, split: str) -> Path:
    if path.is_file() and path.suffix == ".json":
        return path
    if not path.exists():
        raise SceneError(
            f"scene folder {path} does not exist: pass the folder that holds "
            "transforms_train.json (or transforms.json) and the images"
        )
    if not path.is_dir():
        raise SceneError(f"{path} is neither a scene folder nor a transforms .json file")
    try:
        for name in (f"transforms_{split}.json", "transforms.json"):
            if (path / name).is_file():
                return path / name
        present = sorted(p.name for p in path.glob("*.json")) or ["no .json files"]
    except OSError as err:
        raise SceneError(
            f"cannot read scene folder {path} ({err.strerror or err}): check its permissions"
        ) from err
    raise SceneError(
        f"no transforms_{split}.json or transforms.json in {path} (found: {', '.join(present)}): "
        "pass a NeRF-Synthetic or Instant-NGP style scene folder"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SceneError(
            f"cannot read {path}: {err}; check the file exists and is readable"
        ) from err
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise SceneError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}): "
            "fix or regenerate the file"
        ) from err
    except RecursionError:
        raise SceneError(
            f"{path} nests lists or objects too deeply to be a transforms file: fix or "
            "regenerate it"
        ) from None
    if not isinstance(meta, dict):
        raise SceneError(f"{path} must hold a JSON object with a 'frames' list")
    return meta


def _frames(meta: dict[str, Any], json_path: Path) -> list[dict[str, Any]]:
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise SceneError(
            f"{json_path} has no 'frames' list (or it is empty): each frame needs a 'file_path' "
            "and a 'transform_matrix'"
        )
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise SceneError(f"frame {i} of {json_path} is not a JSON object")
        for key in ("file_path", "transform_matrix"):
            if key not in frame:
                raise SceneError(f"frame {i} of {json_path} has no '{key}': add it to the frame")
    return frames


def _frame_pose(frame: dict[str, Any], index: int, json_path: Path) -> np.ndarray:
    where = f"'transform_matrix' of frame {index} ({frame.get('file_path')!r}) in {json_path}"
    try:
        matrix = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as err:
        raise SceneError(f"{where} is not a matrix of numbers: {err}") from err
    if matrix.shape not in ((4, 4), (3, 4)):
        raise SceneError(
            f"{where} has shape {list(matrix.shape)}: a camera-to-world matrix must be 4x4 or 3x4"
        )
    if not _fits_float32(matrix):
        raise SceneError(
            f"{where} contains NaN or Inf, or values too large for float32: remove the frame "
            "or fix its pose"
        )
    if matrix.shape == (4, 4) and not np.allclose(matrix[3], (0.0, 0.0, 0.0, 1.0), atol=1e-4):
        raise SceneError(f"{where} has last row {matrix[3].tolist()}, expected [0, 0, 0, 1]")
    rotation = matrix[:3, :3]
    if np.abs(rotation.T @ rotation - np.eye(3)).max() > 1e-2 or np.linalg.det(rotation) <= 0.0:
        raise SceneError(
            f"{where} is not a rigid camera-to-world transform (its 3x3 part is not a rotation): "
            "poses must be unscaled, right-handed camera-to-world matrices"
        )
    return matrix[:3]


def _image_path(frame: dict[str, Any], index: int, json_path: Path) -> Path:
    file_path = frame["file_path"]
    if not isinstance(file_path, str) or not file_path:
        raise SceneError(f"'file_path' of frame {index} in {json_path} must be a non-empty string")
    base = json_path.parent / file_path
    try:
        candidates = [base] + [base.with_name(base.name + s) for s in _IMAGE_SUFFIXES]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
    except (OSError, ValueError) as err:
        raise SceneError(
            f"'file_path' {file_path!r} of frame {index} in {json_path} is not a usable image "
            f"path ({err}): give the image's path relative to the json"
        ) from err
    raise SceneError(
        f"image of frame {index} in {json_path} not found: tried {base} and "
        f"{'/'.join(_IMAGE_SUFFIXES[:3])} after it; check 'file_path' (relative to the json) "
        "and that the images were extracted"
    )


def _read_image(path: Path) -> np.ndarray:
    """[H, W, 3 or 4] float32 in [0, 1], straight (not premultiplied) alpha."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                grey = np.asarray(image, dtype=np.float32) / 65535.0
                return np.repeat(grey[..., None], 3, axis=2)
            keep_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            array = np.asarray(image.convert("RGBA" if keep_alpha else "RGB"))
    except Exception as err:  # PIL raises many types for corrupt or truncated files
        raise SceneError(
            f"cannot read image {path}: {err}; the file is truncated, corrupt or not an image - "
            "re-export or re-download it"
        ) from err
    return array.astype(np.float32) / 255.0


def _frame_intrinsics(
    meta: dict[str, Any],
    frame: dict[str, Any],
    index: int,
    json_path: Path,
    image_path: Path,
    image_hw: tuple[int, int],
) -> np.ndarray:
    """``(fx, fy, cx, cy)`` in pixels of the full-size image; per-frame keys override the top."""
    values: dict[str, float] = {}
    for key in _INTRINSIC_KEYS:
        raw = frame.get(key, meta.get(key))
        if raw is None:
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError, OverflowError):
            value = math.nan
        if not _fits_float32(value):
            raise SceneError(
                f"'{key}' for frame {index} in {json_path} is {raw!r}, not a finite number"
            )
        values[key] = value
    height, width = image_hw
    for key, actual in (("w", width), ("h", height)):
        if key in values and int(round(values[key])) != actual:
            raise SceneError(
                f"{image_path} is {width}x{height} pixels but {json_path} says "
                f"{key}={values[key]:g}: fix 'w'/'h' or use the images the file was made for"
            )
    for key in ("camera_angle_x", "camera_angle_y"):
        if key in values and not 0.0 < values[key] < math.pi:
            raise SceneError(
                f"'{key}' for frame {index} in {json_path} is {values[key]:g}: a field of view "
                "is an angle in radians between 0 and pi"
            )
    if "fl_x" in values:
        fx = values["fl_x"]
    elif "camera_angle_x" in values:
        fx = _focal_from_angle(width, values["camera_angle_x"])
    else:
        raise SceneError(
            f"no focal length for frame {index} in {json_path}: add 'camera_angle_x' "
            "(NeRF-Synthetic) or 'fl_x' (Instant-NGP), at the top level or in the frame"
        )
    if "fl_y" in values:
        fy = values["fl_y"]
    elif "camera_angle_y" in values:
        fy = _focal_from_angle(height, values["camera_angle_y"])
    else:
        fy = fx
    if not (_fits_float32([fx, fy]) and np.float32(fx) > 0.0 and np.float32(fy) > 0.0):
        raise SceneError(
            f"focal length of frame {index} in {json_path} is {fx:g} x {fy:g} pixels: it must be "
            "positive (and within float32 range)"
        )
    return np.array(
        [fx, fy, values.get("cx", 0.5 * width), values.get("cy", 0.5 * height)], dtype=np.float64
    )


def _split_lens(meta: dict[str, Any], frames: list[dict[str, Any]], indices: list[int],
                json_path: Path) -> Lens | None:
    """The lens distortion of the frames of a split (per-frame keys override the top level), or
    None when every coefficient is zero. ``camera_model`` ``OPENCV`` (also assumed when
    coefficients come without a model, as Instant-NGP writes them) or ``OPENCV_FISHEYE`` (or
    ``"is_fisheye": true``); ``PINHOLE`` and ``SIMPLE_PINHOLE`` read coefficients as OPENCV's."""
    models, rows = set(), []
    for index, frame in zip(indices, frames):
        where = f"frame {index} ({frame.get('file_path')!r}) of {json_path}"
        name = frame.get("camera_model", meta.get("camera_model"))
        if name not in _CAMERA_MODELS:
            raise SceneError(
                f"camera_model {name!r} of {where} is not supported: use one of "
                f"{', '.join(m for m in _CAMERA_MODELS if m)} (undistort the images for another model)"
            )
        fisheye = name == "OPENCV_FISHEYE" or frame.get("is_fisheye", meta.get("is_fisheye")) is True
        model = "OPENCV_FISHEYE" if fisheye else "OPENCV"
        values = {}
        for key in _DISTORTION_KEYS:
            raw = frame.get(key, meta.get(key, 0.0))
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not _fits_float32(raw):
                raise SceneError(f"'{key}' of {where} is {raw!r}, not a finite number")
            values[key] = float(raw)
        unused = [k for k in _DISTORTION_KEYS if values[k] != 0.0 and k not in MODEL_COEFFICIENTS[model]]
        if unused:
            raise SceneError(
                f"{where} gives {', '.join(unused)} for the {model} camera model, which has no such "
                f"coefficient ({', '.join(MODEL_COEFFICIENTS[model])}): fix the camera model or undistort the images"
            )
        models.add(model)
        rows.append([values[k] for k in MODEL_COEFFICIENTS[model]])
    if len(models) > 1:
        raise SceneError(f"the frames of {json_path} mix the OPENCV and OPENCV_FISHEYE camera models: use one")
    coefficients = torch.tensor(rows, dtype=torch.float64)
    if not coefficients.abs().max() > 0:
        return None
    return Lens(models.pop(), coefficients)


def _premultiply_and_downscale(image: np.ndarray, factor: int) -> torch.Tensor:
    """[H, W, C] straight-alpha float image -> [H//f, W//f, C] premultiplied, area-averaged."""
    pixels = torch.from_numpy(image)
    if pixels.shape[2] == 4:
        pixels = torch.cat([pixels[..., :3] * pixels[..., 3:], pixels[..., 3:]], dim=-1)
    if factor == 1:
        return pixels
    out_h, out_w = pixels.shape[0] // factor, pixels.shape[1] // factor
    cropped = pixels[: out_h * factor, : out_w * factor].permute(2, 0, 1)[None]
    return F.avg_pool2d(cropped, factor)[0].permute(1, 2, 0)


def _aabb(meta: dict[str, Any], json_path: Path) -> np.ndarray:
    if "aabb" in meta:
        try:
            aabb = np.asarray(meta["aabb"], dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            aabb = np.zeros(0)
        if aabb.shape != (2, 3) or not _fits_float32(aabb) or not (aabb[1] > aabb[0]).all():
            raise SceneError(
                f"'aabb' in {json_path} must be [[xmin, ymin, zmin], [xmax, ymax, zmax]] with "
                f"max > min, got {meta['aabb']!r}"
            )
        return aabb
    scale = _aabb_scale(meta, json_path)
    half = DEFAULT_AABB_HALF_SIZE * scale
    if not np.float32(half) > 0:
        raise SceneError(f"'aabb_scale' in {json_path} is too small: the scene box would have no size, got {scale!r}")
    return np.array([[-half] * 3, [half] * 3], dtype=np.float64)


def _aabb_scale(meta: dict[str, Any], json_path: Path) -> float:
    scale = meta.get("aabb_scale", 1.0)
    if (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0
            or not _fits_float32(scale)
            or not _fits_float32(DEFAULT_AABB_HALF_SIZE * float(scale))):
        raise SceneError(
            f"'aabb_scale' in {json_path} must be a positive number (within float32 range), "
            f"got {scale!r}"
        )
    return float(scale)


def _check_applied_transform(meta: dict[str, Any], json_path: Path) -> None:
    """``applied_transform`` (nerfstudio: the transform from COLMAP's world to the one the poses
    are written in) must be a 3x4 or 4x4 matrix of numbers; the poses already include it."""
    if "applied_transform" not in meta:
        return
    try:
        matrix = np.asarray(meta["applied_transform"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        matrix = np.zeros(0)
    if matrix.shape not in ((3, 4), (4, 4)) or not _fits_float32(matrix):
        raise SceneError(
            f"'applied_transform' in {json_path} must be a 3x4 or 4x4 matrix of finite numbers, got "
            f"{meta['applied_transform']!r}: fix it or remove it (the poses do not depend on it)"
        )


def _marked(meta: dict[str, Any], json_path: Path) -> str | None:
    """The scene type a json's markers name, or None."""
    marked = marked_scene_type(meta, json_path)
    return None if marked is None else marked.name


def _training_split(root: Path, json_path: Path, meta: dict[str, Any],
                    poses: np.ndarray) -> tuple[Path, dict[str, Any], np.ndarray]:
    """The json, its content and camera-to-world matrices [N, 3, 4] of the training split of a
    scene with split files (this split's own when the folder has no ``transforms_train.json``)."""
    train_path = root / "transforms_train.json"
    if root.is_file() or not train_path.is_file() or train_path == json_path:
        return json_path, meta, poses
    train_meta = _read_json(train_path)
    frames = _frames(train_meta, train_path)
    return train_path, train_meta, np.stack([_frame_pose(f, i, train_path) for i, f in enumerate(frames)])


def _split_files_summary(root: Path, json_path: Path, split: str, frames: list[dict[str, Any]]) -> SplitSummary:
    """The split of a scene with split files: the frames of its train and test jsons."""
    names = {}
    for name in ("train", "test"):
        other = root / f"transforms_{name}.json"
        if name == split:
            listed = frames
        elif other.is_file():
            listed = _frames(_read_json(other), other)
        else:
            listed = []
        names[name] = tuple(Path(str(f["file_path"])).name for f in listed)
    return SplitSummary("the scene's split files (transforms_<split>.json)",
                        names["train"], names["test"])


def _contraction(train_path: Path, train_poses: np.ndarray) -> ContractedSpace:
    """The normalisation of an unbounded scene by its training cameras [N, 3, 4]."""
    space = ContractedSpace.from_camera_centres(train_poses[:, :, 3])
    if space is None:
        raise SceneError(
            f"every training camera of the unbounded scene {train_path} stands at the same point: "
            "the scene is normalised by the spread of the camera centres, so it needs cameras at "
            "different positions"
        )
    return space


def _unbounded_near_far_radius(meta: dict[str, Any], json_path: Path, origins: np.ndarray,
                               space: ContractedSpace) -> tuple[float, float, float]:
    """``near``/``far`` of the json scaled into normalised units (defaults: the unbounded ones)
    and the mean camera distance from the origin, in normalised units."""
    bounds = {"near": UNBOUNDED_NEAR, "far": UNBOUNDED_FAR}
    for key in bounds:
        if key in meta:
            value = meta[key]
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0
                    or not _fits_float32(value) or not _fits_float32(value * space.scale)):
                raise SceneError(f"'{key}' in {json_path} must be a finite non-negative number")
            bounds[key] = float(value) * space.scale
    near, far = bounds["near"], bounds["far"]
    if not far > near:
        raise SceneError(
            f"'far' ({far:g}) must exceed 'near' ({near:g}) in {json_path} (normalised units of the "
            "unbounded scene)"
        )
    return near, far, float(np.linalg.norm(origins, axis=1).mean())


def _near_far_radius(
    meta: dict[str, Any], json_path: Path, origins: np.ndarray, aabb: np.ndarray
) -> tuple[float, float, float]:
    """Defaults: the box's bounding sphere seen from the nearest/farthest camera."""
    distances = np.linalg.norm(origins - aabb.mean(axis=0), axis=1)
    half_diagonal = 0.5 * float(np.linalg.norm(aabb[1] - aabb[0]))
    near = max(float(distances.min()) - half_diagonal, 0.01 * half_diagonal)
    far = float(distances.max()) + half_diagonal
    for key in ("near", "far"):
        if key in meta:
            value = meta[key]
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0
                    or not _fits_float32(value)):
                raise SceneError(f"'{key}' in {json_path} must be a finite non-negative number")
    near = float(meta.get("near", near))
    far = float(meta.get("far", far))
    if not far > near:
        raise SceneError(f"'far' ({far:g}) must exceed 'near' ({near:g}) in {json_path}")
    return near, far, float(distances.mean())
