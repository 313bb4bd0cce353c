"""Camera rays: through given pixels, through whole images, and random training batches.

Conventions (same as :mod:`taichi_pvd.data.scene`): camera-to-world matrices in the OpenGL
convention (the camera looks down -Z, +Y up, +X right); pixel coordinates ``(x, y)`` are
continuous, with the centre of the pixel in column ``u``, row ``v`` at ``(u + 0.5, v + 0.5)``.
A point at camera-space ``(X, Y, Z)`` (``Z < 0``) projects to
``x = cx + fx * X / -Z``, ``y = cy - fy * Y / -Z``.
"""

from __future__ import annotations

import dataclasses

import torch

from taichi_pvd.data.distortion import Lens, undistort_directions
from taichi_pvd.data.scene import Scene


def generate_rays(
    c2w: torch.Tensor,
    intrinsics: torch.Tensor,
    height: int,
    width: int,
    *,
    pixels: torch.Tensor | None = None,
    lens: Lens | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays of ``B`` cameras, through every pixel centre or through given pixels.

    Args:
        c2w: [B, 3, 4] camera-to-world matrices (OpenGL convention), float.
        intrinsics: [B, 4] ``(fx, fy, cx, cy)`` in pixels, same dtype and device as ``c2w``.
        height, width: image size in pixels; used only when ``pixels`` is None.
        pixels: [B, *S, 2] continuous pixel coordinates ``(x, y)`` of camera ``b``'s rays
            (pixel centres are at +0.5), or None for all ``H x W`` pixel centres (S = (H, W),
            row-major).
        lens: the distortion of the ``B`` cameras (:class:`~taichi_pvd.data.distortion.Lens`
            of ``B`` rows): each pixel's ray is undistorted (Newton's method in float64); None:
            pinhole cameras.

    Returns:
        ``(origins, directions)``, each [B, *S, 3], contiguous, in ``c2w``'s dtype and device;
        directions are unit vectors in world space, origins the camera centres.
    """
    if c2w.ndim != 3 or c2w.shape[1:] != (3, 4):
        raise ValueError(f"c2w must be [B, 3, 4], got {list(c2w.shape)}")
    batch = c2w.shape[0]
    if intrinsics.shape != (batch, 4):
        raise ValueError(f"intrinsics must be [{batch}, 4], got {list(intrinsics.shape)}")
    if pixels is None:
        rows = torch.arange(height, dtype=c2w.dtype, device=c2w.device) + 0.5
        cols = torch.arange(width, dtype=c2w.dtype, device=c2w.device) + 0.5
        y, x = torch.meshgrid(rows, cols, indexing="ij")
        pixels = torch.stack([x, y], dim=-1).expand(batch, height, width, 2)
    if pixels.ndim < 2 or pixels.shape[0] != batch or pixels.shape[-1] != 2:
        raise ValueError(f"pixels must be [{batch}, ..., 2], got {list(pixels.shape)}")
    if lens is not None and len(lens) != batch:
        raise ValueError(f"lens must hold {batch} views, got {len(lens)}")
    return _world_rays(c2w, camera_directions(intrinsics, pixels, lens).to(c2w.dtype))


def camera_directions(intrinsics: torch.Tensor, pixels: torch.Tensor, lens: Lens | None = None) -> torch.Tensor:
    """Directions [B, *S, 3] in the OpenGL camera frame of pixels [B, *S, 2] of cameras with
    ``intrinsics`` [B, 4] and ``lens`` (B views, or None for pinholes): ``(x, y, -1)`` scaled
    pinhole directions, unit directions (float64) for a lens."""
    view = (pixels.shape[0],) + (1,) * (pixels.ndim - 2)
    fx, fy, cx, cy = (intrinsics[:, i].reshape(view) for i in range(4))
    if lens is not None:
        distorted = torch.stack([(pixels[..., 0] - cx) / fx, (pixels[..., 1] - cy) / fy], dim=-1)
        coefficients = lens.coefficients.to(pixels.device).reshape(view + (-1,))
        return undistort_directions(distorted, lens.model, coefficients)
    return torch.stack([(pixels[..., 0] - cx) / fx, (cy - pixels[..., 1]) / fy,
                        -torch.ones_like(pixels[..., 0])], dim=-1)


def _world_rays(c2w: torch.Tensor, camera_dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World rays of camera-frame directions [B, *S, 3] of cameras ``c2w`` [B, 3, 4]: origins
    and unit directions, each [B, *S, 3]."""
    view = (c2w.shape[0],) + (1,) * (camera_dirs.ndim - 2)
    rotation = c2w[:, :, :3].reshape(view + (3, 3))
    directions = (rotation * camera_dirs.unsqueeze(-2)).sum(dim=-1)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    origins = c2w[:, :, 3].reshape(view + (3,)).expand_as(directions).contiguous()
    return origins, directions


def image_rays(scene: Scene, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through every pixel centre of view ``index`` of ``scene``, for full-image rendering.

    Returns:
        ``(origins, directions)``, each [H * W, 3] float32 on the scene's device, row-major
        (reshape to [H, W, 3] to get the image layout); directions are unit. For a scene with
        ``ndc`` set, the rays are in NDC (the space its box, near and far are given in).
    """
    origins, directions = generate_rays(
        scene.c2w[index : index + 1], scene.intrinsics[index : index + 1], scene.height, scene.width,
        lens=None if scene.lens is None else scene.lens.select(slice(index, index + 1)),
    )
    origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)
    if scene.ndc is not None:
        return scene.ndc.rays(origins, directions)
    return origins, directions


@dataclasses.dataclass
class RayBatch:
    """A batch of training rays with their target pixels, all on the scene's device."""

    #: [B, 3] ray origins, world units (NDC for a scene with ``ndc`` set).
    origins: torch.Tensor
    #: [B, 3] unit ray directions (in NDC for a scene with ``ndc`` set).
    directions: torch.Tensor
    #: [B, 3] pixel colour; premultiplied by ``alpha`` when ``alpha`` is not None.
    rgb: torch.Tensor
    #: [B, 1] pixel coverage, or None when ``rgb`` is already final.
    alpha: torch.Tensor | None
    #: [B] int64 index of the view each ray comes from.
    image_index: torch.Tensor
    #: [B, 2] float32 pixel coordinates ``(x, y)`` of the ray: the pixel's centre (at +0.5).
    pixel: torch.Tensor

    def rgb_on(self, background: torch.Tensor) -> torch.Tensor:
        """Target colour on ``background`` ([3] or [B, 3] in [0, 1]): ``rgb + (1 - alpha) * bg``.

        Returns [B, 3]; ``rgb`` unchanged when ``alpha`` is None.
        """
        if self.alpha is None:
            return self.rgb
        return self.rgb + (1.0 - self.alpha) * background


def subpixel_offsets(per_axis: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Centres of a ``per_axis x per_axis`` grid of strata over one pixel: [per_axis**2, 2]
    float32 offsets ``(x, y)`` in [0, 1) from the pixel's corner (``per_axis`` 1: the centre,
    ``(0.5, 0.5)``), for rendering several rays per pixel and averaging them.

    Example:
        >>> subpixel_offsets(2).tolist()
        [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    """
    if per_axis < 1:
        raise ValueError(f"per_axis must be positive, got {per_axis}")
    centres = (torch.arange(per_axis, dtype=torch.float32, device=device) + 0.5) / per_axis
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1)


class RaySampler:
    """Draws random rays uniformly over all pixels of all views of a scene, through the pixel
    centres.

    Everything stays on the scene's device: one ``randint`` and a few gathers per batch, no host
    work. ``generator`` must live on the scene's device (default: a new one seeded with 0). For
    a scene with lens distortion the undistorted camera-frame direction of every pixel centre is
    computed once here, one table per distinct camera (intrinsics and coefficients), and
    gathered per batch.

    Example:
        >>> sampler = RaySampler(scene, 4096, torch.Generator().manual_seed(0))
        >>> batch = sampler.sample()  # batch.origins: [4096, 3]
    """

    def __init__(self, scene: Scene, batch_size: int, generator: torch.Generator | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if generator is None:
            generator = torch.Generator(device=scene.device).manual_seed(0)
        if generator.device.type != scene.device.type:
            raise ValueError(
                f"generator is on {generator.device} but the scene is on {scene.device}: "
                "create the generator with torch.Generator(device=scene.device)"
            )
        self.scene = scene
        self.batch_size = batch_size
        self.generator = generator
        self._rgb = scene.images.reshape(-1, 3)
        self._alpha = None if scene.alphas is None else scene.alphas.reshape(-1, 1)
        self._lens_tables: torch.Tensor | None = None
        self._lens_of_view: torch.Tensor | None = None
        if scene.lens is not None:
            self._lens_tables, self._lens_of_view = _lens_tables(scene, scene.lens)

    def sample(self) -> RayBatch:
        """A fresh batch of ``batch_size`` rays drawn with replacement."""
        scene = self.scene
        pixels_per_image = scene.height * scene.width
        flat = torch.randint(
            len(scene) * pixels_per_image,
            (self.batch_size,),
            generator=self.generator,
            device=scene.device,
        )
        image_index = flat // pixels_per_image
        within = flat - image_index * pixels_per_image
        row = within // scene.width
        column = within - row * scene.width
        pixel = torch.stack([column, row], dim=-1).float() + 0.5
        if self._lens_tables is None:
            origins, directions = generate_rays(
                scene.c2w[image_index],
                scene.intrinsics[image_index],
                scene.height,
                scene.width,
                pixels=pixel,
            )
        else:
            camera_dirs = self._lens_tables[self._lens_of_view[image_index], within]
            origins, directions = _world_rays(scene.c2w[image_index], camera_dirs)
        if scene.ndc is not None:
            origins, directions = scene.ndc.rays(origins, directions)
        return RayBatch(
            origins=origins,
            directions=directions,
            rgb=self._rgb[flat],
            alpha=None if self._alpha is None else self._alpha[flat],
            image_index=image_index,
            pixel=pixel,
        )


def _lens_tables(scene: Scene, lens: Lens) -> tuple[torch.Tensor, torch.Tensor]:
    """Undistorted camera-frame directions of every pixel centre, [K, H * W, 3] float32, one
    table per distinct camera of ``scene`` (same intrinsics and coefficients), and [N] int64 the
    table of each view; both on the scene's device."""
    cameras = torch.cat([scene.intrinsics.cpu().double(), lens.coefficients.cpu().double()], dim=1)
    distinct, lens_of_view = torch.unique(cameras, dim=0, return_inverse=True)
    first = [int(torch.nonzero(lens_of_view == k)[0]) for k in range(len(distinct))]
    rows = torch.arange(scene.height, dtype=torch.float64) + 0.5
    cols = torch.arange(scene.width, dtype=torch.float64) + 0.5
    y, x = torch.meshgrid(rows, cols, indexing="ij")
    pixels = torch.stack([x, y], dim=-1).reshape(1, -1, 2).expand(len(first), -1, 2)
    tables = camera_directions(scene.intrinsics.cpu().double()[first], pixels, lens.select(first))
    return tables.float().to(scene.device), lens_of_view.to(scene.device)


def ray_box_hits(origins: torch.Tensor, directions: torch.Tensor, aabb: torch.Tensor,
                 near: float, far: float) -> torch.Tensor:
    """Which rays cross the box ``aabb`` ([2, 3]) between distances ``near`` and ``far``.

    Args:
        origins, directions: [N, 3] rays (directions need not be unit; distances are in their
            units).
        aabb: [2, 3] min and max corner.
        near, far: the distance range along the rays.

    Returns:
        [N] bool.
    """
    inverse = 1.0 / torch.where(directions == 0, torch.full_like(directions, 1e-12), directions)
    t0 = (aabb[0].to(origins) - origins) * inverse
    t1 = (aabb[1].to(origins) - origins) * inverse
    enter = torch.minimum(t0, t1).amax(dim=-1).clamp(min=near)
    leave = torch.maximum(t0, t1).amin(dim=-1).clamp(max=far)
    return enter < leave


def views_hitting_box(scene: Scene, per_axis: int = 32) -> int:
    """How many views of ``scene`` see its box: a ``per_axis x per_axis`` grid of rays across
    each image is tested against ``aabb`` between ``near`` and ``far``. An unbounded scene's
    contracted box holds every ray: all its views count.

    A scene whose poses were converted wrongly (OpenCV axes, cameras facing away, a scale
    1000 times too large) has no view that sees the box, and nothing to train on.
    """
    if scene.contraction is not None:
        return len(scene)
    cols = (torch.arange(per_axis, device=scene.device) + 0.5) * (scene.width / per_axis)
    rows = (torch.arange(per_axis, device=scene.device) + 0.5) * (scene.height / per_axis)
    y, x = torch.meshgrid(rows, cols, indexing="ij")
    pixels = torch.stack([x, y], dim=-1).reshape(1, -1, 2).expand(len(scene), -1, 2)
    origins, directions = generate_rays(scene.c2w, scene.intrinsics, scene.height, scene.width, pixels=pixels,
                                        lens=scene.lens)
    origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)
    if scene.ndc is not None:
        origins, directions = scene.ndc.rays(origins, directions)
    hits = ray_box_hits(origins, directions, scene.aabb, scene.near, scene.far)
    return int(hits.reshape(len(scene), -1).any(dim=-1).sum())
