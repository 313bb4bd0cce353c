"""Pseudo-label rays: random virtual cameras around the scene, placed from the camera rig a run
stores in its checkpoint, so distillation never reads a training image."""

from __future__ import annotations

import torch

from ..data import generate_rays, sphere_poses
from ..data.camera_rig import CameraRig


def virtual_cameras(rig: CameraRig, n: int, elevation_deg: tuple[float, float], seed: int,
                    device: torch.device) -> torch.Tensor:
    """``n`` camera-to-world matrices [n, 3, 4] on the sphere of the rig's radius, looking at
    its centre, elevations within ``elevation_deg`` (degrees above the plane normal to up)."""
    generator = torch.Generator().manual_seed(seed)
    return sphere_poses(n, rig.radius, elevation_deg, generator, centre=tuple(rig.centre), up=tuple(rig.up),
                        device=device)


def sample_virtual_rays(c2w: torch.Tensor, rig: CameraRig, n_rays: int,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_rays`` rays through uniformly random pixels of uniformly random cameras among
    ``c2w`` [C, 3, 4]. Returns origins, unit directions [n_rays, 3]."""
    device = c2w.device
    cam = torch.randint(0, c2w.shape[0], (n_rays,), device=device, generator=generator)
    u = torch.rand(n_rays, 2, device=device, generator=generator)
    pixels = u * torch.tensor([rig.width, rig.height], device=device, dtype=u.dtype)
    origins, directions = generate_rays(c2w[cam], rig.intrinsics(n_rays, device), rig.height, rig.width,
                                        pixels=pixels[:, None, :])
    return origins[:, 0].contiguous(), directions[:, 0].contiguous()
