"""The normalised world of an unbounded scene and the box its fields cover.

An unbounded scene's world is normalised so that its training cameras fit in the unit cube
``[-1, 1]^3`` (:class:`ContractedSpace`), as nerfstudio does; its fields see contracted
coordinates (:func:`taichi_pvd.kernels.contraction.contract`) in the cube ``[-2, 2]^3``
(:func:`contracted_aabb`): the region the cameras move in is represented at full resolution and
everything beyond it in the shell between the two cubes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

#: Half-size of the cube the contraction leaves unchanged, normalised world units.
INNER_HALF_SIZE = 1.0
#: Half-size of the cube that holds every contracted point.
CONTRACTED_HALF_SIZE = 2.0


def contracted_aabb() -> torch.Tensor:
    """[2, 3] float32 box of every contracted point, ``[-2, 2]^3`` (min corner, max corner)."""
    return torch.tensor([[-CONTRACTED_HALF_SIZE] * 3, [CONTRACTED_HALF_SIZE] * 3])


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
