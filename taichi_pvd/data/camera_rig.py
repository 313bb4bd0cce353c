"""What distillation and rendering need to know of a scene's cameras, small enough to store in
every run's checkpoint (so distillation never reads a training image)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from .camera_paths import axes_focus_point
from .contracted_space import INNER_HALF_SIZE
from .llff import average_pose
from .ndc import NdcSpace
from .scene import Scene


@dataclass
class CameraRig:
    """What distillation knows of a scene's cameras (stored in every run's config)."""

    fx: float
    fy: float
    cx: float
    cy: float
    height: int
    width: int
    radius: float
    """Distance of the training cameras from ``centre``, world units."""
    centre: list[float]
    """Point the virtual cameras look at: the centre of the scene box (for unbounded scenes,
    where the training cameras' optical axes meet, when that is inside the unit cube)."""
    up: list[float]
    """World up vector."""
    near: float
    far: float
    forward_facing: bool = False
    """Whether the scene is forward-facing (virtual cameras then stay among the training ones)."""
    camera_box: list[list[float]] | None = None
    """Forward-facing and unbounded scenes: ``[min, max]`` corners of the box of training
    camera centres (virtual cameras are placed inside it)."""
    orientation: list[list[float]] | None = None
    """Forward-facing only: 3x3 mean training camera rotation (columns right, up, backward)."""
    ndc: dict[str, float] | None = None
    """The scene's NDC space (:class:`NdcSpace` fields), or None for world-space marching."""
    orientations: list[list[list[float]]] | None = None
    """Unbounded only: the 3x3 rotation of every training camera (columns right, up,
    backward); each virtual camera takes one of them."""
    contraction: dict | None = None
    """The normalisation of an unbounded scene (fields of
    :class:`~taichi_pvd.data.contracted_space.ContractedSpace`), whose samples are contracted; None
    for a bounded scene."""

    @classmethod
    def from_scene(cls, scene: Scene) -> "CameraRig":
        """The rig of a loaded scene: first camera's intrinsics, mean camera radius, box centre
        and the mean camera up vector (the c2w's +Y axis). A scene with ``ndc`` set is
        forward-facing: the rig also records the box of camera centres, the mean orientation and
        the NDC space. An unbounded scene (``contraction`` set) records the box of camera
        centres, every camera's rotation and its normalisation; its centre is where the camera
        axes meet (the object a ring of cameras looks at), its radius the mean camera distance
        from there."""
        fx, fy, cx, cy = (float(v) for v in scene.intrinsics[0].cpu())
        up = scene.c2w[:, :, 1].mean(0)
        up = up / up.norm().clamp_min(1e-9)
        centre = scene.aabb.mean(0)
        rig = cls(fx, fy, cx, cy, scene.height, scene.width, float(scene.camera_radius),
                  centre.cpu().tolist(), up.cpu().tolist(), float(scene.near), float(scene.far))
        c2w = scene.c2w.detach().cpu().double()
        centres = c2w[:, :, 3]
        if scene.contraction is not None:
            focus = axes_focus_point(c2w)
            if focus is not None and float(focus.abs().max()) <= INNER_HALF_SIZE:
                rig = replace(rig, centre=focus.tolist(), radius=float((centres - focus).norm(dim=1).mean()))
            return replace(rig, camera_box=[centres.amin(0).tolist(), centres.amax(0).tolist()],
                           orientations=c2w[:, :, :3].tolist(), contraction=scene.contraction.to_dict())
        if scene.ndc is None:
            return rig
        mean = average_pose(c2w.numpy())
        return replace(rig, forward_facing=True,
                       camera_box=[centres.amin(0).tolist(), centres.amax(0).tolist()],
                       orientation=mean[:, :3].tolist(), ndc=scene.ndc.to_dict())

    def ndc_space(self) -> NdcSpace | None:
        """The scene's :class:`NdcSpace`, or None when rays are marched in world space."""
        return None if self.ndc is None else NdcSpace(**self.ndc)

    def scene_rays(self, origins: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World rays [..., 3] -> the rays the field is marched with: NDC rays (unit directions)
        for a rig with ``ndc``, else the same rays."""
        space = self.ndc_space()
        return (origins, directions) if space is None else space.rays(origins, directions)

    def to_dict(self) -> dict:
        """JSON-compatible form."""
        return asdict(self)

    def scaled(self, width: int, height: int) -> "CameraRig":
        """The same rig with images of ``width`` x ``height`` pixels (same field of view)."""
        sx, sy = width / self.width, height / self.height
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy,
                       height=height, width=width)

    def intrinsics(self, n: int, device: torch.device) -> torch.Tensor:
        """[n, 4] copies of ``(fx, fy, cx, cy)``."""
        return torch.tensor([self.fx, self.fy, self.cx, self.cy], device=device).expand(n, 4).contiguous()

