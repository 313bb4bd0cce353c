"""Pseudo-label rays: random virtual cameras around the scene, placed from the camera rig a run
stores in its checkpoint, so distillation never reads a training image."""

from __future__ import annotations

import torch

from ..data import generate_rays, sphere_poses
from ..data.camera_rig import CameraRig


def virtual_cameras(rig: CameraRig, n: int, elevation_deg: tuple[float, float], seed: int,
                    device: torch.device) -> torch.Tensor:
    """``n`` camera-to-world matrices [n, 3, 4] (float32, on ``device``).

    Object scenes: on the sphere of the rig's radius, looking at its centre, elevations within
    ``elevation_deg`` (degrees above the plane normal to up). Forward-facing rigs: centres
    uniform in the box of the training camera centres, all with the mean training orientation
    (``elevation_deg`` unused). Unbounded rigs: centres uniform in that box, each with the
    rotation of a random training camera, so they look where the training cameras looked
    (``elevation_deg`` unused)."""
    generator = torch.Generator().manual_seed(seed)
    if rig.contraction is not None:
        lo, hi = (torch.tensor(c, dtype=torch.float64) for c in rig.camera_box)
        centres = lo + torch.rand(n, 3, generator=generator, dtype=torch.float64) * (hi - lo)
        rotations = torch.tensor(rig.orientations, dtype=torch.float64)
        picked = rotations[torch.randint(rotations.shape[0], (n,), generator=generator)]
        return torch.cat([picked, centres[:, :, None]], dim=2).float().to(device)
    if rig.forward_facing:
        lo, hi = (torch.tensor(c, dtype=torch.float64) for c in rig.camera_box)
        centres = lo + torch.rand(n, 3, generator=generator, dtype=torch.float64) * (hi - lo)
        rotation = torch.tensor(rig.orientation, dtype=torch.float64).expand(n, 3, 3)
        return torch.cat([rotation, centres[:, :, None]], dim=2).float().to(device)
    return sphere_poses(n, rig.radius, elevation_deg, generator, centre=tuple(rig.centre), up=tuple(rig.up),
                        device=device)


def virtual_rays_through(c2w: torch.Tensor, rig: CameraRig, camera: torch.Tensor,
                         pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays of cameras ``c2w[camera]`` (``camera`` [N] int64 into ``c2w`` [C, 3, 4]) through
    continuous pixel coordinates ``pixels`` [N, 2] of the rig's image. Returns origins, unit
    directions [N, 3], in NDC for a rig with ``ndc`` (the space the teacher was trained in)."""
    n = camera.shape[0]
    origins, directions = generate_rays(c2w[camera], rig.intrinsics(n, c2w.device), rig.height, rig.width,
                                        pixels=pixels[:, None, :])
    return rig.scene_rays(origins[:, 0].contiguous(), directions[:, 0].contiguous())


def sample_virtual_rays(c2w: torch.Tensor, rig: CameraRig, n_rays: int,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_rays`` rays through uniformly random pixels of uniformly random cameras among
    ``c2w`` [C, 3, 4]: origins, unit directions [n_rays, 3] (see :func:`virtual_rays_through`)."""
    device = c2w.device
    camera = torch.randint(0, c2w.shape[0], (n_rays,), device=device, generator=generator)
    u = torch.rand(n_rays, 2, device=device, generator=generator)
    pixels = u * torch.tensor([rig.width, rig.height], device=device, dtype=u.dtype)
    return virtual_rays_through(c2w, rig, camera, pixels)
