"""Normalized device coordinates (NDC) for forward-facing scenes (NeRF, Mildenhall et al. 2020,
appendix C).

A forward-facing scene is seen by cameras that all look roughly down the world -Z axis (after
the LLFF loader recentres them, the world frame *is* the mean camera). Its content reaches to
infinity, so it is marched in the projective space of the mean camera: a point ``(x, y, z)``
with ``z <= -near`` maps to

    x' = -(2 f / W) x / z,    y' = -(2 f / H) y / z,    z' = 1 + 2 near / z,

which sends the near plane ``z = -near`` to ``z' = -1``, infinity to ``z' = 1``, and the mean
camera's view frustum to ``[-1, 1]^2``. Uniform steps in ``z'`` are uniform steps in disparity.

The projection maps straight lines to straight lines. A ray ``o + t d`` (``d_z < 0``) is first
moved to start on the near plane, then its image is ``o' + t' d'`` with ``t'`` in ``[0, 1)``
covering the near plane (``t' = 0``) to infinity (``t' -> 1``). The marcher wants unit
directions, so :func:`ndc_rays` returns ``d' / |d'|`` and the length ``|d'|``: the NDC image of
the ray reaches ``z' = 1`` at distance ``|d'|`` along the unit direction (``s = t' |d'|``).

The mapping is fixed by the training cameras' ``f / W`` and ``f / H`` (kept in
:class:`NdcSpace`), so rays of any image size or virtual camera share one space. Colour
networks see the NDC ray direction, like every other sample input.
"""

from __future__ import annotations

import dataclasses

import torch

#: Padding of the NDC box beyond the mean camera's frustum in x and y (other cameras see a
#: little outside it).
NDC_XY_PAD = 0.1
#: Padding of the NDC box in front of the near plane (z' < -1).
NDC_Z_PAD = 0.05
#: Direction components this close to zero are clamped (rays parallel to the near plane never
#: reach it; forward-facing cameras do not produce them).
_MIN_FORWARD = 1e-6


@dataclasses.dataclass(frozen=True)
class NdcSpace:
    """The NDC projection of a forward-facing scene.

    ``focal``, ``width`` and ``height`` are those of the training images (pixels); only the
    ratios ``focal / width`` and ``focal / height`` matter, so any downscale gives the same space.
    """

    focal: float
    width: float
    height: float
    #: Distance of the near plane in front of the world origin, world units.
    near: float = 1.0
    #: Half-size of the box in NDC x and y before padding: 1 for the mean camera's frustum,
    #: more when cameras off the mean see beyond it (see :func:`ndc_xy_extent`).
    xy_extent: float = 1.0

    def aabb(self) -> torch.Tensor:
        """[2, 3] float32 scene box in NDC: ``[-e, e]^2 x [-1, 1]`` (``e = xy_extent``), padded
        by :data:`NDC_XY_PAD` in x, y and :data:`NDC_Z_PAD` in front of the near plane."""
        xy = self.xy_extent + NDC_XY_PAD
        return torch.tensor([[-xy, -xy, -1.0 - NDC_Z_PAD], [xy, xy, 1.0]], dtype=torch.float32)

    def far(self) -> float:
        """Upper bound of the length of any ray segment inside :meth:`aabb` (its diagonal)."""
        extent = self.aabb()[1] - self.aabb()[0]
        return float(extent.norm())

    def rays(self, origins: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World rays [..., 3] -> NDC rays ``(origins, unit directions)`` [..., 3] (contiguous)."""
        o, d, _ = ndc_rays(origins, directions, self.focal, self.width, self.height, self.near)
        return o, d

    def to_dict(self) -> dict[str, float]:
        """JSON-compatible form (``NdcSpace(**d)`` restores it)."""
        return dataclasses.asdict(self)


def ndc_points(points: torch.Tensor, focal: float, width: float, height: float,
               near: float = 1.0) -> torch.Tensor:
    """Project world points [..., 3] (with ``z < 0``) into NDC [..., 3], same dtype.

    ``focal``, ``width``, ``height`` in pixels; ``near`` in world units. This is the mapping
    :func:`ndc_rays` applies to rays, given here for points (tests, visualisation).
    """
    x, y, z = points.unbind(-1)
    return torch.stack([-(2 * focal / width) * x / z, -(2 * focal / height) * y / z, 1 + 2 * near / z], dim=-1)


def ndc_rays(origins: torch.Tensor, directions: torch.Tensor, focal: float, width: float,
             height: float, near: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Map forward-facing world rays into NDC.

    Args:
        origins: [..., 3] ray origins, world units (float32 or float64).
        directions: [..., 3] ray directions (any length), with ``d_z < 0`` (looking down -Z;
            ``d_z`` is clamped to at most ``-1e-6``).
        focal: focal length in pixels of images ``width`` x ``height`` pixels.
        near: the near plane ``z = -near`` (world units) that becomes ``z' = -1``.

    Returns:
        ``(origins', directions', lengths)``: [..., 3] NDC origins on ``z' = -1``, [..., 3] unit
        NDC directions, and [...] the distance along ``directions'`` from ``origins'`` to
        ``z' = 1`` (the image of the point at infinity). Same dtype and device as the inputs.
    """
    d = directions.clone()
    d[..., 2] = d[..., 2].clamp(max=-_MIN_FORWARD)
    t = -(near + origins[..., 2]) / d[..., 2]
    o = origins + t[..., None] * d
    ox, oy, oz = o.unbind(-1)
    dx, dy, dz = d.unbind(-1)
    ax, ay = 2 * focal / width, 2 * focal / height
    o_ndc = torch.stack([-ax * ox / oz, -ay * oy / oz, 1 + 2 * near / oz], dim=-1)
    d_ndc = torch.stack([-ax * (dx / dz - ox / oz), -ay * (dy / dz - oy / oz), -2 * near / oz], dim=-1)
    lengths = d_ndc.norm(dim=-1)
    return o_ndc.contiguous(), (d_ndc / lengths[..., None]).contiguous(), lengths


def ndc_xy_extent(space: NdcSpace, corner_origins: torch.Tensor, corner_directions: torch.Tensor) -> float:
    """The largest NDC ``|x|`` or ``|y|`` (at least 1) reached by rays [..., 3] between the near
    plane and infinity: pass the rays through the image corners of every camera of a scene, and
    the box of :meth:`NdcSpace.aabb` with this extent holds every ray of those cameras."""
    o, d, length = ndc_rays(corner_origins, corner_directions, space.focal, space.width, space.height, space.near)
    ends = torch.cat([o[..., :2].reshape(-1, 2), (o + length[..., None] * d)[..., :2].reshape(-1, 2)])
    return max(1.0, float(ends.abs().max()))
