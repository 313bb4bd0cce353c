"""Signals are answered within a couple of seconds wherever the time goes: in a long final
validation render of ``pvd-ti train`` (the run saves and stops), and in ``pvd-ti eval``.

Each command runs in its own process, as a user runs it; a one-line wrapper prints a marker
when the slow part starts, so the signal lands inside it."""

import os
import signal
import subprocess
import sys
import time

import pytest

from taichi_pvd.data.demo import write_demo_scene
from taichi_pvd.io.checkpoint import load_checkpoint
from taichi_pvd.io.runs import checkpoint_path

TINY = ["--set", "log2_table_size=10", "--set", "n_levels=2", "--set", "finest_resolution=32",
        "--batch-rays", "64", "--val-every", "0", "--checkpoint-every", "0", "--grid-resolution", "16"]
#: A bound generous for a loaded machine: the work is cut into pieces of about a second.
ANSWER_WITHIN_S = 10.0

#: Runs ``pvd-ti`` with ``owner.name`` (a function of ``module``, or a method of its class
#: ``owner``) wrapped to print MARK when called.
DRIVER = """
import importlib, sys
module, owner, name = sys.argv[1:4]
target = importlib.import_module(module)
target = getattr(target, owner) if owner else target
original = getattr(target, name)
def marked(*args, **kwargs):
    print("MARK", flush=True)
    return original(*args, **kwargs)
setattr(target, name, marked)
sys.argv = ["pvd-ti", *sys.argv[4:]]
from taichi_pvd_cli.main import main
main()
"""


def _signal_when_marked(marked: tuple[str, str, str], args: list[str], signum: int) -> tuple[int, float, str]:
    """Run ``pvd-ti args`` with ``marked`` wrapped, send ``signum`` a second after the marker;
    returns the exit code, the seconds it took to exit after the signal, and the output."""
    env = {**os.environ, "PVD_ARCH": "cpu", "COLUMNS": "400"}
    process = subprocess.Popen([sys.executable, "-c", DRIVER, *marked, *[str(a) for a in args]],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    output = b""
    try:
        while b"MARK" not in output:
            piece = process.stdout.read1(4096)
            if not piece:
                break
            output += piece
        assert b"MARK" in output, output.decode()
        time.sleep(1.0)
        assert process.poll() is None, "the slow part ended before the signal: make it slower"
        process.send_signal(signum)
        sent = time.monotonic()
        output += process.stdout.read()
        code = process.wait(timeout=120)
        return code, time.monotonic() - sent, output.decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def big_scene(tmp_path_factory):
    """Views large enough that rendering one at fine marching takes a minute on a CPU."""
    return write_demo_scene(tmp_path_factory.mktemp("signals") / "scene", size=192, n_train=2, n_val=1, n_test=1)


def test_sigterm_during_the_final_validation_saves_and_stops_within_seconds(big_scene, tmp_path):
    out = tmp_path / "run"
    fine = 'marching={"steps_across_box": 4096, "max_samples_per_ray": 4096}'
    code, took, output = _signal_when_marked(
        ("taichi_pvd.training.trainer", "Trainer", "validate"),
        ["train", "--data", big_scene, "--out", out, *TINY, "--steps", "2", "--train-set", fine], signal.SIGTERM)
    assert code in (130, 143), output
    assert took < ANSWER_WITHIN_S, f"answered after {took:.1f} s"
    assert "Traceback" not in output
    assert f"stopped at step 2: checkpoint saved in {out}" in output
    assert load_checkpoint(checkpoint_path(out)).meta["step"] == 2


@pytest.mark.parametrize("command", [["eval", "--supersample", "32", "--no-images"],
                                     ["render", "--path", "orbit", "--frames", "2", "--size", "1024x1024"]])
def test_ctrl_c_during_eval_or_render_stops_within_seconds(tmp_path, command):
    small = write_demo_scene(tmp_path / "small", size=16, n_train=2, n_val=1, n_test=1)
    out = tmp_path / "run"
    # The library's default hash field, as a real run has.
    trained = subprocess.run([sys.executable, "-m", "taichi_pvd_cli", "train", "--data", str(small), "--out", str(out),
                              *TINY[6:], "--steps", "2"], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PVD_ARCH": "cpu"})
    assert trained.returncode == 0, trained.stderr
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, took, output = _signal_when_marked(
        ("taichi_pvd.rendering.inference", "", "render_image"),
        [*command, "--run", out, *(["--out", tmp_path / "frames"] if command[0] == "render" else [])],
        signal.SIGINT)
    assert code == 130, output
    assert took < ANSWER_WITHIN_S, f"answered after {took:.1f} s"
    assert "Traceback" not in output
    assert {p: p.read_bytes() for p in before} == before


# -- a CPU run that will obviously take long says so up front -----------------------------------


def _train_cli(scene, out, *extra):
    from click.testing import CliRunner

    from taichi_pvd_cli.main import main

    return CliRunner().invoke(main, ["train", "--data", str(scene), "--out", str(out), *TINY, "--steps", "2", *extra])


def test_a_long_cpu_run_says_so_with_an_estimate_and_the_cpu_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("PVD_ARCH", "cpu")
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setattr("taichi_pvd.training.trainer.LONG_CPU_RUN_S", 0.0)
    scene = write_demo_scene(tmp_path / "scene", size=16, n_train=2, n_val=1, n_test=1)
    result = _train_cli(scene, tmp_path / "run", "--preset", "full")
    assert result.exit_code == 0, result.output
    hints = [line for line in result.output.splitlines() if line.startswith("hint: on the CPU this run will take about")]
    assert len(hints) == 1, result.output
    assert "of training" in hints[0] and "of validation renders" in hints[0] and hints[0].endswith("try --preset cpu")


def test_a_cpu_run_on_the_cpu_preset_is_not_told_to_use_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PVD_ARCH", "cpu")
    monkeypatch.setattr("taichi_pvd.training.trainer.LONG_CPU_RUN_S", 0.0)
    scene = write_demo_scene(tmp_path / "scene", size=16, n_train=2, n_val=1, n_test=1)
    result = _train_cli(scene, tmp_path / "run", "--preset", "cpu")
    assert result.exit_code == 0, result.output
    assert "on the CPU this run will take" not in result.output


def test_the_time_estimate_grows_with_the_steps_and_leaves_the_run_unchanged(tmp_path):
    import torch

    from taichi_pvd.data import load_scene
    from taichi_pvd.fields import make_field
    from taichi_pvd.training.config import TrainConfig
    from taichi_pvd.training.trainer import Trainer

    scene_dir = write_demo_scene(tmp_path / "scene", size=16, n_train=2, n_val=1, n_test=1)
    scene, val = load_scene(scene_dir, "train"), load_scene(scene_dir, "val")

    def trainer(steps):
        field = make_field("hash", scene.aabb, {"log2_table_size": 10, "n_levels": 2, "finest_resolution": 32},
                           generator=torch.Generator().manual_seed(0))
        return Trainer(field, scene, val, TrainConfig(steps=steps, batch_rays=64, grid_resolution=16, val_every=0),
                       tmp_path / f"run{steps}")

    short, long = trainer(10), trainer(10**6)
    state = short.generator.get_state()
    short_training, short_validation = short.estimated_seconds()
    long_training, long_validation = long.estimated_seconds()
    assert 0 < short_training < long_training and short_validation > 0 and long_validation > 0
    assert torch.equal(short.generator.get_state(), state)
