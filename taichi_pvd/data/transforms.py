"""Loading a posed-image scene from ``transforms*.json`` into torch tensors.

Two flavours of the same format are read:

- NeRF-Synthetic / Blender: ``camera_angle_x`` (and optionally ``camera_angle_y``) at the top
  level, ``frames[].file_path`` often without extension (``.png`` is tried), RGBA images.
- Instant-NGP / nerfstudio: ``fl_x, fl_y, cx, cy, w, h`` at the top level or per frame (per-frame
  values win), optional ``aabb_scale`` or an explicit ``aabb``.

Unbounded scenes: a json with ``"unbounded": true``, or without that key with an ``aabb_scale``
above 1 and no explicit ``aabb`` (Instant-NGP writes ``aabb_scale`` 16 or more for captures that
reach beyond the unit cube), is an unbounded capture. Its world is normalised so that the
training cameras fit in the unit cube (mean camera centre at the origin, the farthest camera on
the cube's surface; see :class:`~taichi_pvd.data.contracted_space.ContractedSpace`), and its fields
see contracted coordinates in ``[-2, 2]^3``: the :class:`Scene` carries ``contraction``, its
``aabb`` is that box, ``near`` defaults to :data:`UNBOUNDED_NEAR` and ``far`` to
:data:`UNBOUNDED_FAR` (normalised units; ``near``/``far`` keys in the json are in its own units
and scaled). Every split is normalised by the training split's cameras, so all splits share one
space, and every split's json must agree with the training split's on being unbounded;
``"unbounded": false`` keeps the bounded box that ``aabb_scale`` describes.

Poses are camera-to-world matrices in the OpenGL/Blender convention (the camera looks down its
-Z axis, +Y is up in the image, +X to the right), 4x4 or 3x4. Pixel ``(x, y)`` has its centre at
``(column + 0.5, row + 0.5)``; ``cx, cy`` use the same continuous coordinates.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from taichi_pvd.data.contracted_space import ContractedSpace
from taichi_pvd.data.scene import Scene
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


def load_transforms(
    path: str | os.PathLike[str],
    split: str,
    *,
    downscale: int,
    background: tuple[float, float, float] | None,
    device: torch.device | str,
) -> Scene:
    """Read one split of a ``transforms*.json`` scene (checked arguments; see
    :func:`~taichi_pvd.data.formats.load_scene`).

    Args:
        path: the scene folder (holding ``transforms_{train,val,test}.json`` or a single
            ``transforms.json`` used for every split), or a ``transforms*.json`` file. An
            unbounded capture (see the module notes) is normalised and contracted.
        split: ``'train'``, ``'val'`` or ``'test'``.
        downscale: integer factor; each output pixel is the mean of a ``downscale`` x
            ``downscale`` block (rows/columns that do not fill a block are cropped at the
            bottom/right, which leaves ``cx, cy`` valid).
        background: ``(r, g, b)`` in [0, 1] to composite RGBA images onto, giving
            ``alphas=None``; ``None`` keeps the alpha channel (see :class:`Scene`).
        device: where the tensors go.

    Returns:
        The :class:`Scene`. Raises :class:`SceneError` for a missing folder, an unreadable or
        malformed json, missing keys, bad matrices or NaN/Inf, missing, unreadable or
        mis-sized images, and unbounded scenes whose markers contradict each other (within a
        json or between splits) or whose training cameras all stand at one point, each message
        naming the file and what to do.
    """
    json_path = _find_transforms(Path(path), split)
    meta = _read_json(json_path)
    frames = _frames(meta, json_path)
    poses = np.stack([_frame_pose(f, i, json_path) for i, f in enumerate(frames)])
    contraction = _contraction(Path(path), json_path, meta, poses)
    file_paths = [_image_path(f, i, json_path) for i, f in enumerate(frames)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        pixels = list(pool.map(_read_image, file_paths))
    height, width = pixels[0].shape[:2]
    has_alpha = pixels[0].shape[2] == 4
    intrinsics = np.stack(
        [
            _frame_intrinsics(meta, f, i, json_path, file_paths[i], pixels[i].shape[:2])
            for i, f in enumerate(frames)
        ]
    )
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

    if contraction is None:
        aabb = _aabb(meta, json_path)
        near, far, radius = _near_far_radius(meta, json_path, poses[:, :, 3], aabb)
    else:
        poses = contraction.normalise_poses(poses)
        aabb = contraction.aabb().double().numpy()
        near, far, radius = _unbounded_near_far_radius(meta, json_path, poses[:, :, 3], contraction)
    root = json_path.parent
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
        name=root.name,
        split=split,
        file_paths=file_paths,
        contraction=contraction,
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
    if any(frame.get(k, meta.get(k)) not in (None, 0, 0.0) for k in _DISTORTION_KEYS):
        warnings.warn(
            f"{json_path} has lens distortion coefficients; they are ignored (undistort the "
            "images for best results)",
            stacklevel=4,
        )
    return np.array(
        [fx, fy, values.get("cx", 0.5 * width), values.get("cy", 0.5 * height)], dtype=np.float64
    )


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


def _is_unbounded(meta: dict[str, Any], json_path: Path) -> bool:
    """The rule of the module notes: ``"unbounded"`` when given, else ``aabb_scale > 1``
    without an explicit ``aabb``."""
    flag = meta.get("unbounded")
    if flag is None:
        return "aabb" not in meta and _aabb_scale(meta, json_path) > 1.0
    if not isinstance(flag, bool):
        raise SceneError(f"'unbounded' in {json_path} must be true or false, got {flag!r}")
    if flag and "aabb" in meta:
        raise SceneError(
            f"{json_path} has both \"unbounded\": true and an explicit 'aabb': an unbounded scene "
            "is contracted into a fixed box, so remove one of them"
        )
    return flag


def _training_transforms(path: Path) -> Path | None:
    """The json of the training split of the scene at ``path`` (a folder or a json file), or
    None when the folder has none."""
    if path.is_file():
        return path
    for name in ("transforms_train.json", "transforms.json"):
        if (path / name).is_file():
            return path / name
    return None


def _contraction(path: Path, json_path: Path, meta: dict[str, Any],
                 poses: np.ndarray) -> ContractedSpace | None:
    """The space of the split read from ``json_path`` (``meta``, camera-to-world ``poses``
    [N, 3, 4]): None for a bounded scene, else the normalisation of the training cameras. The
    training split's json decides, and the other splits' must agree with it."""
    train_path = _training_transforms(path) or json_path
    unbounded = _is_unbounded(meta, json_path)
    if train_path != json_path:
        train_meta = _read_json(train_path)
        if _is_unbounded(train_meta, train_path) != unbounded:
            raise SceneError(
                f"{json_path} and the training split {train_path} disagree on whether the scene is "
                "unbounded: mark every split's json the same way ('unbounded' or 'aabb_scale')"
            )
        if unbounded:
            frames = _frames(train_meta, train_path)
            poses = np.stack([_frame_pose(f, i, train_path) for i, f in enumerate(frames)])
    if not unbounded:
        return None
    space = ContractedSpace.from_camera_centres(poses[:, :, 3])
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
