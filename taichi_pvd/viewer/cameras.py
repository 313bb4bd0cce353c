"""Viewer cameras: a viser camera (OpenCV axes, world-from-camera rotation as a wxyz quaternion,
vertical field of view) as the renderer's pinhole camera (OpenGL-convention camera-to-world
matrix and ``(fx, fy, cx, cy)``), and back, for the initial view and the training-camera frusta."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..rendering.view_sets import ViewSet

#: OpenCV camera axes (x right, y down, z forward) -> OpenGL ones (x right, y up, z backward).
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])


def matrix_from_wxyz(wxyz) -> np.ndarray:
    """Rotation matrix [3, 3] float64 of a quaternion ``(w, x, y, z)`` (normalised here)."""
    w, x, y, z = np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def wxyz_from_matrix(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` [4] float64 of a rotation matrix [3, 3]."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + m[i, i] - m[j, j] - m[k, k], 1e-12))
        q = [0.0, 0.0, 0.0, 0.0]
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    return q / np.linalg.norm(q)


@dataclass(frozen=True)
class ViewCamera:
    """A pinhole camera of the viewer: pose and vertical field of view; the image size is
    chosen per frame (square pixels, principal point at the image centre)."""

    c2w: tuple[tuple[float, ...], ...]
    """3x4 camera-to-world matrix, OpenGL convention (as :func:`~taichi_pvd.data.generate_rays`)."""
    fov_y: float
    """Vertical field of view, radians."""

    @classmethod
    def from_viser(cls, wxyz, position, fov_y: float) -> ViewCamera:
        """The camera of a viser client: ``wxyz`` [4] world-from-camera rotation (OpenCV axes),
        ``position`` [3] world units, ``fov_y`` radians."""
        rotation = matrix_from_wxyz(wxyz) @ _FLIP_YZ
        c2w = np.concatenate([rotation, np.asarray(position, dtype=np.float64).reshape(3, 1)], axis=1)
        return cls(tuple(tuple(float(v) for v in row) for row in c2w), float(fov_y))

    def viser_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """``(wxyz [4], position [3])`` of this camera in viser's convention."""
        c2w = np.asarray(self.c2w)
        return wxyz_from_matrix(c2w[:, :3] @ _FLIP_YZ), c2w[:, 3].copy()

    def intrinsics(self, width: int, height: int) -> tuple[float, float, float, float]:
        """``(fx, fy, cx, cy)`` in pixels for a ``width`` x ``height`` image."""
        focal = 0.5 * height / math.tan(0.5 * self.fov_y)
        return focal, focal, 0.5 * width, 0.5 * height

    def view_set(self, width: int, height: int, near: float, far: float,
                 background: tuple[float, float, float]) -> ViewSet:
        """This camera as a one-camera :class:`ViewSet` of ``width`` x ``height`` pixels."""
        return ViewSet(torch.tensor([self.c2w], dtype=torch.float32),
                       torch.tensor([self.intrinsics(width, height)], dtype=torch.float32),
                       width, height, near, far, background=background)

    def to_dict(self, width: int, height: int) -> dict:
        """JSON form for an image of ``width`` x ``height``: ``c2w`` (3x4, OpenGL), ``fov_y_rad``,
        ``width``, ``height`` and ``intrinsics`` ``[fx, fy, cx, cy]``."""
        return {"c2w": [list(row) for row in self.c2w], "fov_y_rad": self.fov_y, "width": width,
                "height": height, "intrinsics": list(self.intrinsics(width, height))}

    @classmethod
    def from_dict(cls, data: dict) -> ViewCamera:
        """The camera of :meth:`to_dict`'s JSON."""
        return cls(tuple(tuple(float(v) for v in row) for row in data["c2w"]), float(data["fov_y_rad"]))


def vertical_fov(fy: float, height: int) -> float:
    """Vertical field of view (radians) of a camera of focal length ``fy`` pixels and ``height``
    pixels."""
    return 2.0 * math.atan(0.5 * height / fy)
