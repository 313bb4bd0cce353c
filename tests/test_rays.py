"""Camera rays, the random ray sampler and camera paths."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from taichi_pvd.data import (
    RaySampler,
    generate_rays,
    image_rays,
    load_scene,
    look_at,
    orbit_path,
    sphere_poses,
    spiral_path,
    subpixel_offsets,
    write_demo_scene,
)
from taichi_pvd.errors import ConfigError


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_scene(tmp_path_factory.mktemp("demo"), size=16, n_train=3, n_val=1, n_test=1)


def _random_cameras(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 [n, 3, 4] cameras around the origin and [n, 4] intrinsics."""
    g = torch.Generator().manual_seed(seed)
    eyes = torch.randn((n, 3), generator=g, dtype=torch.float64) * 3
    targets = torch.randn((n, 3), generator=g, dtype=torch.float64) * 0.3
    ups = torch.randn((n, 3), generator=g, dtype=torch.float64)
    c2w = torch.stack([look_at(eyes[i], targets[i], ups[i]) for i in range(n)])
    intrinsics = torch.rand((n, 4), generator=g, dtype=torch.float64) * torch.tensor(
        [40.0, 40.0, 10.0, 10.0], dtype=torch.float64
    ) + torch.tensor([20.0, 20.0, 10.0, 8.0], dtype=torch.float64)
    return c2w, intrinsics


def test_ray_through_projected_pixel_hits_the_point() -> None:
    c2w, intrinsics = _random_cameras(8, seed=0)
    g = torch.Generator().manual_seed(1)
    rotation, centre = c2w[:, :, :3], c2w[:, :, 3]
    camera_points = torch.randn((8, 5, 3), generator=g, dtype=torch.float64)
    camera_points[..., 2] = -(camera_points[..., 2].abs() + 1.0)  # in front: Z < 0
    world_points = torch.einsum("bij,bkj->bki", rotation, camera_points) + centre[:, None]
    fx, fy, cx, cy = (intrinsics[:, i, None] for i in range(4))
    depth = -camera_points[..., 2]
    pixels = torch.stack(
        [cx + fx * camera_points[..., 0] / depth, cy - fy * camera_points[..., 1] / depth], dim=-1
    )
    origins, directions = generate_rays(c2w, intrinsics, 0, 0, pixels=pixels)
    assert origins.shape == directions.shape == (8, 5, 3)
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(8, 5, dtype=torch.float64))
    to_point = world_points - origins
    along = (to_point * directions).sum(dim=-1)
    assert (along > 0).all()
    torch.testing.assert_close(origins + along[..., None] * directions, world_points)


def test_full_image_rays_go_through_pixel_centres_in_row_major_order() -> None:
    c2w, intrinsics = _random_cameras(2, seed=2)
    origins, directions = generate_rays(c2w, intrinsics, 3, 5)
    assert directions.shape == (2, 3, 5, 3)
    rows, cols = torch.meshgrid(torch.arange(3.0), torch.arange(5.0), indexing="ij")
    centres = torch.stack([cols, rows], dim=-1).double() + 0.5
    _, expected = generate_rays(c2w, intrinsics, 3, 5, pixels=centres.expand(2, 3, 5, 2))
    torch.testing.assert_close(directions, expected)
    torch.testing.assert_close(origins, c2w[:, None, None, :, 3].expand(2, 3, 5, 3))


def test_ray_at_the_principal_point_looks_down_minus_z() -> None:
    c2w, intrinsics = _random_cameras(3, seed=3)
    principal = intrinsics[:, None, 2:]
    _, directions = generate_rays(c2w, intrinsics, 0, 0, pixels=principal)
    torch.testing.assert_close(directions[:, 0], -c2w[:, :, 2])


def test_image_rays_match_the_scene_camera(demo_dir: Path) -> None:
    scene = load_scene(demo_dir, "train")
    origins, directions = image_rays(scene, 2)
    assert origins.shape == directions.shape == (16 * 16, 3)
    torch.testing.assert_close(origins, scene.c2w[2, :, 3].expand(256, 3))
    pixel = torch.tensor([[[7.5, 3.5]]])  # column 7, row 3
    _, expected = generate_rays(scene.c2w[2:3], scene.intrinsics[2:3], 16, 16, pixels=pixel)
    torch.testing.assert_close(directions[3 * 16 + 7], expected[0, 0])


def test_ray_sampler_returns_the_pixels_its_rays_go_through(demo_dir: Path) -> None:
    scene = load_scene(demo_dir, "train")
    batch = RaySampler(scene, 512, torch.Generator().manual_seed(0)).sample()
    assert batch.origins.shape == batch.directions.shape == (512, 3)
    assert batch.rgb.shape == (512, 3) and batch.alpha is not None and batch.alpha.shape == (512, 1)
    assert batch.image_index.dtype == torch.int64 and batch.pixel.dtype == torch.float32
    column, row = (batch.pixel - 0.5).long().unbind(-1)
    torch.testing.assert_close(batch.pixel - 0.5, torch.stack([column, row], -1).float())
    assert scene.alphas is not None
    torch.testing.assert_close(batch.rgb, scene.images[batch.image_index, row, column])
    torch.testing.assert_close(batch.alpha, scene.alphas[batch.image_index, row, column])
    _, directions = generate_rays(
        scene.c2w[batch.image_index],
        scene.intrinsics[batch.image_index],
        16,
        16,
        pixels=batch.pixel,
    )
    torch.testing.assert_close(batch.directions, directions)
    torch.testing.assert_close(batch.origins, scene.c2w[batch.image_index, :, 3])
    assert batch.origins.is_contiguous() and batch.directions.is_contiguous()
    assert set(batch.image_index.tolist()) == {0, 1, 2}


def test_ray_sampler_is_reproducible_with_a_seeded_generator(demo_dir: Path) -> None:
    scene = load_scene(demo_dir, "train")
    first = RaySampler(scene, 64, torch.Generator().manual_seed(5)).sample()
    second = RaySampler(scene, 64, torch.Generator().manual_seed(5)).sample()
    torch.testing.assert_close(first.pixel, second.pixel)
    torch.testing.assert_close(first.image_index, second.image_index)


def test_subpixel_offsets_are_the_centres_of_equal_strata() -> None:
    assert subpixel_offsets(1).tolist() == [[0.5, 0.5]]
    offsets = subpixel_offsets(3)
    assert offsets.shape == (9, 2)
    assert sorted(set(offsets[:, 0].tolist())) == pytest.approx([1 / 6, 1 / 2, 5 / 6])
    assert len({tuple(o) for o in offsets.tolist()}) == 9
    with pytest.raises(ValueError, match="positive"):
        subpixel_offsets(0)


def test_ray_batch_on_a_background_matches_the_composited_scene(demo_dir: Path) -> None:
    scene = load_scene(demo_dir, "train")
    white = load_scene(demo_dir, "train", background=(1.0, 1.0, 1.0))
    batch = RaySampler(scene, 256).sample()
    column, row = (batch.pixel - 0.5).long().unbind(-1)
    torch.testing.assert_close(
        batch.rgb_on(torch.ones(3)), white.images[batch.image_index, row, column]
    )


def test_orbit_has_the_frame_count_radius_elevation_and_looks_at_the_centre() -> None:
    centre = torch.tensor([0.5, -1.0, 2.0])
    poses = orbit_path(12, 3.0, 30.0, centre=centre)
    assert poses.shape == (12, 3, 4) and poses.dtype == torch.float32
    offsets = poses[:, :, 3] - centre
    torch.testing.assert_close(offsets.norm(dim=-1), torch.full((12,), 3.0))
    torch.testing.assert_close(offsets[:, 2], torch.full((12,), 1.5))  # 3 * sin(30 deg)
    torch.testing.assert_close(-poses[:, :, 2], -offsets / 3.0)  # viewing axis to the centre
    rotation = poses[:, :, :3].double()
    identity = torch.eye(3, dtype=torch.float64).expand(12, 3, 3)
    torch.testing.assert_close(rotation.transpose(1, 2) @ rotation, identity)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(12, dtype=torch.float64))
    assert (poses[:, 2, 1] > 0).all()  # image up leans towards world +Z
    azimuth = torch.atan2(offsets[:, 1], offsets[:, 0])
    steps = torch.remainder(azimuth.roll(-1) - azimuth, 2 * math.pi)
    torch.testing.assert_close(steps, torch.full((12,), 2 * math.pi / 12))


def test_sphere_poses_have_elevations_in_range_and_look_at_the_centre() -> None:
    poses = sphere_poses(400, 2.5, (10.0, 60.0), torch.Generator().manual_seed(0))
    centres = poses[:, :, 3].double()
    elevation = torch.rad2deg(torch.asin(centres[:, 2] / centres.norm(dim=-1)))
    assert elevation.min() >= 10.0 - 1e-3 and elevation.max() <= 60.0 + 1e-3
    assert elevation.min() < 13.0 and elevation.max() > 57.0
    torch.testing.assert_close(centres.norm(dim=-1), torch.full((400,), 2.5, dtype=torch.float64))
    torch.testing.assert_close(poses[:, :, 2].double(), centres / 2.5, atol=1e-6, rtol=0)


def test_sphere_poses_reject_an_inverted_range() -> None:
    with pytest.raises(ConfigError):
        sphere_poses(4, 1.0, (50.0, 10.0))


def test_look_at_handles_a_view_parallel_to_up() -> None:
    pose = look_at(torch.tensor([0.0, 0.0, 4.0], dtype=torch.float64), (0.0, 0.0, 0.0))
    rotation = pose[:, :3]
    torch.testing.assert_close(rotation.T @ rotation, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(-rotation[:, 2], torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64))


def test_spiral_circles_the_mean_camera_and_looks_at_the_focus() -> None:
    offsets = torch.tensor([[-0.2, 0.1], [0.2, -0.1], [0.1, 0.2], [-0.1, -0.2]])
    eyes = torch.cat([offsets, torch.zeros(4, 1)], dim=-1)
    focus = torch.tensor([0.0, 0.0, -5.0])
    train = look_at(eyes, focus, (0.0, 1.0, 0.0))
    path = spiral_path(train, 30)
    assert path.shape == (30, 3, 4)
    to_focus = focus - path[:, :, 3]
    torch.testing.assert_close(-path[:, :, 2], to_focus / to_focus.norm(dim=-1, keepdim=True))
    assert (path[:, :, 3] - eyes.mean(dim=0)).norm(dim=-1).max() < 0.6
    assert path[:, 0, 3].max() > 0.1 and path[:, 0, 3].min() < -0.1
    parallel = look_at(eyes, eyes + torch.tensor([0.0, 0.0, -1.0]), (0.0, 1.0, 0.0))
    with pytest.raises(ConfigError, match="focus_distance"):
        spiral_path(parallel, 10)
    assert spiral_path(parallel, 10, focus_distance=3.0).shape == (10, 3, 4)
