"""Scene loading: NeRF-Synthetic and Instant-NGP styles, compositing, downscaling, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from taichi_pvd.data import load_scene, write_demo_scene
from taichi_pvd.data.demo import CAMERA_ANGLE_X
from taichi_pvd.errors import ConfigError, SceneError

SIZE = 32


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_scene(
        tmp_path_factory.mktemp("demo"), size=SIZE, n_train=4, n_val=2, n_test=3
    )


def _png_float64(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64) / 255.0


def _write_rgb(path: Path, height: int, width: int, seed: int) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels.astype(np.float64) / 255.0


def _pose(z: float) -> list[list[float]]:
    return [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, z], [0.0, 0.0, 0.0, 1.0]]


def _write_ngp_scene(root: Path, frames: list[dict], **top: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "transforms.json").write_text(json.dumps({**top, "frames": frames}))
    return root


def test_demo_scene_reads_back_with_shapes_intrinsics_and_poses(demo_dir: Path) -> None:
    scene = load_scene(demo_dir, "train")
    assert scene.images.shape == (4, SIZE, SIZE, 3) and scene.images.dtype == torch.float32
    assert scene.alphas is not None and scene.alphas.shape == (4, SIZE, SIZE, 1)
    assert (scene.height, scene.width, scene.split, len(scene)) == (SIZE, SIZE, "train", 4)
    focal = 0.5 * SIZE / math.tan(0.5 * CAMERA_ANGLE_X)
    expected = torch.tensor([focal, focal, SIZE / 2, SIZE / 2]).expand(4, 4)
    torch.testing.assert_close(scene.intrinsics, expected)
    frames = json.loads((demo_dir / "transforms_train.json").read_text())["frames"]
    poses = torch.tensor([f["transform_matrix"] for f in frames], dtype=torch.float64)[:, :3]
    torch.testing.assert_close(scene.c2w.double(), poses, atol=1e-6, rtol=0)
    assert scene.file_paths == [demo_dir / "train" / f"r_{i}.png" for i in range(4)]
    assert scene.camera_radius == pytest.approx(4.0, abs=1e-4)
    half_diagonal = 1.5 * math.sqrt(3)
    assert scene.near == pytest.approx(4.0 - half_diagonal, abs=1e-4)
    assert scene.far == pytest.approx(4.0 + half_diagonal, abs=1e-4)
    torch.testing.assert_close(scene.aabb, torch.tensor([[-1.5] * 3, [1.5] * 3]))


def test_each_split_reads_its_own_json(demo_dir: Path) -> None:
    assert len(load_scene(demo_dir, "val")) == 2
    assert len(load_scene(demo_dir, "test")) == 3


def test_rgba_is_kept_premultiplied_with_alpha(demo_dir: Path) -> None:
    scene = load_scene(demo_dir, "test")
    png = _png_float64(demo_dir / "test" / "r_1.png")
    assert scene.alphas is not None
    np.testing.assert_allclose(scene.alphas[1].double().numpy(), png[..., 3:], atol=1e-6)
    np.testing.assert_allclose(
        scene.images[1].double().numpy(), png[..., :3] * png[..., 3:], atol=1e-6
    )


def test_background_is_composited_and_alpha_dropped(demo_dir: Path) -> None:
    background = (0.2, 0.5, 1.0)
    scene = load_scene(demo_dir, "test", background=background)
    png = _png_float64(demo_dir / "test" / "r_2.png")
    expected = png[..., :3] * png[..., 3:] + (1 - png[..., 3:]) * np.array(background)
    assert scene.alphas is None
    np.testing.assert_allclose(scene.images[2].double().numpy(), expected, atol=1e-6)
    torch.testing.assert_close(load_scene(demo_dir, "test").composited(background), scene.images)


def test_downscale_area_averages_premultiplied_colour_and_scales_intrinsics(demo_dir: Path) -> None:
    full = load_scene(demo_dir, "val")
    half = load_scene(demo_dir, "val", downscale=2)
    assert (half.height, half.width) == (SIZE // 2, SIZE // 2)
    assert half.alphas is not None and full.alphas is not None
    pooled = F.avg_pool2d(full.images.permute(0, 3, 1, 2).double(), 2).permute(0, 2, 3, 1)
    torch.testing.assert_close(half.images.double(), pooled, atol=1e-6, rtol=0)
    pooled_alpha = F.avg_pool2d(full.alphas.permute(0, 3, 1, 2).double(), 2).permute(0, 2, 3, 1)
    torch.testing.assert_close(half.alphas.double(), pooled_alpha, atol=1e-6, rtol=0)
    torch.testing.assert_close(half.intrinsics, full.intrinsics / 2)


def test_instant_ngp_per_frame_intrinsics_override_the_top_level(tmp_path: Path) -> None:
    _write_rgb(tmp_path / "images" / "a.png", 10, 12, seed=0)
    pixels_b = _write_rgb(tmp_path / "images" / "b.png", 10, 12, seed=1)
    frames = [
        {"file_path": "images/a.png", "transform_matrix": _pose(3.0)},
        {
            "file_path": "images/b.png",
            "transform_matrix": _pose(5.0)[:3],
            "fl_x": 20.0,
            "fl_y": 21.0,
            "cx": 5.5,
            "cy": 4.5,
        },
    ]
    root = _write_ngp_scene(tmp_path, frames, fl_x=10.0, cx=6.0, cy=5.0, w=12, h=10, aabb_scale=4,
                            unbounded=False)
    scene = load_scene(root, "val", holdout_every=0)
    torch.testing.assert_close(
        scene.intrinsics, torch.tensor([[10.0, 10.0, 6.0, 5.0], [20.0, 21.0, 5.5, 4.5]])
    )
    assert scene.alphas is None and (scene.height, scene.width) == (10, 12)
    np.testing.assert_allclose(scene.images[1].double().numpy(), pixels_b, atol=1e-6)
    torch.testing.assert_close(scene.aabb, torch.tensor([[-6.0] * 3, [6.0] * 3]))
    assert scene.c2w[1, 2, 3].item() == 5.0
    assert scene.camera_radius == pytest.approx(4.0)


def test_downscale_crops_incomplete_blocks_and_keeps_principal_point(tmp_path: Path) -> None:
    pixels = _write_rgb(tmp_path / "a.png", 10, 13, seed=2)
    frames = [{"file_path": "a.png", "transform_matrix": _pose(3.0)}]
    root = _write_ngp_scene(tmp_path, frames, fl_x=8.0, cx=6.5, cy=5.0)
    scene = load_scene(root, downscale=4, holdout_every=0)
    assert (scene.height, scene.width) == (2, 3)
    expected = pixels[:8, :12].reshape(2, 4, 3, 4, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(scene.images[0].double().numpy(), expected, atol=1e-6)
    torch.testing.assert_close(scene.intrinsics[0], torch.tensor([2.0, 2.0, 6.5 / 4, 1.25]))


def test_explicit_aabb_and_near_far_keys_are_used(tmp_path: Path) -> None:
    _write_rgb(tmp_path / "a.png", 4, 4, seed=3)
    frames = [{"file_path": "a", "transform_matrix": _pose(3.0)}]
    aabb = [[-1.0, -2.0, -3.0], [1.0, 2.0, 0.5]]
    root = _write_ngp_scene(tmp_path, frames, camera_angle_x=1.0, aabb=aabb, near=0.5, far=9.0)
    scene = load_scene(root, holdout_every=0)
    torch.testing.assert_close(scene.aabb, torch.tensor(aabb))
    assert (scene.near, scene.far) == (0.5, 9.0)
    assert scene.file_paths == [tmp_path / "a.png"]


def _break_demo(demo_dir: Path, target: Path, edit: str) -> Path:
    """Copy the demo scene's train split to ``target`` and damage it as ``edit`` says."""
    meta = json.loads((demo_dir / "transforms_train.json").read_text())
    (target / "train").mkdir(parents=True)
    for i in range(len(meta["frames"])):
        src = demo_dir / "train" / f"r_{i}.png"
        (target / "train" / f"r_{i}.png").write_bytes(src.read_bytes())
    frame = meta["frames"][1]
    text = None
    if edit == "malformed json":
        text = '{"frames": [ {"file_path": '
    elif edit == "not an object":
        text = "[1, 2]"
    elif edit == "no frames":
        del meta["frames"]
    elif edit == "no transform_matrix":
        del frame["transform_matrix"]
    elif edit == "no focal length":
        del meta["camera_angle_x"]
    elif edit == "wrong matrix shape":
        frame["transform_matrix"] = frame["transform_matrix"][:2]
    elif edit == "ragged matrix":
        frame["transform_matrix"][0] = [1.0, 2.0]
    elif edit == "nan pose":
        frame["transform_matrix"][0][3] = float("nan")
    elif edit == "scaled rotation":
        frame["transform_matrix"][0][:3] = [2 * v for v in frame["transform_matrix"][0][:3]]
    elif edit == "missing image":
        (target / "train" / "r_1.png").unlink()
    elif edit == "truncated image":
        data = (target / "train" / "r_1.png").read_bytes()
        (target / "train" / "r_1.png").write_bytes(data[: len(data) // 2])
    elif edit == "wrong-size image":
        Image.new("RGBA", (SIZE + 2, SIZE)).save(target / "train" / "r_1.png")
    elif edit == "w/h mismatch":
        meta["w"], meta["h"] = SIZE * 2, SIZE * 2
    elif edit == "bad aabb":
        meta["aabb"] = [[1, 1, 1], [0, 0, 0]]
    text = json.dumps(meta) if text is None else text
    (target / "transforms_train.json").write_text(text)
    return target


@pytest.mark.parametrize(
    "edit, words",
    [
        ("malformed json", ["transforms_train.json", "not valid JSON", "line 1"]),
        ("not an object", ["transforms_train.json", "JSON object"]),
        ("no frames", ["transforms_train.json", "'frames'"]),
        ("no transform_matrix", ["frame 1", "transforms_train.json", "'transform_matrix'"]),
        ("no focal length", ["camera_angle_x", "fl_x", "transforms_train.json"]),
        ("wrong matrix shape", ["frame 1", "shape [2, 4]", "4x4 or 3x4"]),
        ("ragged matrix", ["frame 1", "not a matrix of numbers"]),
        ("nan pose", ["frame 1", "NaN or Inf"]),
        ("scaled rotation", ["frame 1", "not a rotation"]),
        ("missing image", ["frame 1", "r_1", "not found"]),
        ("truncated image", ["r_1.png", "truncated"]),
        ("wrong-size image", ["r_1.png", f"{SIZE + 2}x{SIZE}", "one size"]),
        ("w/h mismatch", ["r_0.png", f"w={SIZE * 2}"]),
        ("bad aabb", ["'aabb'", "max > min"]),
    ],
)
def test_damaged_scene_raises_scene_error_naming_the_problem(
    demo_dir: Path, tmp_path: Path, edit: str, words: list[str]
) -> None:
    root = _break_demo(demo_dir, tmp_path / "broken", edit)
    with pytest.raises(SceneError) as info:
        load_scene(root, "train")
    for word in words:
        assert word in str(info.value)


def test_missing_folder_and_missing_json_raise_scene_error(tmp_path: Path) -> None:
    with pytest.raises(SceneError, match="does not exist"):
        load_scene(tmp_path / "nowhere")
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(
        SceneError, match=r"no transforms_test\.json or transforms\.json .*other\.json"
    ):
        load_scene(tmp_path, "test")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(split="holdout"),
        dict(downscale=0),
        dict(downscale=1.5),
        dict(background=(1.0, 2.0, 0.0)),
    ],
)
def test_bad_options_raise_config_error(demo_dir: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        load_scene(demo_dir, **kwargs)
