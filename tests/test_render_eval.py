"""Seeing the result: rendering views, `pvd-ti render`, `pvd-ti eval`, `pvd-ti info` and the
PSNR-against-time plot, on one tiny trained run shared by the module."""

import dataclasses
import importlib.machinery
import json
import math
import os
import shutil
import sys
import time
import types

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from taichi_pvd_cli.main import main
from taichi_pvd.data.demo import write_demo_scene
from taichi_pvd.errors import ConfigError
from taichi_pvd.io.runs import load_run
from taichi_pvd.metrics import psnr
from taichi_pvd.plots import plot_psnr_vs_time
from taichi_pvd.fields.base import density_from_raw
from taichi_pvd.rendering import inference, view_sets, volume
from taichi_pvd.rendering.images import colour_depth, error_comparison, error_heatmap, side_by_side
from taichi_pvd.run_info import latest_run, teacher_chain
from taichi_pvd.training.api import train

SIZE = 24


@pytest.fixture(autouse=True)
def _keep_cpu(monkeypatch):
    """The CLI exports PVD_ARCH; keep the tests' CPU setting for everything run afterwards."""
    monkeypatch.setenv("PVD_ARCH", "cpu")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A hash run trained 30 steps on a 24x24 demo scene (coarse marching to keep it fast)."""
    root = tmp_path_factory.mktemp("render_eval")
    scene = write_demo_scene(root / "scene", size=SIZE, n_train=8, n_val=2, n_test=2)
    out = root / "runs" / "tiny"
    train(data=scene, model="hash", out=out,
          field_overrides={"log2_table_size": 12, "n_levels": 4, "finest_resolution": 64},
          train_overrides={"steps": 30, "batch_rays": 256, "val_every": 0, "checkpoint_every": 0,
                           "grid_resolution": 32, "marching": {"steps_across_box": 128}})
    return out


@pytest.fixture(scope="module")
def second_run(tiny_run):
    """A copy of the tiny run under another name (for --compare)."""
    other = tiny_run.parent / "other"
    shutil.copytree(tiny_run, other, ignore=shutil.ignore_patterns("render", "eval"))
    return other


def _invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _frame_sizes(folder):
    return [Image.open(p).size for p in sorted(folder.glob("[0-9][0-9][0-9][0-9].png"))]


def test_orbit_render_writes_the_requested_frames(tiny_run, tmp_path):
    out = tmp_path / "orbit"
    _invoke("render", "--run", tiny_run, "--path", "orbit", "--frames", 3, "--size", "20x16", "--out", out)
    assert _frame_sizes(out / "frames") == [(20, 16)] * 3
    assert _frame_sizes(out / "depth") == [(20, 16)] * 3
    video = next(out.glob("video.*"))
    depth = next(out.glob("depth.*"))
    assert video.suffix in (".mp4", ".gif") and depth.suffix == video.suffix
    if video.suffix == ".gif":
        assert Image.open(video).n_frames == 3


def test_render_without_run_uses_the_latest_and_writes_beside_it(tiny_run, second_run):
    os.utime(second_run / "checkpoint.pt", (time.time() + 5, time.time() + 5))
    _invoke("render", "--runs-root", tiny_run.parent, "--frames", 2, "--size", "12x12")
    assert _frame_sizes(second_run / "render" / "orbit" / "frames") == [(12, 12)] * 2


def test_compare_puts_two_runs_side_by_side(tiny_run, second_run, tmp_path):
    out = tmp_path / "compare"
    _invoke("render", "--run", tiny_run, "--compare", second_run, "--frames", 2, "--size", "20x16",
            "--out", out)
    assert _frame_sizes(out / "frames") == [(40, 16)] * 2
    assert _frame_sizes(out / "depth") == [(40, 16)] * 2


def test_compare_on_the_test_path_adds_an_error_panel(tiny_run, second_run, tmp_path):
    out = tmp_path / "test-compare"
    _invoke("render", "--run", tiny_run, "--compare", second_run, "--path", "test", "--out", out)
    assert _frame_sizes(out / "frames") == [(3 * SIZE, SIZE)] * 2


def test_info_reports_the_true_parameter_count(tiny_run):
    n_params = sum(p.numel() for p in load_run(tiny_run).field.parameters())
    facts = json.loads(_invoke("info", tiny_run, "--json").output)
    assert facts["num_parameters"] == n_params
    assert facts["model"] == "hash" and facts["origin"] == "trained" and facts["teachers"] == []
    assert facts["space"] == "box"
    assert facts["checkpoint_bytes"] == (tiny_run / "checkpoint.pt").stat().st_size
    table = _invoke("info", tiny_run).output
    assert f"{n_params:,}" in table and "trained from images" in table


def test_info_of_a_distilled_run_names_its_teacher(tiny_run, tmp_path):
    from taichi_pvd.distill.api import distill

    student = tmp_path / "student"
    distill(source="hash", target="hash", teacher=tiny_run, out=student,
            student_overrides={"log2_table_size": 10, "n_levels": 2, "finest_resolution": 32},
            distill_overrides={"steps": 2, "stage1_steps": 1, "stage2_steps": 1, "batch_rays": 64,
                               "val_every": 0, "checkpoint_every": 0, "val_views": 1, "val_size": 12})
    facts = json.loads(_invoke("info", student, "--json").output)
    assert facts["origin"] == "distilled" and facts["settings"]["steps"] == 2
    assert facts["teachers"] == [{"model": "hash", "path": str(tiny_run.resolve()), "exists": True,
                                  "val_psnr_db": load_run(tiny_run).meta["val_psnr_db"]}]
    assert facts["num_parameters"] == sum(p.numel() for p in load_run(student).field.parameters())


def test_eval_writes_metrics_with_the_psnr_of_the_rendered_view(tiny_run):
    _invoke("eval", "--run", tiny_run, "--views", 1)
    result = json.loads((tiny_run / "eval" / "metrics.json").read_text())
    assert result["split"] == "test" and result["n_views"] == 1
    assert math.isfinite(result["psnr_db"]) and 0.0 < result["ssim"] <= 1.0
    assert result["lpips"] is None or math.isfinite(result["lpips"])
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["test_psnr_db"] == result["psnr_db"] and metrics["test_ssim"] == result["ssim"]
    assert metrics["model"] == "hash"  # training's entries are kept
    # A scene with transparent images is scored on white, its ground truth composited on white.
    assert result["background"] == [1.0, 1.0, 1.0]
    assert load_run(tiny_run, torch.device("cpu")).render_background() == (1.0, 1.0, 1.0)
    assert gt_is_white_behind_the_object(tiny_run / "eval" / "test" / "000-gt.png")
    pred = np.asarray(Image.open(tiny_run / "eval" / "test" / "000-pred.png"), dtype=np.float64) / 255
    gt = np.asarray(Image.open(tiny_run / "eval" / "test" / "000-gt.png"), dtype=np.float64) / 255
    assert abs(psnr(pred, gt) - result["views"][0]["psnr_db"]) < 0.2  # 8-bit rounding only


def test_supersampled_views_average_renders_through_shifted_pixel_grids(tiny_run):
    run = load_run(tiny_run)
    views = view_sets.split_views(run.scene_path(), "test", 1)
    supersampled = inference.render_views(run, views, supersample=2)[0]
    # The same four rays per pixel, reached another way: moving the principal point by -offset
    # moves every pixel centre's ray to that offset from the pixel's corner.
    shifted = []
    for dx, dy in ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)):
        intrinsics = views.intrinsics.clone()
        intrinsics[:, 2] -= dx - 0.5
        intrinsics[:, 3] -= dy - 0.5
        moved = dataclasses.replace(views, intrinsics=intrinsics)
        shifted.append(inference.render_views(run, moved)[0])
    for name in ("rgb", "depth", "opacity"):
        expected = np.mean([getattr(frame, name) for frame in shifted], axis=0)
        np.testing.assert_allclose(getattr(supersampled, name), expected, atol=1e-5)
    centre = inference.render_views(run, views)[0]
    assert np.abs(supersampled.rgb - centre.rgb).max() > 1e-3
    with pytest.raises(ConfigError, match="supersample"):
        inference.render_views(run, views, supersample=0)


@pytest.mark.parametrize("rounds", [(), (1,), (1, 3), (2, 5, 9)])
def test_density_rounds_render_what_evaluating_every_sample_renders(tiny_run, monkeypatch, rounds):
    run = load_run(tiny_run)
    features = run.field.features
    evaluated = []
    lo, hi = (torch.tensor(b, dtype=torch.float32) for b in run.grid.bounds)

    def denser_features(x):
        # Raw density raised by -2 to 10 along x: rays turn opaque after one sample, after many,
        # or never.
        evaluated.append(x.shape[0])
        out = features(x)
        raise_by = 12.0 * (x[:, :1] - lo[0]) / (hi[0] - lo[0]) - 2.0
        return torch.cat([out[:, :1] + raise_by, out[:, 1:]], dim=1)

    monkeypatch.setattr(run.field, "features", denser_features)
    monkeypatch.setattr(volume, "DENSITY_ROUNDS", rounds)
    g = torch.Generator().manual_seed(0)
    targets = lo + (hi - lo) * torch.rand(300, 3, generator=g)
    origins = targets + 2.0 * (hi - lo).max() * torch.nn.functional.normalize(torch.randn(300, 3, generator=g), dim=1)
    directions = torch.nn.functional.normalize(targets - origins, dim=1)
    background = torch.tensor([0.2, 0.5, 0.9])
    config = run.marching_config()
    rgb, depth, opacity = inference.render_image(run.field, run.grid, origins, directions, near=0.0, far=10.0,
                                                 background=background, marching=config, chunk=128)
    rendered = sum(evaluated)

    samples = volume.march(run.grid, origins, directions, near=0.0, far=10.0, config=config)
    every = denser_features(samples.positions)
    reference = volume.composite_samples(density_from_raw(every[:, 0]), run.field.colour(every, samples.directions),
                                         samples, background, config)
    torch.testing.assert_close(rgb, reference.rgb.detach(), atol=1e-6, rtol=0)
    torch.testing.assert_close(depth, reference.depth.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(opacity, reference.opacity.detach(), atol=1e-6, rtol=0)
    assert reference.opacity.max() > 0.99 and samples.n_samples > 2 * 300
    if rounds:  # rays that turned opaque early were not evaluated to their end
        assert rendered < 0.8 * samples.n_samples, (rendered, samples.n_samples)
    else:
        assert rendered == samples.n_samples


def test_eval_records_its_supersampling(tiny_run):
    _invoke("eval", "--run", tiny_run, "--views", 1, "--no-images", "--supersample", 2)
    result = json.loads((tiny_run / "eval" / "metrics.json").read_text())
    assert result["supersample"] == 2 and math.isfinite(result["psnr_db"])


def gt_is_white_behind_the_object(path) -> bool:
    """Whether the corners of a ground-truth PNG (empty space in the demo scene) are white."""
    image = np.asarray(Image.open(path), dtype=np.float64) / 255
    corners = image[[0, 0, -1, -1], [0, -1, 0, -1]]
    return bool((corners > 0.95).all())


def test_plot_of_psnr_against_time_is_a_png(tiny_run, tmp_path):
    records = [{"step": s, "elapsed_s": 2.0 * s, "val_psnr_db": 20.0 + s} for s in range(1, 4)]
    out = plot_psnr_vs_time([tiny_run, ("synthetic", records)], tmp_path / "plots" / "psnr.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(out).size[0] > 100
    _invoke("info", tiny_run, "--plot", tmp_path / "cli.png")
    assert (tmp_path / "cli.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latest_run_is_the_last_written_checkpoint(tmp_path):
    for name, age in (("old", 100), ("new", 0)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "checkpoint.pt").write_bytes(b"")
        os.utime(tmp_path / name / "checkpoint.pt", (time.time() - age, time.time() - age))
    assert latest_run(tmp_path) == tmp_path / "new"


def test_teacher_chain_follows_recorded_provenance(tmp_path):
    config = {"teacher": {"path": str(tmp_path), "model": "vm", "val_psnr_db": 30.0,
                          "provenance": {"path": "/gone", "model": "hash", "val_psnr_db": 33.0,
                                         "provenance": None}}}
    chain = teacher_chain(config)
    assert [(t.model, t.val_psnr_db, t.exists) for t in chain] == [("vm", 30.0, True), ("hash", 33.0, False)]


def test_depth_colouring_runs_from_bright_near_to_dark_far():
    depth = np.array([[2.0, 6.0, 0.0]])
    opacity = np.array([[1.0, 1.0, 0.0]])
    colours = colour_depth(depth, opacity, near=2.0, far=6.0)
    assert colours[0, 0].sum() > 1.5 and colours[0, 1].sum() < 0.7
    np.testing.assert_array_equal(colours[0, 2], 0.0)


def test_log_depth_colouring_puts_the_geometric_mean_of_near_and_far_midway():
    depth = np.array([[0.05, 1000.0, np.sqrt(0.05 * 1000.0)]])
    log_colours = colour_depth(depth, np.ones((1, 3)), near=0.05, far=1000.0, log_scale=True)
    midway = colour_depth(np.array([[0.5]]), np.ones((1, 1)), near=0.0, far=1.0)
    np.testing.assert_allclose(log_colours[0, 2], midway[0, 0], atol=1e-6)
    assert log_colours[0, 0].sum() > 1.5 and log_colours[0, 1].sum() < 0.7
    with pytest.raises(ConfigError, match="log scale"):
        colour_depth(depth, np.ones((1, 3)), near=0.0, far=1000.0, log_scale=True)


def test_error_maps_are_black_where_the_prediction_is_right():
    target = np.random.default_rng(0).random((4, 5, 3))
    wrong = target.copy()
    wrong[0, 0] = 1.0 - wrong[0, 0]
    np.testing.assert_array_equal(error_heatmap(target, target), 0.0)
    both = error_comparison(wrong, target, target)
    assert both[0, 0, 0] > 0 and both[0, 0, 1] == 0 and both[1:].max() == 0


def test_side_by_side_keeps_height_and_adds_widths():
    panels = [np.zeros((40, 30, 3)), np.ones((40, 20, 3), dtype=np.float32)]
    out = side_by_side(panels, ["a", "b"])
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    assert out[-1, 0].tolist() == [0, 0, 0] and out[-1, -1].tolist() == [255, 255, 255]
    assert out[:12, 30:].min() == 0  # the caption's dark box over the white panel


@pytest.mark.parametrize("size", ["0x5", "12x", "12x10x2", "wide"])
def test_render_refuses_a_size_that_is_not_width_x_height(tiny_run, tmp_path, size):
    result = CliRunner().invoke(main, ["render", "--run", str(tiny_run), "--size", size, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--size" in result.output and "640x480" in result.output
    assert not (tmp_path / "out").exists()


def test_spiral_render_writes_the_requested_frames(tiny_run, tmp_path):
    out = tmp_path / "spiral"
    _invoke("render", "--run", tiny_run, "--path", "spiral", "--frames", 2, "--size", "12x10", "--out", out)
    assert _frame_sizes(out / "frames") == [(12, 10)] * 2


def test_other_frame_sizes_keep_square_pixels_and_the_horizontal_view(tiny_run):
    rig = load_run(tiny_run).camera_rig()
    fx, fy, cx, cy = view_sets.rig_intrinsics(rig, 1, 2 * rig.width, rig.height)[0].tolist()
    assert fx == pytest.approx(2 * rig.fx) and fy == pytest.approx(2 * rig.fy)
    assert cx == pytest.approx(2 * rig.cx) and cy == pytest.approx(rig.cy)


def test_lpips_is_skipped_without_the_package_or_its_weights(monkeypatch, tmp_path):
    from taichi_pvd.evaluation import load_lpips

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setitem(sys.modules, "lpips", _fake_lpips_module())
    fn, note = load_lpips(torch.device("cpu"))
    assert fn is None and "AlexNet weights" in note and "never downloaded" in note


def test_lpips_gets_nchw_images_in_minus_one_to_one(monkeypatch, tmp_path):
    from taichi_pvd.evaluation import load_lpips

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth").write_bytes(b"")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setitem(sys.modules, "lpips", _fake_lpips_module())
    fn, _ = load_lpips(torch.device("cpu"))
    pred, target = np.zeros((6, 5, 3), np.float32), np.full((6, 5, 3), 0.25, np.float32)
    assert fn(pred, target) == pytest.approx(0.5)


def _fake_lpips_module():
    """Stands in for the lpips package: its distance is the mean absolute difference of the
    inputs, which must be [1, 3, H, W] in [-1, 1]."""

    class LPIPS(torch.nn.Module):
        def __init__(self, net, verbose):
            super().__init__()
            assert net == "alex" and verbose is False

        def forward(self, a, b):
            assert a.shape[:2] == (1, 3) and b.shape == a.shape
            assert a.min() >= -1 and a.max() <= 1
            return (a - b).abs().mean().reshape(1, 1, 1, 1)

    module = types.ModuleType("lpips")
    module.__spec__ = importlib.machinery.ModuleSpec("lpips", None)
    module.LPIPS = LPIPS
    return module
