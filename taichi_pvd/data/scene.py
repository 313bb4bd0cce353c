"""One split of a scene in memory: the :class:`Scene` every scene loader returns.

Poses are camera-to-world matrices in the OpenGL/Blender convention (the camera looks down its
-Z axis, +Y is up in the image, +X to the right). Pixel ``(x, y)`` has its centre at
``(column + 0.5, row + 0.5)``; ``cx, cy`` use the same continuous coordinates.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from taichi_pvd.data.contracted_space import ContractedSpace
from taichi_pvd.data.distortion import Lens
from taichi_pvd.data.ndc import NdcSpace
from taichi_pvd.data.scene_type import SceneType
from taichi_pvd.data.splits import SplitSummary


@dataclasses.dataclass
class Scene:
    """One split of a scene, every tensor float32 on one device.

    Colour convention: when ``alphas`` is ``None`` the images are final colours. When the images
    had an alpha channel and no ``background`` was asked for, ``images`` hold colour
    premultiplied by alpha (the image composited onto black) and ``alphas`` the coverage, so the
    picture on a background colour ``b`` is ``images + (1 - alphas) * b`` (see
    :meth:`composited`); this stays exact under downscaling and lets a trainer pick a random
    background per ray.
    """

    #: [N, H, W, 3] colour in [0, 1] (premultiplied when ``alphas`` is not None).
    images: torch.Tensor
    #: [N, H, W, 1] coverage in [0, 1], or None when there is nothing left to composite.
    alphas: torch.Tensor | None
    #: [N, 3, 4] camera-to-world, OpenGL convention, world units.
    c2w: torch.Tensor
    #: [N, 4] ``(fx, fy, cx, cy)`` in pixels of the (downscaled) images.
    intrinsics: torch.Tensor
    #: Image height in pixels.
    height: int
    #: Image width in pixels.
    width: int
    #: [2, 3] world-space box containing the scene: ``aabb[0]`` min corner, ``aabb[1]`` max
    #: (for unbounded scenes, the box ``[-2, 2]^3`` of contracted coordinates).
    aabb: torch.Tensor
    #: Nearest distance along a ray worth sampling, world units.
    near: float
    #: Farthest distance along a ray worth sampling, world units.
    far: float
    #: Mean distance of the cameras from the centre of ``aabb``, world units.
    camera_radius: float
    #: Scene name (the folder's name).
    name: str
    #: ``'train'``, ``'val'`` or ``'test'``.
    split: str
    #: Image file of each view, in the order of the tensors.
    file_paths: list[Path]
    #: The scene's type and the rule that chose it (:mod:`taichi_pvd.data.scene_type`).
    scene_type: SceneType
    #: How the capture was split into training and test frames (:mod:`taichi_pvd.data.splits`).
    split_summary: SplitSummary
    #: For forward-facing (LLFF) scenes, the NDC space rays are marched in; ``aabb``, ``near``
    #: and ``far`` are then NDC quantities (see :mod:`taichi_pvd.data.ndc`). None: world space.
    ndc: NdcSpace | None = None
    #: For unbounded scenes, how the world was normalised before contraction; ``c2w``,
    #: ``near``, ``far`` and ``camera_radius`` are then in normalised units, and rays are
    #: marched in the normalised world with their samples contracted into ``aabb`` (see
    #: :mod:`taichi_pvd.kernels.contraction`). None: a bounded scene.
    contraction: ContractedSpace | None = None
    #: The lens distortion of the views (their rays are undistorted), or None for pinholes.
    lens: Lens | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        alpha = "premultiplied RGBA" if self.alphas is not None else "RGB"
        space = ", unbounded (contracted)" if self.contraction is not None else ""
        return (
            f"Scene({self.name!r}, split={self.split!r}, {len(self)} views of "
            f"{self.width}x{self.height} {alpha}, near={self.near:.3g}, far={self.far:.3g}, "
            f"aabb={self.aabb.tolist()}{space}, device={self.device})"
        )

    @property
    def device(self) -> torch.device:
        """The device holding the tensors."""
        return self.images.device

    def to(self, device: torch.device | str) -> Scene:
        """A copy of this scene with every tensor moved to ``device``."""
        return dataclasses.replace(
            self,
            images=self.images.to(device),
            alphas=None if self.alphas is None else self.alphas.to(device),
            c2w=self.c2w.to(device),
            intrinsics=self.intrinsics.to(device),
            aabb=self.aabb.to(device),
        )

    def composited(self, background: tuple[float, float, float]) -> torch.Tensor:
        """The images on a uniform ``background`` colour, [N, H, W, 3] float32 in [0, 1]."""
        if self.alphas is None:
            return self.images
        bg = torch.tensor(background, dtype=torch.float32, device=self.device)
        return self.images + (1.0 - self.alphas) * bg
