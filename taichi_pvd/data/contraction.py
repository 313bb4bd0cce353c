"""Scene contraction for unbounded scenes (the L-infinity form of MERF and nerfstudio).

A point ``x`` with ``m = |x|_inf = max(|x_1|, |x_2|, |x_3|)`` maps to

    contract(x) = x                                  if m <= 1,
    contract(x) = (2 - 1 / m) * x / m                otherwise,

the identity inside the unit cube ``[-1, 1]^3`` and a squeeze of the rest of space into the
shell between the unit cube and the cube ``[-2, 2]^3`` (``|contract(x)|_inf = 2 - 1 / m``, so
infinity lands on its faces). The map is continuous, keeps each point on its ray from the
origin, and is monotone along it. A radial distance ``r = m > 1`` becomes ``s = 2 - 1 / r``, so one
unit of contracted length there spans ``dr / ds = r^2 = 1 / (2 - s)^2`` world units: the
:func:`radial_stretch` the occupancy grid scales densities by.

Fields of an unbounded scene see contracted coordinates (their box is ``[-2, 2]^3``); rays are
marched in world space and each sample is contracted before the occupancy grid and the field
see it (:mod:`taichi_pvd.kernels.marching`, whose Taichi form of :func:`contract` computes with
the same operations in the same order).

Before contraction the loader normalises an unbounded scene's world so that the training
cameras fit in the unit cube (:class:`ContractedSpace`), as nerfstudio does: the region they
move in is represented at full resolution and everything beyond it in the contracted shell.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

#: Half-size of the cube the contraction leaves unchanged, world units.
INNER_HALF_SIZE = 1.0
#: Half-size of the cube that holds every contracted point.
CONTRACTED_HALF_SIZE = 2.0


def contracted_aabb() -> torch.Tensor:
    """[2, 3] float32 box of every contracted point, ``[-2, 2]^3`` (min corner, max corner)."""
    return torch.tensor([[-CONTRACTED_HALF_SIZE] * 3, [CONTRACTED_HALF_SIZE] * 3])


def contract(x: torch.Tensor) -> torch.Tensor:
    """Contract world points ``x`` [..., 3] (any float dtype) into ``[-2, 2]^3``; same shape and
    dtype. Points with ``|x|_inf <= 1`` are returned unchanged (bit for bit).

    Example:
        >>> contract(torch.tensor([[0.5, -0.25, 0.0], [4.0, 2.0, 0.0]])).tolist()
        [[0.5, -0.25, 0.0], [1.75, 0.875, 0.0]]
    """
    m = x.abs().amax(dim=-1, keepdim=True)
    outside = m > INNER_HALF_SIZE
    safe = torch.where(outside, m, torch.ones_like(m))
    return torch.where(outside, (CONTRACTED_HALF_SIZE - 1.0 / safe) * (x / safe), x)


def radial_stretch(q: torch.Tensor) -> torch.Tensor:
    """World length per unit of contracted length along a ray from the origin, at contracted
    points ``q`` [..., 3] with ``|q|_inf < 2``: 1 inside the unit cube, ``1 / (2 - |q|_inf)^2``
    outside it. Returns [...], same dtype."""
    m = q.abs().amax(dim=-1)
    gap = (CONTRACTED_HALF_SIZE - m).clamp_min(torch.finfo(q.dtype).tiny)
    return torch.where(m > INNER_HALF_SIZE, 1.0 / (gap * gap), torch.ones_like(m))


@dataclasses.dataclass(frozen=True)
class ContractedSpace:
    """The normalisation of an unbounded scene's world: a point ``x`` of the scene's own world
    (its ``transforms.json`` units) is at ``(x - centre) * scale`` in the normalised world the
    cameras, rays, ``near`` and ``far`` of its :class:`~taichi_pvd.data.scene.Scene` use, and at
    ``contract((x - centre) * scale)`` in the field's box ``[-2, 2]^3``."""

    #: The point of the original world placed at the origin: the mean training camera centre.
    centre: tuple[float, float, float]
    #: Normalised units per original world unit: the training camera centres farthest from
    #: ``centre`` (in L-infinity distance) land on the unit cube's surface.
    scale: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "centre", tuple(float(v) for v in self.centre))
        object.__setattr__(self, "scale", float(self.scale))

    @classmethod
    def from_camera_centres(cls, centres: np.ndarray) -> "ContractedSpace | None":
        """The space that fits camera centres [N, 3] (original world units) into the unit cube,
        or None when they all coincide (no size to normalise by)."""
        centre = centres.mean(axis=0)
        extent = float(np.abs(centres - centre).max())
        if not extent > 1e-9 * max(1.0, float(np.abs(centre).max())):
            return None
        return cls(centre=tuple(centre), scale=INNER_HALF_SIZE / extent)

    def normalise_poses(self, c2w: np.ndarray) -> np.ndarray:
        """Camera-to-world matrices [N, 3, 4] of the original world -> the normalised world
        (rotations kept, centres moved and scaled); float64."""
        out = np.array(c2w, dtype=np.float64)
        out[:, :, 3] = (out[:, :, 3] - np.asarray(self.centre)) * self.scale
        return out

    def aabb(self) -> torch.Tensor:
        """[2, 3] float32 box the fields of the scene cover: :func:`contracted_aabb`."""
        return contracted_aabb()

    def to_dict(self) -> dict:
        """JSON-compatible form (``ContractedSpace(**d)`` restores it)."""
        return {"centre": list(self.centre), "scale": self.scale}
