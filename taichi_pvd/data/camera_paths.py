"""Camera poses for rendering videos and for distillation: orbits, spirals, ellipses through
360-degree captures, random sphere poses.

Every pose is a [3, 4] camera-to-world matrix in the OpenGL convention used by the loader (the
camera looks down its -Z axis, +Y up in the image). Object scenes in the Blender convention have
world +Z up, hence the default ``up=(0, 0, 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from taichi_pvd.errors import ConfigError

Vector = Sequence[float] | torch.Tensor


def look_at(eye: torch.Tensor, target: Vector, up: Vector = (0.0, 0.0, 1.0)) -> torch.Tensor:
    """Camera-to-world matrices of cameras at ``eye`` looking at ``target``.

    Args:
        eye: [..., 3] camera centres, float.
        target: [3] or [..., 3] points looked at.
        up: [3] world direction that appears upward in the image. When it is parallel to the
            viewing direction, the world axis least aligned with the view is used instead.

    Returns:
        [..., 3, 4] camera-to-world (columns: right, up, backward, centre), ``eye``'s dtype.
    """
    target_t = torch.as_tensor(target, dtype=eye.dtype, device=eye.device)
    up_t = torch.as_tensor(up, dtype=eye.dtype, device=eye.device).expand_as(eye)
    backward = _normalize(eye - target_t)
    right = torch.linalg.cross(up_t, backward, dim=-1)
    degenerate = right.norm(dim=-1) < 1e-6
    if degenerate.any():
        fallback = torch.zeros_like(backward)
        fallback.scatter_(-1, backward.abs().argmin(dim=-1, keepdim=True), 1.0)
        right = torch.where(
            degenerate[..., None], torch.linalg.cross(fallback, backward, dim=-1), right
        )
    right = _normalize(right)
    camera_up = torch.linalg.cross(backward, right, dim=-1)
    return torch.stack([right, camera_up, backward, eye], dim=-1)


def orbit_path(
    n_frames: int,
    radius: float,
    elevation_deg: float,
    centre: Vector = (0.0, 0.0, 0.0),
    up: Vector = (0.0, 0.0, 1.0),
    *,
    start_azimuth_deg: float = 0.0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``n_frames`` cameras evenly spaced on a horizontal circle, all looking at ``centre``.

    Args:
        n_frames: number of poses (a full turn, the last frame one step before the first).
        radius: distance of every camera from ``centre``, world units.
        elevation_deg: angle above the plane perpendicular to ``up``, degrees.
        centre: [3] point looked at and orbited.
        up: [3] orbit axis (world up).
        start_azimuth_deg: azimuth of the first frame, degrees, measured in the plane
            perpendicular to ``up`` (for ``up = +Z``: from +X towards +Y).

    Returns:
        [n_frames, 3, 4] float32 camera-to-world on ``device``.
    """
    if n_frames < 1:
        raise ConfigError(f"an orbit needs at least one frame, got {n_frames}")
    if not radius > 0:
        raise ConfigError(f"orbit radius must be positive, got {radius}")
    azimuth = torch.arange(n_frames, dtype=torch.float64) * (2 * math.pi / n_frames)
    azimuth = azimuth + math.radians(start_azimuth_deg)
    elevation = torch.full_like(azimuth, math.radians(elevation_deg))
    return _poses_on_sphere(azimuth, elevation, radius, centre, up).float().to(device)


def sphere_poses(
    n: int,
    radius: float,
    elevation_range_deg: tuple[float, float] = (0.0, 80.0),
    generator: torch.Generator | None = None,
    *,
    centre: Vector = (0.0, 0.0, 0.0),
    up: Vector = (0.0, 0.0, 1.0),
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``n`` random cameras on a sphere around ``centre``, each looking at it.

    Positions are uniform in area over the band of the sphere between the two elevations
    (uniform azimuth, uniform sine of the elevation).

    Args:
        n: number of poses.
        radius: distance of the cameras from ``centre``, world units.
        elevation_range_deg: ``(low, high)`` elevation above the plane perpendicular to ``up``,
            degrees, within [-90, 90].
        generator: a CPU ``torch.Generator`` (default: a fresh one seeded with 0).
        centre: [3] point looked at.
        up: [3] world up.

    Returns:
        [n, 3, 4] float32 camera-to-world on ``device``.
    """
    low, high = elevation_range_deg
    if not -90.0 <= low <= high <= 90.0:
        raise ConfigError(
            f"elevation range must satisfy -90 <= low <= high <= 90, got {(low, high)}"
        )
    if not radius > 0:
        raise ConfigError(f"sphere radius must be positive, got {radius}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    uniform = torch.rand((n, 2), generator=generator, dtype=torch.float64)
    azimuth = uniform[:, 0] * (2 * math.pi)
    sin_low, sin_high = math.sin(math.radians(low)), math.sin(math.radians(high))
    elevation = torch.asin((sin_low + uniform[:, 1] * (sin_high - sin_low)).clamp(-1.0, 1.0))
    return _poses_on_sphere(azimuth, elevation, radius, centre, up).float().to(device)


def spiral_path(
    c2w: torch.Tensor,
    n_frames: int = 120,
    *,
    n_rotations: float = 2.0,
    radii: Vector | None = None,
    focus_distance: float | None = None,
) -> torch.Tensor:
    """A forward-facing spiral around the mean of the given (training) cameras.

    The mean camera (mean centre, averaged axes) is moved along an ellipse in its own image
    plane while drifting forward and back, every frame looking at a focus point
    ``focus_distance`` in front of the mean camera.

    Args:
        c2w: [N, 3, 4] camera-to-world matrices of the cameras to spiral around.
        n_frames: number of poses.
        n_rotations: number of turns around the mean camera's axis.
        radii: [3] extent of the spiral along the mean camera's right, up and backward axes,
            world units; default: the 90th percentile of the cameras' offsets from their mean.
        focus_distance: distance from the mean camera to the point looked at; default: the
            point closest (least squares) to all cameras' optical axes, measured along the mean
            viewing direction.

    Returns:
        [n_frames, 3, 4] camera-to-world in ``c2w``'s dtype and device.
    """
    if c2w.ndim != 3 or c2w.shape[1:] != (3, 4):
        raise ValueError(f"c2w must be [N, 3, 4], got {list(c2w.shape)}")
    poses = c2w.double()
    centre = poses[:, :, 3].mean(dim=0)
    forward = _normalize(-poses[:, :, 2].mean(dim=0))
    mean_up = poses[:, :, 1].mean(dim=0)
    right = _normalize(torch.linalg.cross(forward, mean_up, dim=-1))
    cam_up = torch.linalg.cross(right, forward, dim=-1)
    axes = torch.stack([right, cam_up, -forward], dim=-1)  # columns of the mean camera
    if radii is None:
        offsets = (poses[:, :, 3] - centre) @ axes
        radii_t = torch.quantile(offsets.abs(), 0.9, dim=0)
    else:
        radii_t = torch.as_tensor(radii, dtype=torch.float64, device=poses.device)
    if focus_distance is None:
        focus_distance = _axes_focus_distance(poses, centre, forward)
    focus = centre + focus_distance * forward
    theta = torch.arange(n_frames, dtype=torch.float64, device=poses.device)
    theta = theta * (2 * math.pi * n_rotations / n_frames)
    local = torch.stack([torch.cos(theta), -torch.sin(theta), -torch.sin(0.5 * theta)], dim=-1)
    eyes = centre + (local * radii_t) @ axes.T
    return look_at(eyes, focus, cam_up).to(c2w.dtype)


def ellipse_path(c2w: torch.Tensor, n_frames: int = 120) -> torch.Tensor:
    """A closed path through a 360-degree capture: the ellipse fitted to the (training) cameras
    ``c2w`` [N, 3, 4], every frame looking at the point nearest their optical axes (as
    mip-NeRF 360's and nerfstudio's ellipse path).

    The ellipse lies in the plane of the camera centres (the normal is their direction of least
    spread, pointing along the cameras' mean up vector), at their mean height over the focus
    point, centred on it; its semi-axes, along the centres' directions of most and least spread
    in that plane, are the 90th percentiles of the centres' distances from the focus along them.

    Args:
        c2w: [N, 3, 4] camera-to-world matrices (OpenGL convention) of cameras around a scene.
        n_frames: number of poses (a full turn, the last frame one step before the first).

    Returns:
        [n_frames, 3, 4] camera-to-world in ``c2w``'s dtype and device. :class:`ConfigError`
        when the cameras' axes do not meet (no point to look at) or ``n_frames`` < 1.
    """
    if n_frames < 1:
        raise ConfigError(f"an ellipse needs at least one frame, got {n_frames}")
    if c2w.ndim != 3 or c2w.shape[1:] != (3, 4):
        raise ValueError(f"c2w must be [N, 3, 4], got {list(c2w.shape)}")
    poses = c2w.double()
    focus = axes_focus_point(poses)
    if focus is None:
        raise ConfigError("the cameras' optical axes are (nearly) parallel: there is no centre to circle around; "
                          "use the spiral path for a forward-facing capture")
    offsets = poses[:, :, 3] - focus
    _, _, axes = torch.linalg.svd(offsets - offsets.mean(0), full_matrices=False)
    normal = axes[2] if float(axes[2] @ poses[:, :, 1].mean(0)) >= 0 else -axes[2]
    in_plane = offsets - (offsets @ normal)[:, None] * normal
    _, _, plane_axes = torch.linalg.svd(in_plane, full_matrices=False)
    e1 = plane_axes[0]
    e2 = torch.linalg.cross(normal, e1, dim=-1)
    radii = torch.quantile(torch.stack([(in_plane @ e1).abs(), (in_plane @ e2).abs()], dim=-1), 0.9, dim=0)
    height = float((offsets @ normal).mean())
    theta = torch.arange(n_frames, dtype=torch.float64, device=poses.device) * (2 * math.pi / n_frames)
    eyes = (focus + height * normal + (radii[0] * torch.cos(theta))[:, None] * e1
            + (radii[1] * torch.sin(theta))[:, None] * e2)
    return look_at(eyes, focus, normal).to(c2w.dtype)


def axes_focus_point(poses: torch.Tensor) -> torch.Tensor | None:
    """The least-squares nearest point [3] of the optical axes of cameras ``poses`` [N, 3, 4]
    (OpenGL convention), in their dtype: where a ring of inward-looking cameras looks. None when
    the axes are (nearly) parallel and no such point stands out."""
    origins = poses[:, :, 3]
    directions = _normalize(-poses[:, :, 2])
    eye = torch.eye(3, dtype=poses.dtype, device=poses.device)
    projectors = eye - directions[:, :, None] * directions[:, None, :]
    system = projectors.sum(dim=0)
    rhs = (projectors @ origins[:, :, None]).sum(dim=0)[:, 0]
    eigenvalues = torch.linalg.eigvalsh(system)
    if eigenvalues[0] < 1e-3 * eigenvalues[-1]:
        return None
    return torch.linalg.solve(system, rhs)


def _axes_focus_distance(poses: torch.Tensor, centre: torch.Tensor, forward: torch.Tensor) -> float:
    """Distance along ``forward`` to the least-squares nearest point of all optical axes."""
    point = axes_focus_point(poses)
    if point is None:
        raise ConfigError(
            "the cameras' optical axes are (nearly) parallel, so there is no natural focus "
            "point: pass focus_distance"
        )
    distance = float((point - centre) @ forward)
    if not distance > 0:
        raise ConfigError("the cameras' optical axes meet behind them: pass focus_distance")
    return distance


def _poses_on_sphere(
    azimuth: torch.Tensor, elevation: torch.Tensor, radius: float, centre: Vector, up: Vector
) -> torch.Tensor:
    """float64 [n, 3, 4] cameras at the given angles (radians) looking at ``centre``."""
    centre_t = torch.as_tensor(centre, dtype=torch.float64)
    up_t = _normalize(torch.as_tensor(up, dtype=torch.float64))
    helper = torch.zeros(3, dtype=torch.float64)
    helper[int(up_t.abs().argmin())] = 1.0  # for up = +Z: azimuth 0 along +X
    e1 = _normalize(helper - (helper @ up_t) * up_t)
    e2 = torch.linalg.cross(up_t, e1, dim=-1)
    direction = (
        (torch.cos(elevation) * torch.cos(azimuth))[:, None] * e1
        + (torch.cos(elevation) * torch.sin(azimuth))[:, None] * e2
        + torch.sin(elevation)[:, None] * up_t
    )
    return look_at(centre_t + radius * direction, centre_t, up_t)


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)
