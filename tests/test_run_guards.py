"""Runs that cannot work are refused before they start, with one ``Error:`` line and exit code
2, and nothing written or lost: poses from which no ray reaches the scene, sizes that cannot fit
in memory, unreadable pose files, unknown nested options, a scene written over another. A step
whose few rays all miss the scene is skipped, not a crash."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from taichi_pvd.data.demo import write_demo_scene, write_forward_facing_demo
from taichi_pvd.data.rays import views_hitting_box
from taichi_pvd.data import load_scene
from taichi_pvd.io.runs import CHECKPOINT_NAME, METRICS_NAME
from tests.cli_checks import assert_user_error, invoke

TINY_HASH = ["--set", "log2_table_size=10", "--set", "n_levels=2", "--set", "finest_resolution=32"]
TINY_RUN = ["--steps", "3", "--batch-rays", "64", "--val-every", "0", "--checkpoint-every", "0",
            "--grid-resolution", "16"]


@pytest.fixture(autouse=True)
def _cpu(monkeypatch):
    monkeypatch.setenv("PVD_ARCH", "cpu")


@pytest.fixture(scope="module")
def scene_template(tmp_path_factory):
    return write_demo_scene(tmp_path_factory.mktemp("guards") / "scene", size=16, n_train=4, n_val=1, n_test=1)


@pytest.fixture
def scene(scene_template, tmp_path):
    return Path(shutil.copytree(scene_template, tmp_path / "scene"))






def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- poses from which no ray reaches the scene box (item 2) -------------------------------------


def _rows(meta):
    for frame in meta["frames"]:
        yield from frame["transform_matrix"][:3]


def _opencv_axes(meta):
    for row in _rows(meta):
        row[1], row[2] = -row[1], -row[2]


def _facing_away(meta):
    for row in _rows(meta):
        row[0], row[2] = -row[0], -row[2]


def _thousand_times_too_far(meta):
    for row in _rows(meta):
        row[3] *= 1000


def _field_of_view_near_pi(meta):
    meta["camera_angle_x"] = 3.14


WRONG_POSES = {"opencv axes": _opencv_axes, "facing away": _facing_away,
               "1000x too far": _thousand_times_too_far, "camera_angle_x near pi": _field_of_view_near_pi}


def _rewrite_poses(scene: Path, fix) -> None:
    for split in ("train", "val", "test"):
        path = scene / f"transforms_{split}.json"
        meta = json.loads(path.read_text())
        fix(meta)
        path.write_text(json.dumps(meta))


@pytest.mark.parametrize("mistake", WRONG_POSES)
def test_poses_that_miss_the_scene_box_are_refused_with_one_message(scene, tmp_path, mistake):
    _rewrite_poses(scene, WRONG_POSES[mistake])
    result = invoke("train", "--data", scene, "--out", tmp_path / "run", "--model", "grid",
                     "--set", "resolution=16", *TINY_RUN)
    assert_user_error(result, "no ray of the 4 training views hits the scene box", "check the pose convention")
    assert not (tmp_path / "run" / CHECKPOINT_NAME).exists()
    assert not (tmp_path / "run" / METRICS_NAME).exists()


def test_opencv_poses_are_refused_for_every_architecture_that_would_train_on_nothing(scene, tmp_path):
    _rewrite_poses(scene, _opencv_axes)
    for model, options in (("vm", ["--set", "resolution_init=8", "--set", "resolution_final=8"]),
                           ("hash", TINY_HASH)):
        result = invoke("train", "--data", scene, "--out", tmp_path / model, "--model", model, *options, *TINY_RUN)
        assert_user_error(result, "no ray of the 4 training views hits the scene box")


def test_views_hitting_box_counts_the_views_that_see_the_scene(scene):
    assert views_hitting_box(load_scene(scene, "train")) == 4
    _rewrite_poses(scene, _opencv_axes)
    assert views_hitting_box(load_scene(scene, "train")) == 0


@pytest.mark.parametrize("batch_rays", [1, 8])
def test_steps_whose_few_rays_all_miss_the_scene_are_skipped(scene, tmp_path, batch_rays):
    result = invoke("train", "--data", scene, "--out", tmp_path / "run", *TINY_HASH, "--steps", "30",
                     "--batch-rays", batch_rays, "--val-every", "0", "--checkpoint-every", "0",
                     "--grid-resolution", "16")
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert json.loads((tmp_path / "run" / METRICS_NAME).read_text())["steps"] == 30


# -- sizes that cannot fit (item 7) ---------------------------------------------------------------


@pytest.mark.parametrize("args, fragment", [
    (["--batch-rays", "1000000000"], "--batch-rays 1000000000 needs about"),
    (["--grid-resolution", "100000"], "--grid-resolution 100000 needs about"),
    (["--set", "log2_table_size=60"], "--set log2_table_size=60 needs about"),
])
def test_a_hash_run_too_large_for_memory_is_refused_with_the_figure(scene, tmp_path, args, fragment):
    result = invoke("train", "--data", scene, "--out", tmp_path / "run", *TINY_HASH, *TINY_RUN, *args)
    line = assert_user_error(result, fragment, "of memory, more than the", "available in RAM")
    assert "iB" in line
    assert not (tmp_path / "run").exists()


def test_a_run_too_large_for_memory_leaves_the_run_it_would_overwrite(scene, tmp_path):
    trained = invoke("train", "--data", scene, "--out", tmp_path / "run", *TINY_HASH, *TINY_RUN)
    assert trained.exit_code == 0, trained.output
    before = _digest(tmp_path / "run")
    result = invoke("train", "--data", scene, "--out", tmp_path / "run", *TINY_HASH, *TINY_RUN,
                     "--batch-rays", "1000000000", "--overwrite")
    assert_user_error(result, "--batch-rays 1000000000 needs about")
    assert _digest(tmp_path / "run") == before

    result = invoke("distill", "--teacher", tmp_path / "run", "--to", "grid", "--out", tmp_path / "student",
                     "--batch-rays", "1000000000")
    assert_user_error(result, "--batch-rays 1000000000 needs about")
    assert not (tmp_path / "student").exists()
    assert _digest(tmp_path / "run") == before


@pytest.mark.parametrize("model, option", [("grid", "resolution=100000"), ("vm", "resolution_final=1000000"),
                                           ("mlp", "width=10000000")])
def test_a_field_too_large_for_memory_is_refused_before_it_is_allocated(scene, tmp_path, model, option):
    result = invoke("train", "--data", scene, "--out", tmp_path / "run", "--model", model, "--set", option,
                     *TINY_RUN)
    assert_user_error(result, f"--set {option} needs about", "available in RAM")


def test_a_demo_scene_too_large_for_memory_is_refused_and_leaves_no_folder(tmp_path):
    result = invoke("scene", "demo", "--out", tmp_path / "big", "--size", "100000")
    assert_user_error(result, "--size 100000 needs about", "available in RAM")
    assert list(tmp_path.iterdir()) == []


def test_a_render_size_too_large_for_memory_is_refused_before_writing(scene, tmp_path):
    trained = invoke("train", "--data", scene, "--out", tmp_path / "run", *TINY_HASH, *TINY_RUN)
    assert trained.exit_code == 0, trained.output
    before = _digest(tmp_path / "run")
    result = invoke("render", "--run", tmp_path / "run", "--size", "100000x100000", "--out", tmp_path / "frames")
    assert_user_error(result, "--size 100000x100000 needs about", "available in RAM")
    assert not (tmp_path / "frames").exists()
    assert _digest(tmp_path / "run") == before


# -- other crashes (item 8) -----------------------------------------------------------------------


def test_an_empty_poses_bounds_file_is_a_scene_error_in_a_real_process(tmp_path):
    scene = write_forward_facing_demo(tmp_path / "ff", width=16, height=12, rows=2, cols=2)
    (scene / "poses_bounds.npy").write_bytes(b"")
    done = subprocess.run([sys.executable, "-m", "taichi_pvd_cli", "train", "--data", str(scene),
                           "--out", str(tmp_path / "run"), "--steps", "2"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PVD_ARCH": "cpu"})
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "cannot read" in errors[0] and "poses_bounds.npy" in errors[0], done.stderr
    assert "Aborted" not in done.stderr


@pytest.mark.parametrize("value, fragment", [
    ('marching={"bogus": 1}', "unknown key(s) in training option marching: bogus; known: cone_angle"),
    ('marching={"steps_across_box": "many"}', "steps_across_box='many' should be an integer"),
    ("marching=5", "marching=5 should be a set of key=value options"),
])
def test_nested_training_options_are_checked_against_their_schema(scene, tmp_path, value, fragment):
    result = invoke("train", "--data", scene, "--out", tmp_path / "run", *TINY_HASH, *TINY_RUN,
                     "--train-set", value)
    assert_user_error(result, fragment)
    assert not (tmp_path / "run").exists()


def test_an_unknown_nested_distillation_option_is_refused():
    from taichi_pvd.distill.config import DistillConfig
    from taichi_pvd.errors import ConfigError
    from taichi_pvd.option_types import config_with_options

    with pytest.raises(ConfigError, match=r"unknown key\(s\) in distillation option marching: bogus"):
        config_with_options(DistillConfig, {"marching": {"bogus": 1}}, "distillation option")


@pytest.mark.parametrize("command", [["demo", "--size", "8"], ["unbounded", "--size", "8"],
                                     ["forward-facing", "--width", "8", "--height", "8"]])
def test_a_scene_is_never_written_over_another(scene, command):
    before = _digest(scene)
    result = invoke("scene", *command, "--out", scene, "--n-train" if command[0] != "forward-facing" else "--rows",
                     "2")
    assert_user_error(result, f"{scene} already exists and is not empty: choose another --out folder")
    assert _digest(scene) == before


def test_a_scene_may_be_written_into_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("scene", "demo", "--out", tmp_path / "empty", "--size", "8", "--n-train", "2",
                     "--n-val", "1", "--n-test", "1")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "empty" / "transforms_train.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]
