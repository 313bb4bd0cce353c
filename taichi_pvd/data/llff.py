"""Loading forward-facing captures in the LLFF layout (``poses_bounds.npy`` + ``images*/``).

``poses_bounds.npy`` is a float array [N, 17], one row per image in the sorted order of the
image files: a 3x5 matrix (row-major) ``[R | t | hwf]`` whose rotation columns are the camera's
down, right and backward axes in world space, ``t`` the camera centre and ``hwf`` the height,
width and focal length (pixels) of the full-size images; then the near and far depth bounds of
the scene content seen by that camera (world units).

The loader follows the NeRF reference code for forward-facing scenes:

1. poses go to the OpenGL convention used everywhere else (columns right, up, backward);
2. the scene is scaled by ``1 / (0.75 * min(bounds))``, so the nearest content lies ~1.33
   units in front of the cameras;
3. poses are recentred on the average camera (mean centre, averaged axes), which becomes the
   world frame: the cameras look down world -Z;
4. every 8th image (``i % 8 == 0``, in file-name order; another period with ``holdout_every``,
   see :mod:`taichi_pvd.data.splits`) is held out as the test split (``val`` = ``test``), the
   rest is ``train``;
5. the scene is marched in normalized device coordinates (:mod:`taichi_pvd.data.ndc`): the
   :class:`Scene` carries ``ndc`` and its box, near and far are NDC quantities; the box reaches
   in x and y as far as the rays through the image corners of all the cameras. ``c2w`` stays in
   (recentred, scaled) world units; ray generators map rays through ``scene.ndc``.

``camera_radius`` of an LLFF scene is the mean distance of the camera centres from the average
camera (the spread of the capture), world units.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from taichi_pvd.data.ndc import NdcSpace, ndc_xy_extent
from taichi_pvd.data.rays import generate_rays
from taichi_pvd.data.scene import Scene
from taichi_pvd.data.scene_type import llff_scene_type
from taichi_pvd.data.splits import DEFAULT_HOLDOUT_EVERY, SplitSummary, holdout_indices
from taichi_pvd.errors import SceneError

POSES_BOUNDS = "poses_bounds.npy"
#: The nearest bound becomes ``1 / NEAR_BOUND_FRACTION`` after rescaling (NeRF: 0.75).
NEAR_BOUND_FRACTION = 0.75
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def is_llff_scene(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding ``poses_bounds.npy`` (False for a folder that cannot
    be searched: the transforms loader then says why)."""
    try:
        return (Path(path) / POSES_BOUNDS).is_file()
    except OSError:
        return False


def llff_to_opengl(poses: np.ndarray) -> np.ndarray:
    """[N, 3, >=4] LLFF matrices (columns down, right, backward, centre) -> [N, 3, 4]
    camera-to-world in the OpenGL convention (columns right, up, backward, centre)."""
    return np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], axis=2)


def opengl_to_llff(c2w: np.ndarray) -> np.ndarray:
    """[N, 3, 4] OpenGL camera-to-world -> [N, 3, 4] LLFF (inverse of :func:`llff_to_opengl`)."""
    return np.concatenate([-c2w[:, :, 1:2], c2w[:, :, 0:1], c2w[:, :, 2:4]], axis=2)


def average_pose(c2w: np.ndarray) -> np.ndarray:
    """[3, 4] mean camera of [N, 3, 4] OpenGL poses: mean centre, mean backward axis, right and
    up axes made orthonormal from the mean up axis."""
    backward = _normalize(c2w[:, :, 2].sum(axis=0))
    right = _normalize(np.cross(c2w[:, :, 1].sum(axis=0), backward))
    up = np.cross(backward, right)
    return np.stack([right, up, backward, c2w[:, :, 3].mean(axis=0)], axis=1)


def recentre_poses(c2w: np.ndarray) -> np.ndarray:
    """[N, 3, 4] poses expressed in the frame of their :func:`average_pose` (which becomes the
    identity)."""
    mean = average_pose(c2w)
    rotation, centre = mean[:, :3], mean[:, 3]
    return np.concatenate(
        [rotation.T @ c2w[:, :, :3], (rotation.T @ (c2w[:, :, 3] - centre).T).T[:, :, None]], axis=2
    )


def load_llff(path: str | os.PathLike[str], split: str = "train", *, downscale: int = 1,
              holdout_every: int = DEFAULT_HOLDOUT_EVERY, scene_type: str | None = None,
              device: torch.device | str = "cpu") -> Scene:
    """Read one split of an LLFF scene folder (checked arguments; see
    :func:`~taichi_pvd.data.formats.load_scene`).

    Images come from ``images_<downscale>/`` when that folder exists, else from ``images/``
    area-averaged by ``downscale``. Returns a :class:`Scene` with ``alphas=None`` and ``ndc``
    set; intrinsics are ``hwf``'s focal scaled to the loaded image width, principal point at the
    image centre. Raises :class:`SceneError` for a ``scene_type`` other than forward-facing, a
    missing, unreadable or malformed ``poses_bounds.npy``, a missing image folder, an image count that differs from the pose
    count, and images whose size or aspect ratio disagrees with ``hwf`` or with each other.
    """
    kind = llff_scene_type(scene_type)
    root = Path(path)
    poses_file = root / POSES_BOUNDS
    raw = _read_poses_bounds(poses_file)
    n = raw.shape[0]
    files, factor = _image_files(root, downscale, n)
    picked = holdout_indices(n, split, holdout_every)
    if not picked:
        raise SceneError(
            f"{poses_file} has {n} image(s): too few for a {split} split (test is every "
            f"{holdout_every}th image from the first, train the rest); add images or change the holdout rule"
        )
    matrices = raw[:, :15].reshape(n, 3, 5)
    bounds = raw[:, 15:17]
    full_h, full_w, focal = (float(v) for v in matrices[0, :, 4])

    scale = 1.0 / (NEAR_BOUND_FRACTION * float(bounds.min()))
    c2w = llff_to_opengl(matrices)
    c2w[:, :, 3] *= scale
    c2w = recentre_poses(c2w)

    pixels = [_read_rgb(files[i]) for i in picked]
    height, width = pixels[0].shape[:2]
    for i, image in zip(picked, pixels):
        if image.shape[:2] != (height, width):
            raise SceneError(
                f"{files[i]} is {image.shape[1]}x{image.shape[0]} pixels but {files[picked[0]]} is "
                f"{width}x{height}: every image of an LLFF scene must have one size"
            )
    out_h, out_w = height // factor, width // factor
    if out_h < 1 or out_w < 1:
        raise SceneError(f"downscale {downscale} leaves no pixels of {width}x{height} images")
    if abs(out_w / out_h - full_w / full_h) > 0.01 * full_w / full_h:
        raise SceneError(
            f"the images in {files[0].parent} are {width}x{height} pixels but {poses_file} says "
            f"{full_w:g}x{full_h:g} (width x height): the aspect ratios differ, so the poses belong "
            "to other images; regenerate poses_bounds.npy or use the matching images"
        )
    images = torch.stack([_downscale(torch.from_numpy(p), factor) for p in pixels])
    f = focal * out_w / full_w
    ndc = _ndc_space(c2w, f, out_w, out_h)
    centres = c2w[picked, :, 3]
    return Scene(
        images=images.to(device),
        alphas=None,
        c2w=torch.from_numpy(c2w[picked]).float().to(device),
        intrinsics=torch.tensor([[f, f, 0.5 * out_w, 0.5 * out_h]] * len(picked)).to(device),
        height=out_h,
        width=out_w,
        aabb=ndc.aabb().to(device),
        near=0.0,
        far=ndc.far(),
        camera_radius=float(np.linalg.norm(centres, axis=1).mean()),
        name=root.resolve().name,
        split=split,
        file_paths=[files[i] for i in picked],
        scene_type=kind,
        split_summary=SplitSummary.held_out([f.name for f in files], holdout_every),
        ndc=ndc,
    )


def _ndc_space(c2w: np.ndarray, focal: float, width: int, height: int) -> NdcSpace:
    """The NDC space of cameras [N, 3, 4] (all splits, so every split gets one box)."""
    space = NdcSpace(focal=focal, width=float(width), height=float(height))
    corners = torch.tensor([[0.0, 0.0], [width, 0.0], [0.0, height], [width, height]], dtype=torch.float64)
    poses = torch.from_numpy(c2w)
    intrinsics = torch.tensor([[focal, focal, 0.5 * width, 0.5 * height]], dtype=torch.float64)
    origins, directions = generate_rays(poses, intrinsics.expand(len(poses), 4), height, width,
                                        pixels=corners.expand(len(poses), 4, 2))
    return dataclasses.replace(space, xy_extent=ndc_xy_extent(space, origins, directions))


def _read_poses_bounds(path: Path) -> np.ndarray:
    """[N, 17] float64 rows of ``poses_bounds.npy``, checked."""
    try:
        raw = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        # An empty or truncated file raises EOFError ("No data left in file").
        raise SceneError(
            f"cannot read {path} ({err or 'empty file'}): it must be a NumPy .npy array of shape [N, 17]; "
            "regenerate it with LLFF's imgs2poses.py"
        ) from err
    if raw.ndim != 2 or raw.shape[1] != 17 or raw.shape[0] < 1:
        raise SceneError(
            f"{path} has shape {list(raw.shape)}, expected [N, 17] (a 3x5 pose matrix and "
            "near/far bounds per image); regenerate it with LLFF's imgs2poses.py"
        )
    if not np.issubdtype(raw.dtype, np.number):
        raise SceneError(f"{path} holds {raw.dtype} values, expected numbers")
    raw = raw.astype(np.float64)
    if not (np.isfinite(raw).all() and (np.abs(raw) <= np.finfo(np.float32).max).all()):
        raise SceneError(f"{path} contains NaN, Inf or values too large for float32: fix the poses")
    matrices = raw[:, :15].reshape(-1, 3, 5)
    rotations = matrices[:, :, :3]
    gram = np.einsum("nji,njk->nik", rotations, rotations)
    bad = np.flatnonzero((np.abs(gram - np.eye(3)).max(axis=(1, 2)) > 1e-2)
                         | (np.linalg.det(rotations) <= 0))
    if bad.size:
        raise SceneError(
            f"pose {int(bad[0])} in {path} is not a rotation (columns down, right, backward must "
            "be orthonormal and right-handed): regenerate poses_bounds.npy"
        )
    hwf = matrices[:, :, 4]
    if not (hwf > 0).all():
        raise SceneError(f"{path}: image height, width and focal length (5th column) must be positive")
    if not (np.abs(hwf - hwf[0]) <= 1e-3 * np.abs(hwf[0])).all():
        raise SceneError(f"{path}: every image must share one height, width and focal length")
    bounds = raw[:, 15:17]
    if not ((bounds[:, 0] > 0).all() and (bounds[:, 1] > bounds[:, 0]).all()):
        raise SceneError(
            f"{path}: the near/far bounds (last two columns) must satisfy 0 < near < far for every image"
        )
    return raw


def _image_files(root: Path, downscale: int, n_poses: int) -> tuple[list[Path], int]:
    """The sorted image files to read and the factor still to apply to them."""
    candidates = [(root / f"images_{downscale}", 1)] if downscale > 1 else []
    candidates.append((root / "images", downscale))
    for folder, factor in candidates:
        if folder.is_dir():
            break
    else:
        raise SceneError(
            f"no images/ folder in {root} (or images_{downscale}/): an LLFF scene keeps its "
            f"pictures beside {POSES_BOUNDS}"
        )
    try:
        files = sorted(p for p in folder.iterdir()
                       if p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith("."))
    except OSError as err:
        raise SceneError(f"cannot list {folder} ({err.strerror or err}): check its permissions") from err
    if len(files) != n_poses:
        raise SceneError(
            f"{root / POSES_BOUNDS} has {n_poses} poses but {folder} holds {len(files)} images "
            f"(.png/.jpg): they must match one to one, in sorted file-name order"
        )
    return files, factor


def _read_rgb(path: Path) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1]."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except Exception as err:  # PIL raises many types for corrupt or truncated files
        raise SceneError(f"cannot read image {path}: {err}; re-export or re-download it") from err
    return array.astype(np.float32) / 255.0


def _downscale(image: torch.Tensor, factor: int) -> torch.Tensor:
    """[H, W, 3] -> [H // f, W // f, 3], each pixel the mean of an f x f block."""
    if factor == 1:
        return image
    h, w = image.shape[0] // factor, image.shape[1] // factor
    return F.avg_pool2d(image[: h * factor, : w * factor].permute(2, 0, 1)[None], factor)[0].permute(1, 2, 0)


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)
