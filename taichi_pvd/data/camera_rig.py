"""What distillation and rendering need to know of a scene's cameras, small enough to store in
every run's checkpoint (so distillation never reads a training image)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

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
    """Point the virtual cameras look at: the centre of the scene box."""
    up: list[float]
    """World up vector."""
    near: float
    far: float

    @classmethod
    def from_scene(cls, scene: Scene) -> "CameraRig":
        """The rig of a loaded scene: first camera's intrinsics, mean camera radius, box centre
        and the mean camera up vector (the c2w's +Y axis)."""
        fx, fy, cx, cy = (float(v) for v in scene.intrinsics[0].cpu())
        up = scene.c2w[:, :, 1].mean(0)
        up = up / up.norm().clamp_min(1e-9)
        centre = scene.aabb.mean(0)
        return cls(fx, fy, cx, cy, scene.height, scene.width, float(scene.camera_radius),
                   centre.cpu().tolist(), up.cpu().tolist(), float(scene.near), float(scene.far))

    def to_dict(self) -> dict:
        """JSON-compatible form."""
        return asdict(self)

    def scaled(self, width: int, height: int) -> "CameraRig":
        """The same rig with images of ``width`` x ``height`` pixels (same field of view)."""
        sx, sy = width / self.width, height / self.height
        return CameraRig(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, height, width,
                         self.radius, list(self.centre), list(self.up), self.near, self.far)

    def intrinsics(self, n: int, device: torch.device) -> torch.Tensor:
        """[n, 4] copies of ``(fx, fy, cx, cy)``."""
        return torch.tensor([self.fx, self.fy, self.cx, self.cy], device=device).expand(n, 4).contiguous()

