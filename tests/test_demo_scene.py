"""The embedded demo scene: layout, cameras, geometry, richness and the cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from taichi_pvd.data import demo, demo_scene_path, orbit_path, write_demo_scene
from taichi_pvd.errors import ConfigError

SIZE = 24


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_scene(
        tmp_path_factory.mktemp("demo"), size=SIZE, n_train=6, n_val=2, n_test=4
    )


def test_writes_nerf_synthetic_layout(demo_dir: Path) -> None:
    for split, count in (("train", 6), ("val", 2), ("test", 4)):
        meta = json.loads((demo_dir / f"transforms_{split}.json").read_text())
        assert meta["camera_angle_x"] == pytest.approx(demo.CAMERA_ANGLE_X)
        assert [f["file_path"] for f in meta["frames"]] == [
            f"./{split}/r_{i}" for i in range(count)
        ]
        for frame in meta["frames"]:
            matrix = np.array(frame["transform_matrix"])
            assert matrix.shape == (4, 4)
            np.testing.assert_allclose(matrix[3], [0, 0, 0, 1])
        with Image.open(demo_dir / split / f"r_{count - 1}.png") as image:
            assert image.mode == "RGBA" and image.size == (SIZE, SIZE)


def test_cameras_sit_on_the_sphere_looking_at_the_origin(demo_dir: Path) -> None:
    meta = json.loads((demo_dir / "transforms_train.json").read_text())
    poses = np.array([f["transform_matrix"] for f in meta["frames"]])
    centres = poses[:, :3, 3]
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), demo.CAMERA_RADIUS, rtol=1e-5)
    np.testing.assert_allclose(-poses[:, :3, 2], -centres / demo.CAMERA_RADIUS, atol=1e-5)
    elevation = np.degrees(np.arcsin(centres[:, 2] / demo.CAMERA_RADIUS))
    low, high = demo.ELEVATION_RANGE_DEG
    assert (elevation >= low - 1e-3).all() and (elevation <= high + 1e-3).all()


def test_views_show_antialiased_objects_on_a_transparent_background(demo_dir: Path) -> None:
    for i in range(4):
        alpha = np.asarray(Image.open(demo_dir / "test" / f"r_{i}.png"))[..., 3]
        assert (alpha == 0).mean() > 0.3  # background
        assert (alpha == 255).mean() > 0.05  # objects
        assert ((alpha > 0) & (alpha < 255)).any()  # partially covered edge pixels


def test_same_seed_gives_identical_files_and_another_seed_other_cameras(tmp_path: Path) -> None:
    first = write_demo_scene(tmp_path / "a", size=8, n_train=2, n_val=1, n_test=1, seed=3)
    second = write_demo_scene(tmp_path / "b", size=8, n_train=2, n_val=1, n_test=1, seed=3)
    other = write_demo_scene(tmp_path / "c", size=8, n_train=2, n_val=1, n_test=1, seed=4)
    for name in ("transforms_train.json", "train/r_1.png", "test/r_0.png"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert (first / "transforms_train.json").read_text() != (
        other / "transforms_train.json"
    ).read_text()


def test_every_object_lies_inside_the_unit_box() -> None:
    g = torch.Generator().manual_seed(0)
    directions = torch.randn((20000, 3), generator=g, dtype=torch.float64)
    origins = 4.0 * directions / directions.norm(dim=-1, keepdim=True)
    targets = torch.rand((20000, 3), generator=g, dtype=torch.float64) * 2.4 - 1.2
    directions = (targets - origins) / (targets - origins).norm(dim=-1, keepdim=True)
    rgb, depth = demo.trace_demo_rays(origins, directions)
    hit = torch.isfinite(depth)
    assert hit.float().mean() > 0.05
    points = origins[hit] + depth[hit, None] * directions[hit]
    assert points.abs().max() <= 1.0
    assert (rgb[hit] >= 0).all() and (rgb[hit] <= 1).all() and (rgb[~hit] == 0).all()


def test_sphere_highlight_depends_on_the_viewing_direction() -> None:
    sphere = demo._Sphere()
    light = torch.tensor(demo._LIGHT, dtype=torch.float64)
    light = light / light.norm()
    across = torch.linalg.cross(light, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    across = across / across.norm()
    normal = 0.5 * light + math.sqrt(0.75) * across  # lit at 60 degrees: diffuse only 0.65
    point = sphere.centre + sphere.radius * normal
    mirror = 2 * (normal @ light) * normal - light  # the view that sees the highlight
    tangent = torch.linalg.cross(normal, light)
    other = normal + 1.5 * tangent / tangent.norm()  # the same point, seen 56 degrees off
    directions = -torch.stack([mirror, other / other.norm()])
    origins = point - 0.3 * directions  # close enough that nothing else is in between
    rgb, depth = demo.trace_demo_rays(origins, directions)
    torch.testing.assert_close(depth, torch.full((2,), 0.3, dtype=torch.float64))
    assert (rgb[0] - rgb[1]).sum() > 1.0


def test_fine_detail_makes_a_blurred_image_score_below_30_db() -> None:
    pose = orbit_path(1, demo.CAMERA_RADIUS, 30.0)[0]
    rgba = torch.from_numpy(demo.render_demo_view(pose, 128, generator=torch.Generator()))
    image = (rgba[..., :3] * rgba[..., 3:] + 1 - rgba[..., 3:]).permute(2, 0, 1)[None]
    blurred = F.interpolate(F.avg_pool2d(image, 4), scale_factor=4, mode="bilinear")
    psnr = -10 * math.log10(float(((image - blurred) ** 2).mean()))
    assert psnr < 25.0


def test_demo_scene_path_renders_once_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PVD_CACHE", str(tmp_path))
    path = demo_scene_path(size=8, n_train=2, n_val=1, n_test=1)
    assert path.parent == tmp_path and path.name.startswith("demo-8-")
    assert (path / "transforms_test.json").is_file() and (path / "train" / "r_1.png").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no staging folder left

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached scene was rendered again")

    monkeypatch.setattr(demo, "write_demo_scene", fail)
    assert demo_scene_path(size=8, n_train=2, n_val=1, n_test=1) == path
    with pytest.raises(AssertionError, match="rendered again"):
        demo_scene_path(size=8, n_train=2, n_val=1, n_test=1, seed=1)


def test_the_default_demo_scene_is_told_from_other_scenes_by_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run `pvd-ti demo` trains records the scene as the embedded demo scene, so that a later
    # `pvd-ti distill` of it picks the preset that fits the hardware, not the paper's.
    monkeypatch.setenv("PVD_CACHE", str(tmp_path))
    monkeypatch.setattr(demo, "write_demo_scene", lambda out, **kwargs: (out / "transforms_test.json").write_text("{}"))
    assert demo.is_embedded_demo_scene(demo_scene_path())
    assert not demo.is_embedded_demo_scene(demo_scene_path(size=8))
    assert not demo.is_embedded_demo_scene(tmp_path / "elsewhere")


@pytest.mark.parametrize("kwargs", [dict(size=0), dict(n_val=0), dict(n_train=2.5)])
def test_bad_sizes_raise_config_error(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        write_demo_scene(tmp_path, **kwargs)
