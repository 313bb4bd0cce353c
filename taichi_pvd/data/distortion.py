"""Lens distortion as COLMAP, OpenCV and nerfstudio write it: pixel -> undistorted ray direction.

Two camera models, in OpenCV's camera frame (x right, y down, z forward) and its normalised
image coordinates ``(x, y) = (X / Z, Y / Z)``; a pixel is at ``u = fx * x_d + cx``,
``v = fy * y_d + cy``:

- ``OPENCV`` (radial-tangential, coefficients ``k1, k2, k3, p1, p2``; ``k3`` is 0 in COLMAP's
  OPENCV model): with ``r2 = x^2 + y^2``,
  ``x_d = x (1 + k1 r2 + k2 r2^2 + k3 r2^3) + 2 p1 x y + p2 (r2 + 2 x^2)``,
  ``y_d = y (1 + k1 r2 + k2 r2^2 + k3 r2^3) + p1 (r2 + 2 y^2) + 2 p2 x y``.
- ``OPENCV_FISHEYE`` (equidistant, ``k1..k4``): with ``theta = atan(sqrt(x^2 + y^2))``,
  ``theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)`` and
  ``(x_d, y_d) = theta_d / r * (x, y)``.

:func:`undistort_directions` inverts these maps by Newton's method in float64 and returns unit
ray directions in the OpenGL camera frame that the rest of the project uses (x right, y up,
looking down -z).
"""

from __future__ import annotations

import dataclasses

import torch

#: Camera models with distortion, and which coefficients each reads.
MODEL_COEFFICIENTS = {"OPENCV": ("k1", "k2", "k3", "p1", "p2"), "OPENCV_FISHEYE": ("k1", "k2", "k3", "k4")}
#: Newton iterations of the inverse; each one at least doubles the correct digits near the
#: solution, and the loop stops once every point moved less than :data:`_TOLERANCE`.
_MAX_ITERATIONS = 20
_TOLERANCE = 1e-13


@dataclasses.dataclass(frozen=True)
class Lens:
    """One distortion model and its coefficients for every view of a split."""

    #: ``'OPENCV'`` or ``'OPENCV_FISHEYE'`` (see the module notes).
    model: str
    #: [N, 5] float64 ``(k1, k2, k3, p1, p2)`` for OPENCV, [N, 4] ``(k1, k2, k3, k4)`` for
    #: OPENCV_FISHEYE, one row per view.
    coefficients: torch.Tensor

    def __post_init__(self) -> None:
        if self.model not in MODEL_COEFFICIENTS:
            raise ValueError(f"unknown camera model {self.model!r}: use one of {', '.join(MODEL_COEFFICIENTS)}")
        width = len(MODEL_COEFFICIENTS[self.model])
        if self.coefficients.ndim != 2 or self.coefficients.shape[1] != width:
            raise ValueError(f"{self.model} coefficients must be [N, {width}], got {list(self.coefficients.shape)}")

    def __len__(self) -> int:
        return int(self.coefficients.shape[0])

    def select(self, index: torch.Tensor | slice | list[int]) -> "Lens":
        """The lens of the views ``index`` (as tensor indexing takes it)."""
        return Lens(self.model, self.coefficients[index])

    def to_dict(self) -> dict:
        """JSON-compatible form."""
        return {"model": self.model, "coefficients": self.coefficients.tolist()}


def undistort_directions(xy_distorted: torch.Tensor, lens_model: str, coefficients: torch.Tensor) -> torch.Tensor:
    """Unit ray directions [..., 3] in the OpenGL camera frame (x right, y up, -z forward) of
    distorted normalised coordinates ``xy_distorted`` [..., 2] (OpenCV's frame, y down), in
    float64 whatever the inputs' dtype.

    ``coefficients`` [..., C] broadcast against ``xy_distorted`` (see :class:`Lens`). OPENCV is
    inverted by Newton's method on the 2D map starting from the distorted point; the fisheye
    model by Newton's method on ``theta_d(theta)``, which also gives rays beyond 90 degrees.
    """
    xy_d = xy_distorted.double()
    coeffs = coefficients.double()
    if lens_model == "OPENCV":
        xy = _invert_radial_tangential(xy_d, coeffs)
        camera = torch.cat([xy, torch.ones_like(xy[..., :1])], dim=-1)
    else:
        theta = _invert_fisheye(xy_d.norm(dim=-1), coeffs)
        theta_d = xy_d.norm(dim=-1, keepdim=True)
        unit = torch.where(theta_d > 0, xy_d / theta_d.clamp_min(1e-300), torch.zeros_like(xy_d))
        camera = torch.cat([unit * torch.sin(theta)[..., None], torch.cos(theta)[..., None]], dim=-1)
    camera = camera / camera.norm(dim=-1, keepdim=True)
    return camera * torch.tensor([1.0, -1.0, -1.0], dtype=camera.dtype, device=camera.device)


def _invert_radial_tangential(xy_d: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Solve ``distort(xy) = xy_d`` for the OPENCV model (Newton, analytic Jacobian)."""
    k1, k2, k3, p1, p2 = coeffs.unbind(-1)
    xy = xy_d.clone()
    for _ in range(_MAX_ITERATIONS):
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        d_radial = k1 + r2 * (2 * k2 + 3 * k3 * r2)  # d radial / d r2
        fx = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x) - xy_d[..., 0]
        fy = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y - xy_d[..., 1]
        fx_x = radial + 2 * x * x * d_radial + 2 * p1 * y + 6 * p2 * x
        fx_y = 2 * x * y * d_radial + 2 * p1 * x + 2 * p2 * y
        fy_x = 2 * x * y * d_radial + 2 * p1 * x + 2 * p2 * y
        fy_y = radial + 2 * y * y * d_radial + 6 * p1 * y + 2 * p2 * x
        det = fx_x * fy_y - fx_y * fy_x
        det = torch.where(det.abs() > 1e-12, det, torch.full_like(det, 1e-12))
        step = torch.stack([(fx * fy_y - fy * fx_y) / det, (fy * fx_x - fx * fy_x) / det], dim=-1)
        xy = xy - step
        if float(step.abs().max()) < _TOLERANCE:
            break
    return xy


def _invert_fisheye(theta_d: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Solve ``theta (1 + k1 theta^2 + ... + k4 theta^8) = theta_d`` for ``theta`` (Newton)."""
    k1, k2, k3, k4 = coeffs.unbind(-1)
    theta = theta_d.clone()
    for _ in range(_MAX_ITERATIONS):
        t2 = theta * theta
        value = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - theta_d
        slope = 1 + t2 * (3 * k1 + t2 * (5 * k2 + t2 * (7 * k3 + t2 * 9 * k4)))
        slope = torch.where(slope.abs() > 1e-12, slope, torch.full_like(slope, 1e-12))
        step = value / slope
        theta = theta - step
        if float(step.abs().max()) < _TOLERANCE:
            break
    return theta
