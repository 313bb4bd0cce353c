"""`pvd-ti demo` end to end on a tiny preset; the preset and folder rules behind it; torch threads
on the CPU backend."""

from __future__ import annotations

import json
import os

import pytest
import torch
from click.testing import CliRunner

from taichi_pvd_cli.main import main
from taichi_pvd import backend
from taichi_pvd.demo_job import DemoPaths, prepare_demo_dir
from taichi_pvd.errors import ConfigError
from taichi_pvd.io.runs import CHECKPOINT_NAME, METRICS_NAME, load_run
from taichi_pvd.presets import CPU, FULL, get_preset, training_preset

#: A preset small enough for a test: 32x32 scene, a few hundred steps, coarse grids.
TINY = ["--size", "32", "--steps", "300", "--batch-rays", "512", "--distill-steps", "200", "--frames", "3",
        "--train-set", "grid_resolution=32", "--train-set", "val_every=0", "--distill-set", "val_every=0",
        "--set", "log2_table_size=12", "--set", "finest_resolution=64", "--student-set", "resolution=32"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One tiny `pvd-ti demo` through the CLI, in its own cache and output folder."""
    root = tmp_path_factory.mktemp("demo")
    out = root / "demo"
    result = CliRunner().invoke(main, ["--arch", "cpu", "demo", "--out", str(out), *TINY],
                                env={"PVD_CACHE": str(root / "cache")})
    return result, DemoPaths.under(out)


def test_demo_writes_every_promised_file(demo_run):
    result, paths = demo_run
    assert result.exit_code == 0, result.output
    for run in (paths.teacher, paths.student):
        assert (run / CHECKPOINT_NAME).is_file()
        metrics = json.loads((run / METRICS_NAME).read_text())
        assert metrics["test_views"] == 16
        assert sorted(p.name for p in (run / "eval" / "test").glob("*-pred.png"))[0] == "000-pred.png"
    assert load_run(paths.teacher).model == "hash"
    assert load_run(paths.student).model == "grid"
    videos = [p for p in paths.orbit.iterdir() if p.is_file() and p.stem in ("video", "depth")]
    assert sorted(p.stem for p in videos) == ["depth", "video"] and all(p.stat().st_size > 0 for p in videos)
    assert len(list((paths.orbit / "frames").glob("*.png"))) == 3
    summary = json.loads(paths.summary.read_text())
    assert summary["files"]["video"] in {str(p) for p in videos}
    assert summary["preset"]["scene_size"] == 32 and summary["preset"]["name"] == "cpu+overrides"
    assert set(summary["first_step_seconds"]) == {"teacher", "student"}


def test_demo_prints_both_psnrs_that_match_the_runs(demo_run):
    result, paths = demo_run
    summary = json.loads(paths.summary.read_text())
    for role, run in (("teacher", paths.teacher), ("student", paths.student)):
        psnr = json.loads((run / METRICS_NAME).read_text())["test_psnr_db"]
        assert summary[f"{role}_test_psnr_db"] == pytest.approx(psnr)
        assert f"{psnr:.2f} dB" in result.output
    assert "first step" in result.output and str(paths.summary) in result.output


def test_student_is_within_a_few_db_of_its_teacher(demo_run):
    _, paths = demo_run
    summary = json.loads(paths.summary.read_text())
    teacher, student = summary["teacher_test_psnr_db"], summary["student_test_psnr_db"]
    assert teacher > 18.0, "the tiny teacher learned nothing"
    assert student > teacher - 4.0


def test_a_folder_with_other_files_is_refused_untouched(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="notes.txt"):
        prepare_demo_dir(DemoPaths.under(tmp_path))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_an_earlier_demo_is_replaced(tmp_path):
    paths = DemoPaths.under(tmp_path)
    (paths.teacher / "eval").mkdir(parents=True)
    paths.summary.write_text("{}")
    assert prepare_demo_dir(paths) is True
    assert list(tmp_path.iterdir()) == []


def test_overrides_go_on_top_of_the_preset_and_rename_it():
    changed = CPU.with_overrides(train={"steps": 7, "batch_rays": None, "marching": {"cone_angle": 0.01}},
                                 fields={"hash": {"n_levels": 4}})
    assert changed.name == "cpu+overrides"
    assert changed.train["steps"] == 7 and changed.train["batch_rays"] == CPU.train["batch_rays"]
    assert changed.train["marching"] == {**CPU.train["marching"], "cone_angle": 0.01}
    assert changed.fields["hash"] == {**CPU.fields["hash"], "n_levels": 4}
    assert CPU.with_overrides(train={"steps": None}) is CPU


def test_presets_follow_the_hardware_on_the_demo_scene_only():
    assert get_preset("auto") is CPU  # the tests run on the CPU backend
    assert training_preset(None, demo_scene=True) is CPU
    assert training_preset(None, demo_scene=False) is FULL
    assert training_preset("full", demo_scene=True) is FULL
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("huge")


@pytest.mark.skipif("OMP_NUM_THREADS" in os.environ or "PVD_TORCH_THREADS" in os.environ,
                    reason="the environment chooses torch's threads")
def test_the_cpu_backend_runs_torch_on_one_thread():
    assert backend.init("cpu") == "cpu"
    assert torch.get_num_threads() == backend.CPU_TORCH_THREADS == 1


def test_a_bad_torch_thread_count_is_refused(monkeypatch):
    monkeypatch.setenv("PVD_TORCH_THREADS", "two")
    with pytest.raises(backend.BackendError, match="PVD_TORCH_THREADS"):
        backend._cpu_torch_threads()
    monkeypatch.setenv("PVD_TORCH_THREADS", "3")
    assert backend._cpu_torch_threads() == 3
