"""Real captures as users bring them: the every-8th holdout split, lens distortion against
OpenCV's own projection formulas (a float64 reference), the scene type rule, the run's own
scene options in eval and render, and the ellipse camera path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from taichi_pvd.data import generate_rays, load_scene, write_demo_scene, write_forward_facing_demo
from taichi_pvd.data.camera_paths import look_at
from taichi_pvd.data.distortion import Lens
from taichi_pvd.data.scene_type import cameras_surround
from taichi_pvd.errors import ConfigError, SceneError

@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_scene(tmp_path_factory.mktemp("demo"), size=16, n_train=4, n_val=2, n_test=3)


@pytest.fixture(scope="module")
def ff_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_forward_facing_demo(tmp_path_factory.mktemp("ff") / "table", width=32, height=24, rows=3, cols=4)


# -- OpenCV's forward models, written out as its documentation gives them (float64) -------------


def opencv_project(points: np.ndarray, fx, fy, cx, cy, k1, k2, p1, p2, k3=0.0) -> np.ndarray:
    """cv::projectPoints with the radial-tangential model: camera-frame points [N, 3] (OpenCV
    axes: x right, y down, z forward) -> pixels [N, 2]."""
    x, y = points[:, 0] / points[:, 2], points[:, 1] / points[:, 2]
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([fx * xd + cx, fy * yd + cy], axis=1)


def opencv_fisheye_project(points: np.ndarray, fx, fy, cx, cy, k1, k2, k3, k4) -> np.ndarray:
    """cv::fisheye::projectPoints (equidistant model, no skew): camera-frame points [N, 3]
    -> pixels [N, 2]."""
    a, b = points[:, 0] / points[:, 2], points[:, 1] / points[:, 2]
    r = np.sqrt(a * a + b * b)
    theta = np.arctan(r)
    theta_d = theta * (1 + k1 * theta ** 2 + k2 * theta ** 4 + k3 * theta ** 6 + k4 * theta ** 8)
    return np.stack([fx * theta_d / r * a + cx, fy * theta_d / r * b + cy], axis=1)


def _camera_points(n: int, half_angle_deg: float, seed: int) -> np.ndarray:
    """[n, 3] points in front of an OpenCV camera, within ``half_angle_deg`` of its axis."""
    rng = np.random.default_rng(seed)
    half = math.tan(math.radians(half_angle_deg)) / math.sqrt(2)
    xy = rng.uniform(-half, half, size=(n, 2))
    depth = rng.uniform(1.0, 5.0, size=(n, 1))
    return np.concatenate([xy * depth, depth], axis=1)


def _ray_angle_errors(points_cv: np.ndarray, pixels: np.ndarray, lens: Lens, intrinsics) -> np.ndarray:
    """Angles (radians) between our rays through ``pixels`` and the directions to the points,
    for a camera at the origin (OpenGL c2w = identity; OpenCV points -> OpenGL: y, z negated)."""
    c2w = torch.eye(3, 4, dtype=torch.float64)[None]
    origins, directions = generate_rays(c2w, torch.tensor([intrinsics], dtype=torch.float64), 1, 1,
                                        pixels=torch.from_numpy(pixels)[None], lens=lens)
    target = torch.from_numpy(points_cv * np.array([1.0, -1.0, -1.0]))
    target = target / target.norm(dim=-1, keepdim=True)
    cosine = (directions[0] * target).sum(-1).clamp(-1, 1)
    return torch.acos(cosine).numpy()


OPENCV = dict(k1=-0.28, k2=0.09, p1=0.0012, p2=-0.0007)
INTRINSICS = (290.0, 292.0, 127.3, 126.1)


def test_opencv_rays_pass_through_the_points_opencv_projects() -> None:
    points = _camera_points(500, 35.0, seed=0)
    pixels = opencv_project(points, *INTRINSICS, **OPENCV)
    lens = Lens("OPENCV", torch.tensor([[OPENCV["k1"], OPENCV["k2"], 0.0, OPENCV["p1"], OPENCV["p2"]]],
                                       dtype=torch.float64))
    assert _ray_angle_errors(points, pixels, lens, INTRINSICS).max() < 1e-6


@pytest.mark.parametrize("swap", [("k1", "k2"), ("p1", "p2")])
def test_the_opencv_reference_fails_when_coefficients_are_swapped(swap) -> None:
    points = _camera_points(500, 35.0, seed=1)
    pixels = opencv_project(points, *INTRINSICS, **OPENCV)
    swapped = dict(OPENCV, **{swap[0]: OPENCV[swap[1]], swap[1]: OPENCV[swap[0]]})
    lens = Lens("OPENCV", torch.tensor([[swapped["k1"], swapped["k2"], 0.0, swapped["p1"], swapped["p2"]]],
                                       dtype=torch.float64))
    assert _ray_angle_errors(points, pixels, lens, INTRINSICS).max() > 1e-4


def test_fisheye_rays_pass_through_the_points_opencv_projects() -> None:
    coefficients = (0.05, -0.01, 0.004, -0.0008)
    points = _camera_points(500, 70.0, seed=2)
    pixels = opencv_fisheye_project(points, *INTRINSICS, *coefficients)
    lens = Lens("OPENCV_FISHEYE", torch.tensor([coefficients], dtype=torch.float64))
    assert _ray_angle_errors(points, pixels, lens, INTRINSICS).max() < 1e-6
    wrong = Lens("OPENCV_FISHEYE", torch.tensor([coefficients[1::-1] + coefficients[2:]], dtype=torch.float64))
    assert _ray_angle_errors(points, pixels, wrong, INTRINSICS).max() > 1e-4


# -- a small nerfstudio-style capture -------------------------------------------------------------


def _ring_poses(n: int, radius: float = 3.0, height: float = 0.5, arc_deg: float = 360.0) -> list[list[list[float]]]:
    """OpenGL camera-to-world matrices of ``n`` cameras on an arc around the origin, z up,
    looking at it."""
    angles = torch.arange(n, dtype=torch.float64) * math.radians(arc_deg) / n
    eyes = torch.stack([radius * torch.cos(angles), radius * torch.sin(angles), torch.full_like(angles, height)], -1)
    c2w = look_at(eyes, (0.0, 0.0, 0.0), (0.0, 0.0, 1.0))
    bottom = torch.tensor([[[0.0, 0.0, 0.0, 1.0]]], dtype=torch.float64).expand(n, 1, 4)
    return torch.cat([c2w, bottom], dim=1).tolist()


def _write_capture(root: Path, n: int, *, rgba: bool = False, transparent: bool = False, arc_deg: float = 360.0,
                   size: int = 8, reverse: bool = True, **top) -> Path:
    """A ``transforms.json`` capture of ``n`` frames named ``frame_NNNNN.png`` (listed in reverse
    order when ``reverse``, as the published garden lists them)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    frames = []
    for i, pose in enumerate(_ring_poses(n, arc_deg=arc_deg)):
        pixels = np.full((size, size, 4 if rgba else 3), 200, dtype=np.uint8)
        if rgba:
            pixels[..., 3] = 255
            if transparent:
                pixels[0, 0, 3] = 0
        name = f"images/frame_{i + 1:05d}.png"
        Image.fromarray(pixels).save(root / name)
        frames.append({"file_path": name, "transform_matrix": pose})
    meta = {"fl_x": 10.0, "fl_y": 10.0, "cx": size / 2, "cy": size / 2, "w": size, "h": size, **top,
            "frames": frames[::-1] if reverse else frames}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def test_a_single_transforms_json_holds_out_every_8th_frame_sorted_by_file_name(tmp_path: Path) -> None:
    root = _write_capture(tmp_path / "cap", 20)
    train, test, val = (load_scene(root, s) for s in ("train", "test", "val"))
    assert [p.name for p in test.file_paths] == ["frame_00001.png", "frame_00009.png", "frame_00017.png"]
    assert [p.name for p in val.file_paths] == [p.name for p in test.file_paths]
    assert len(train) == 17 and not {p.name for p in train.file_paths} & {p.name for p in test.file_paths}
    assert train.split_summary.test == ("frame_00001.png", "frame_00009.png", "frame_00017.png")
    assert "every 8th" in train.split_summary.describe() and "17 train, 3 test" in train.split_summary.describe()
    # Every split is normalised by the training cameras only.
    assert test.contraction == train.contraction


def test_holdout_every_changes_the_rule_and_zero_holds_nothing_out(tmp_path: Path) -> None:
    root = _write_capture(tmp_path / "cap", 20)
    assert [p.name for p in load_scene(root, "test", holdout_every=5).file_paths] == [
        "frame_00001.png", "frame_00006.png", "frame_00011.png", "frame_00016.png"]
    everything = load_scene(root, "test", holdout_every=0)
    assert len(everything) == 20 and len(load_scene(root, "train", holdout_every=0)) == 20
    assert "no holdout" in everything.split_summary.rule
    with pytest.raises(ConfigError, match="holdout_every"):
        load_scene(root, holdout_every=1)


def test_split_files_are_used_as_they_are(demo_dir: Path) -> None:
    summary = load_scene(demo_dir, "test").split_summary
    assert "split files" in summary.rule and summary.test == tuple(
        Path(f["file_path"]).name for f in json.loads((demo_dir / "transforms_test.json").read_text())["frames"])


def test_distortion_and_per_frame_intrinsics_reach_the_rays(tmp_path: Path) -> None:
    root = _write_capture(tmp_path / "cap", 3, camera_model="OPENCV", **OPENCV)
    meta = json.loads((root / "transforms.json").read_text())
    meta["frames"][0].update(k1=0.1, fl_x=12.0)
    (root / "transforms.json").write_text(json.dumps(meta))
    scene = load_scene(root, holdout_every=0)
    assert scene.lens is not None and scene.lens.model == "OPENCV"
    # Frames sorted by name: the json's first frame (frame_00003) comes last.
    torch.testing.assert_close(scene.lens.coefficients[:, 0], torch.tensor([-0.28, -0.28, 0.1], dtype=torch.float64))
    assert scene.intrinsics[:, 0].tolist() == [10.0, 10.0, 12.0]


@pytest.mark.parametrize("edit, match", [
    ({"camera_model": "EQUIRECTANGULAR"}, "not supported"),
    ({"camera_model": "OPENCV_FISHEYE", "p1": 0.01}, "no such coefficient"),
    ({"k1": "big"}, "not a finite number"),
    ({"applied_transform": [[1, 0], [0, 1]]}, "applied_transform"),
], ids=["unknown model", "tangential in fisheye", "not a number", "bad applied_transform"])
def test_bad_camera_models_are_scene_errors(tmp_path: Path, edit: dict, match: str) -> None:
    root = _write_capture(tmp_path / "cap", 3, **edit)
    with pytest.raises(SceneError, match=match):
        load_scene(root, holdout_every=0)


# -- scene type -----------------------------------------------------------------------------------


def test_opaque_images_from_cameras_around_the_scene_are_unbounded(tmp_path: Path) -> None:
    scene = load_scene(_write_capture(tmp_path / "cap", 16))
    assert scene.scene_type.name == "unbounded" and scene.contraction is not None
    assert "opaque" in scene.scene_type.reason and "360" in scene.scene_type.reason
    # Alpha 255 everywhere is opaque too.
    assert load_scene(_write_capture(tmp_path / "rgba", 16, rgba=True)).scene_type.name == "unbounded"


def test_transparent_images_are_a_bounded_object_capture(tmp_path: Path) -> None:
    scene = load_scene(_write_capture(tmp_path / "cap", 16, rgba=True, transparent=True))
    assert scene.scene_type.name == "bounded" and scene.contraction is None
    assert "transparent" in scene.scene_type.reason


def test_cameras_on_one_side_do_not_surround_the_scene(tmp_path: Path) -> None:
    around, detail = cameras_surround(np.asarray(_ring_poses(12, arc_deg=120.0))[:, :3])
    assert not around and "spread over only 108 degrees" in detail
    scene = load_scene(_write_capture(tmp_path / "cap", 16, arc_deg=120.0))
    assert scene.scene_type.name == "bounded" and "only" in scene.scene_type.reason


def test_json_markers_and_the_requested_type_take_precedence(tmp_path: Path) -> None:
    root = _write_capture(tmp_path / "cap", 16, unbounded=False)
    assert load_scene(root).scene_type.name == "bounded"
    assert load_scene(root, scene_type="unbounded").scene_type.describe() == "unbounded (requested)"
    with pytest.raises(SceneError, match="forward-facing"):
        load_scene(root, scene_type="forward-facing")
    with pytest.raises(ConfigError, match="scene_type must be one of"):
        load_scene(root, scene_type="object")


def test_llff_folders_are_forward_facing(ff_dir: Path) -> None:
    scene = load_scene(ff_dir)
    assert scene.scene_type.name == "forward-facing" and scene.ndc is not None
    with pytest.raises(SceneError, match="forward-facing only"):
        load_scene(ff_dir, scene_type="unbounded")


# -- the run's own scene options in eval and render -------------------------------------------------


@pytest.fixture(scope="module")
def llff_images_8_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A grid run trained with downscale 8 on an LLFF folder that holds only ``images_8/`` (its
    poses_bounds.npy describing the 8 times larger originals, as published LLFF scenes do)."""
    from taichi_pvd.training.api import train

    root = tmp_path_factory.mktemp("llff8")
    scene = write_forward_facing_demo(root / "scene", width=32, height=24, rows=3, cols=4)
    (scene / "images").rename(scene / "images_8")
    raw = np.load(scene / "poses_bounds.npy")
    raw[:, 4:15:5] *= 8.0  # hwf of the full-size images
    np.save(scene / "poses_bounds.npy", raw)
    out = root / "runs" / "ff"
    train(data=scene, model="grid", out=out, field_overrides={"resolution": 16},
          train_overrides={"steps": 4, "batch_rays": 128, "val_every": 0, "checkpoint_every": 0, "downscale": 8,
                           "grid_resolution": 16, "marching": {"steps_across_box": 64}})
    return out


def test_eval_and_render_load_the_scene_at_the_runs_downscale(llff_images_8_run: Path, tmp_path: Path) -> None:
    from taichi_pvd.evaluation import evaluate_run
    from taichi_pvd.io.runs import load_run
    from tests.cli_checks import invoke

    run = load_run(llff_images_8_run)
    assert run.scene_options() == {"downscale": 8, "holdout_every": 8, "scene_type": "forward-facing"}
    with pytest.raises(SceneError, match="no images/ folder"):
        load_scene(run.scene_path(), "test")  # the full size is not there: eval must not ask for it
    evaluation = evaluate_run(run, write_images=False)
    assert (evaluation.width, evaluation.height) == (32, 24) and len(evaluation.views) == 2
    out = tmp_path / "test-path"
    result = invoke("render", "--run", llff_images_8_run, "--path", "test", "--out", out, "--fps", 5)
    assert result.exit_code == 0, result.output
    assert len(list((out / "frames").glob("*.png"))) == 2
    result = invoke("eval", "--run", llff_images_8_run, "--no-images")
    assert result.exit_code == 0 and "32x24" in result.output, result.output
    facts = json.loads(invoke("info", llff_images_8_run, "--json").output)["scene"]
    assert facts["type_reason"] == "an LLFF folder (poses_bounds.npy)"
    assert (len(facts["split"]["train"]), len(facts["split"]["test"])) == (10, 2)
    table = invoke("info", llff_images_8_run).output
    assert "scene type" in table and "split" in table


def test_default_render_path_follows_the_scene_type(llff_images_8_run: Path) -> None:
    from taichi_pvd.data.camera_rig import CameraRig
    from taichi_pvd.io.runs import load_run
    from taichi_pvd.rendering.view_sets import default_path

    rig = load_run(llff_images_8_run).camera_rig()
    assert default_path(rig) == "spiral"
    assert default_path(CameraRig(**{**rig.to_dict(), "forward_facing": False, "ndc": None})) == "orbit"
    assert default_path(CameraRig(**{**rig.to_dict(), "forward_facing": False, "ndc": None,
                                     "contraction": {"centre": [0, 0, 0], "scale": 1.0}})) == "ellipse"


# -- the ellipse path -----------------------------------------------------------------------------


def test_the_ellipse_passes_near_the_training_cameras_and_looks_at_the_centre() -> None:
    from taichi_pvd.data.camera_paths import ellipse_path

    generator = torch.Generator().manual_seed(0)
    angles = torch.rand(40, generator=generator, dtype=torch.float64) * 2 * math.pi
    eyes = torch.stack([3.0 * torch.cos(angles), 2.0 * torch.sin(angles), 0.8 + 0.02 * torch.randn(40, generator=generator,
                        dtype=torch.float64)], dim=-1) + torch.tensor([1.0, -0.5, 0.2], dtype=torch.float64)
    centre = torch.tensor([1.0, -0.5, 0.2], dtype=torch.float64)
    cameras = look_at(eyes, centre, (0.0, 0.0, 1.0))
    path = ellipse_path(cameras, 200)
    gaps = torch.cdist(eyes, path[:, :, 3]).min(dim=1).values
    assert float(gaps.max()) < 0.3  # within 10% of the smaller semi-axis of every training camera
    to_centre = centre - path[:, :, 3]
    cosine = (to_centre * -path[:, :, 2]).sum(-1) / to_centre.norm(dim=-1)
    assert float(cosine.min()) > 1 - 1e-9
    assert float(path[:, 2, 1].min()) > 0.9  # upright: the image's up is the world's up
