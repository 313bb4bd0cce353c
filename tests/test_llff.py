"""Forward-facing (LLFF) scenes: the poses_bounds.npy loader, NDC rays, the forward-facing demo,
virtual cameras for distillation and a short training run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from taichi_pvd.data import (
    NdcSpace,
    RaySampler,
    Scene,
    image_rays,
    load_scene,
    ndc_points,
    ndc_rays,
    write_forward_facing_demo,
)
from taichi_pvd.data.camera_rig import CameraRig
from taichi_pvd.data.demo import forward_facing_poses
from taichi_pvd.data.llff import NEAR_BOUND_FRACTION, POSES_BOUNDS, average_pose
from taichi_pvd.distill.virtual_rays import sample_virtual_rays, virtual_cameras
from taichi_pvd.errors import SceneError
from tests.compact_training import COMPACT_FIELDS, distil_into_grid_briefly, train_briefly

WIDTH, HEIGHT, ROWS, COLS = 48, 36, 3, 4


@pytest.fixture(scope="module")
def ff_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_forward_facing_demo(tmp_path_factory.mktemp("ff") / "table", width=WIDTH, height=HEIGHT,
                                     rows=ROWS, cols=COLS)


def _copy(ff_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(ff_dir, tmp_path / "copy"))


# -- loader ---------------------------------------------------------------------------------------


def test_every_eighth_image_is_the_test_and_val_split(ff_dir: Path) -> None:
    names = {split: [p.name for p in load_scene(ff_dir, split).file_paths] for split in ("train", "val", "test")}
    assert names["test"] == ["image_000.png", "image_008.png"]
    assert names["val"] == names["test"]
    assert names["train"] == [f"image_{i:03d}.png" for i in range(ROWS * COLS) if i % 8 != 0]


def test_llff_scene_has_ndc_box_and_image_shapes(ff_dir: Path) -> None:
    scene = load_scene(ff_dir, "train")
    n = ROWS * COLS - 2
    assert scene.images.shape == (n, HEIGHT, WIDTH, 3) and scene.alphas is None
    assert scene.c2w.shape == (n, 3, 4) and scene.intrinsics.shape == (n, 4)
    assert scene.ndc is not None and scene.near == 0.0
    torch.testing.assert_close(scene.aabb, scene.ndc.aabb())
    assert (scene.aabb[0] <= -1).all() and (scene.aabb[1] >= 1).all()
    assert load_scene(ff_dir, "test").ndc == scene.ndc  # one space (and box) for every split
    assert scene.far >= float((scene.aabb[1] - scene.aabb[0]).norm()) - 1e-5
    focal = 0.5 * WIDTH / np.tan(np.radians(25.0))
    torch.testing.assert_close(scene.intrinsics[0].double(),
                               torch.tensor([focal, focal, WIDTH / 2, HEIGHT / 2], dtype=torch.float64))


def test_loaded_poses_are_rotations_looking_down_minus_z(ff_dir: Path) -> None:
    c2w = load_scene(ff_dir, "train").c2w.double()
    rotation = c2w[:, :, :3]
    torch.testing.assert_close(rotation.transpose(1, 2) @ rotation, torch.eye(3, dtype=torch.float64).expand_as(rotation),
                               atol=1e-5, rtol=0)
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(len(c2w), dtype=torch.float64), atol=1e-5)
    assert (rotation[:, 2, 2] > 0.99).all()  # backward axis ~ +Z: the cameras look down -Z


def test_poses_are_rescaled_and_recentred_like_the_nerf_reference(ff_dir: Path) -> None:
    world = forward_facing_poses(ROWS, COLS).double()
    bounds = np.load(ff_dir / POSES_BOUNDS)[:, 15:]
    scale = 1.0 / (NEAR_BOUND_FRACTION * bounds.min())
    train, test = load_scene(ff_dir, "train"), load_scene(ff_dir, "test")
    order = [int(p.stem.split("_")[1]) for p in train.file_paths + test.file_paths]
    loaded = torch.cat([train.c2w, test.c2w]).double()
    original = world[order]
    # A similarity: distances between camera centres scale by 1 / (0.75 * min bound) ...
    torch.testing.assert_close(torch.cdist(loaded[:, :, 3], loaded[:, :, 3]),
                               scale * torch.cdist(original[:, :, 3], original[:, :, 3]), atol=1e-5, rtol=1e-5)
    # ... relative rotations are kept, and the average camera is the world frame.
    torch.testing.assert_close(loaded[0, :, :3].T @ loaded[5, :, :3], original[0, :, :3].T @ original[5, :, :3],
                               atol=1e-5, rtol=0)
    np.testing.assert_allclose(average_pose(loaded.numpy()), np.eye(3, 4), atol=1e-5)


def test_downscale_reads_images_n_folder_or_averages_images(ff_dir: Path, tmp_path: Path) -> None:
    averaged = load_scene(ff_dir, "train", downscale=2)
    assert averaged.images.shape[1:] == (HEIGHT // 2, WIDTH // 2, 3)
    full = load_scene(ff_dir, "train")
    torch.testing.assert_close(averaged.intrinsics, full.intrinsics / 2)
    torch.testing.assert_close(averaged.images[0, 0, 0], full.images[0, :2, :2].mean(dim=(0, 1)))
    copy = _copy(ff_dir, tmp_path)
    (copy / "images_2").mkdir()
    for path in sorted((copy / "images").iterdir()):
        Image.new("RGB", (WIDTH // 2, HEIGHT // 2), (255, 0, 0)).save(copy / "images_2" / path.name)
    from_folder = load_scene(copy, "train", downscale=2)
    torch.testing.assert_close(from_folder.images[..., 0], torch.ones(from_folder.images.shape[:3]))
    assert from_folder.file_paths[0].parent.name == "images_2"


def test_image_count_mismatch_is_a_scene_error(ff_dir: Path, tmp_path: Path) -> None:
    copy = _copy(ff_dir, tmp_path)
    (copy / "images" / "image_003.png").unlink()
    with pytest.raises(SceneError, match="12 poses but .* holds 11 images"):
        load_scene(copy)


def test_wrong_aspect_ratio_is_a_scene_error(ff_dir: Path, tmp_path: Path) -> None:
    copy = _copy(ff_dir, tmp_path)
    for path in (copy / "images").iterdir():
        Image.new("RGB", (WIDTH, WIDTH), (0, 0, 0)).save(path)
    with pytest.raises(SceneError, match="aspect ratios differ"):
        load_scene(copy)


@pytest.mark.parametrize("content", [np.zeros((4, 16)), np.full((4, 17), np.nan), "not an array"])
def test_malformed_poses_bounds_is_a_scene_error(ff_dir: Path, tmp_path: Path, content: object) -> None:
    copy = _copy(ff_dir, tmp_path)
    if isinstance(content, str):
        (copy / POSES_BOUNDS).write_text(content)
    else:
        np.save(copy / POSES_BOUNDS, content)
    with pytest.raises(SceneError, match=POSES_BOUNDS):
        load_scene(copy)


def test_missing_images_folder_is_a_scene_error(ff_dir: Path, tmp_path: Path) -> None:
    copy = _copy(ff_dir, tmp_path)
    shutil.rmtree(copy / "images")
    with pytest.raises(SceneError, match="no images/ folder"):
        load_scene(copy)


# -- NDC ------------------------------------------------------------------------------------------


def test_ndc_maps_the_near_plane_to_minus_one_and_infinity_to_one() -> None:
    points = torch.tensor([[0.3, -0.2, -1.0], [5.0, 2.0, -1e12]], dtype=torch.float64)
    z = ndc_points(points, focal=50.0, width=64.0, height=48.0, near=1.0)[:, 2]
    torch.testing.assert_close(z, torch.tensor([-1.0, 1.0], dtype=torch.float64))


def test_ndc_ray_passes_through_the_ndc_images_of_its_points() -> None:
    generator = torch.Generator().manual_seed(3)
    origins = torch.rand(5, 3, generator=generator, dtype=torch.float64) - 0.5
    directions = torch.rand(5, 3, generator=generator, dtype=torch.float64) - 0.5
    directions[:, 2] = -1.0
    o, d, length = ndc_rays(origins, directions, 50.0, 64.0, 48.0, near=1.0)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(o[:, 2], -torch.ones(5, dtype=torch.float64))
    previous = torch.zeros(5, dtype=torch.float64)
    for depth in (2.0, 7.0, 40.0):
        t = (depth + origins[:, 2]) / -directions[:, 2]  # the world point at z = -depth
        image = ndc_points(origins + t[:, None] * directions, 50.0, 64.0, 48.0, near=1.0)
        s = ((image - o) * d).sum(-1)
        torch.testing.assert_close(o + s[:, None] * d, image)  # on the NDC ray ...
        assert (s > previous).all() and (s < length).all()  # ... in order, before infinity
        previous = s
    far = ndc_points(origins + 1e12 * directions, 50.0, 64.0, 48.0, near=1.0)
    torch.testing.assert_close(o + length[:, None] * d, far)


def test_ndc_rays_of_the_mean_camera_run_straight_down_the_z_axis(ff_dir: Path) -> None:
    scene = load_scene(ff_dir, "test")
    identity = Scene(**{**scene.__dict__, "c2w": torch.eye(3, 4).expand(len(scene), 3, 4).contiguous()})
    origins, directions = image_rays(identity, 0)
    torch.testing.assert_close(directions, torch.tensor([0.0, 0.0, 1.0]).expand_as(directions), atol=1e-6, rtol=0)
    x = (torch.arange(WIDTH) + 0.5) * 2 / WIDTH - 1  # pixel columns span NDC x in [-1, 1]
    torch.testing.assert_close(origins.reshape(HEIGHT, WIDTH, 3)[0, :, 0], x)
    assert origins.reshape(HEIGHT, WIDTH, 3)[0, 0, 1] > 0.9  # the top row is at NDC y ~ +1


def test_training_rays_of_an_llff_scene_are_in_ndc(ff_dir: Path) -> None:
    scene = load_scene(ff_dir, "train")
    batch = RaySampler(scene, 128, torch.Generator().manual_seed(0)).sample()
    torch.testing.assert_close(batch.origins[:, 2], -torch.ones(128))
    torch.testing.assert_close(batch.directions.norm(dim=-1), torch.ones(128))
    assert (batch.origins[:, :2].abs() <= scene.aabb[1, :2]).all()  # the box holds every ray


# -- virtual cameras for distillation -------------------------------------------------------------


def test_forward_facing_rig_keeps_virtual_cameras_in_the_training_camera_box(ff_dir: Path) -> None:
    scene = load_scene(ff_dir, "train")
    rig = CameraRig(**CameraRig.from_scene(scene).to_dict())
    assert rig.forward_facing and rig.ndc_space() == scene.ndc
    cameras = virtual_cameras(rig, 64, (0.0, 80.0), seed=0, device=torch.device("cpu"))
    lo, hi = scene.c2w[:, :, 3].amin(0), scene.c2w[:, :, 3].amax(0)
    assert ((cameras[:, :, 3] >= lo - 1e-6) & (cameras[:, :, 3] <= hi + 1e-6)).all()
    torch.testing.assert_close(cameras[:, :, :3], torch.tensor(rig.orientation).float().expand(64, 3, 3))
    origins, directions = sample_virtual_rays(cameras, rig.scaled(16, 12), 256, torch.Generator().manual_seed(1))
    torch.testing.assert_close(origins[:, 2], -torch.ones(256))
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(256))


def test_rigs_recorded_before_forward_facing_support_still_load() -> None:
    old = {"fx": 100.0, "fy": 100.0, "cx": 32.0, "cy": 32.0, "height": 64, "width": 64, "radius": 4.0,
           "centre": [0.0, 0.0, 0.0], "up": [0.0, 0.0, 1.0], "near": 2.0, "far": 6.0}
    rig = CameraRig(**old)
    assert not rig.forward_facing and rig.ndc_space() is None
    origins = torch.zeros(2, 3)
    directions = torch.tensor([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    assert rig.scene_rays(origins, directions) == (origins, directions)
    cameras = virtual_cameras(rig, 8, (0.0, 80.0), seed=0, device=torch.device("cpu"))
    torch.testing.assert_close(cameras[:, :, 3].norm(dim=-1), torch.full((8,), 4.0))


def test_ndc_space_does_not_depend_on_the_image_size() -> None:
    rays = (torch.tensor([[0.1, 0.2, 0.0]]), torch.tensor([[0.2, -0.1, -1.0]]))
    a = NdcSpace(focal=50.0, width=64.0, height=48.0).rays(*rays)
    b = NdcSpace(focal=25.0, width=32.0, height=24.0).rays(*rays)
    torch.testing.assert_close(a, b)


# -- training -------------------------------------------------------------------------------------


def test_hash_model_trains_on_a_forward_facing_scene(ff_dir: Path, tmp_path: Path) -> None:
    from taichi_pvd.training.api import train

    seen: dict[str, object] = {}

    def view_error(trainer) -> float:
        """MSE of training view 0 rendered on black, the background of opaque-scene training."""
        with torch.no_grad():
            image = trainer.render_view(trainer.scene, 0, background=torch.zeros(3))
        return float(((image - trainer.scene.images[0]) ** 2).mean())

    def before_training(trainer) -> None:
        seen["trainer"], seen["before"] = trainer, view_error(trainer)

    metrics = train(data=ff_dir, model="hash", out=tmp_path / "run", on_ready=before_training,
                    field_overrides={"log2_table_size": 12, "n_levels": 4, "finest_resolution": 64},
                    train_overrides={"steps": 96, "batch_rays": 256, "val_every": 0, "checkpoint_every": 0,
                                     "grid_resolution": 32, "grid_warmup_steps": 32,
                                     "marching": {"steps_across_box": 128}})
    assert metrics["steps"] == 96
    assert view_error(seen["trainer"]) < 0.5 * seen["before"]
    # The occupancy grid is updated in NDC as anywhere: it keeps the scene and culls cells.
    assert 0.0 < seen["trainer"].grid.occupancy_fraction() < 1.0
    # Scored like validation: on the black the model was trained on, not on white.
    from taichi_pvd.evaluation import evaluate_run
    from taichi_pvd.io.runs import load_run

    evaluation = evaluate_run(load_run(tmp_path / "run", torch.device("cpu")), split="test", write_images=False)
    assert evaluation.background == (0.0, 0.0, 0.0)
    assert load_run(tmp_path / "run", torch.device("cpu")).render_background() == (0.0, 0.0, 0.0)
    assert evaluation.psnr_db == pytest.approx(seen["trainer"].validate(), abs=0.05)

    # The forward-facing teacher distils into a grid, on virtual cameras in the training cameras'
    # box and in NDC like the teacher.
    before, after = distil_into_grid_briefly(tmp_path / "run", tmp_path / "grid", steps=120, batch_rays=256)
    assert after > before + 5.0
    from taichi_pvd.run_info import describe_run

    assert describe_run(tmp_path / "grid").space == "ndc"


@pytest.mark.parametrize("kind", sorted(COMPACT_FIELDS))
def test_vm_mlp_and_grid_fields_train_on_a_forward_facing_scene(ff_dir: Path, tmp_path: Path, kind: str) -> None:
    _, before, after = train_briefly(ff_dir, kind, tmp_path)
    assert after > before + 3.0
