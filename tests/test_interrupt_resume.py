"""No work lost: an interrupted run saves a checkpoint and, resumed, ends bit-for-bit where an
uninterrupted run ends; a seeded CPU run is reproducible; NaN stops a run keeping the last good
checkpoint.

Bit-for-bit comparisons need a deterministic backend (Taichi on one CPU thread: the backward
kernels' float atomic adds otherwise land in a varying order), which cannot be switched on in
this already-started test process. The runs are therefore produced by one helper process
started with ``PVD_DETERMINISTIC=1`` (:func:`produce_runs`), alongside a ``pvd-ti train --seed``
process that gets determinism from ``--seed`` alone; the tests compare their checkpoints.
"""

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from taichi_pvd_cli.main import main
from taichi_pvd.data.demo import write_demo_scene
from taichi_pvd.distill.api import distill
from taichi_pvd.distill.distiller import Distiller
from taichi_pvd.errors import TrainingDiverged
from taichi_pvd.io.checkpoint import load_checkpoint
from taichi_pvd.io.runs import METRICS_NAME, checkpoint_path
from taichi_pvd.training.api import train
from taichi_pvd.training.interrupts import request_stop
from taichi_pvd.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
HASH = {"log2_table_size": 10, "n_levels": 2, "finest_resolution": 32}
#: 10 steps with occupancy updates every 4: interruptions land between, and next to, updates.
TRAIN = {"steps": 10, "batch_rays": 64, "val_every": 0, "checkpoint_every": 0, "seed": 3,
         "grid_resolution": 16, "grid_update_every": 4, "marching": {"steps_across_box": 64}}
#: Stages 1, 2 and 3 all run within 8 steps, stage 3 from step 2: its label block (steps 2-7)
#: holds both interruptions, so the resumed run must redraw the block it stopped in.
DISTILL = {"steps": 8, "stage1_steps": 1, "stage2_steps": 1, "batch_rays": 64, "val_every": 0,
           "checkpoint_every": 0, "seed": 5, "virtual_cameras": 20, "val_views": 1, "val_size": 12}
#: Run name, step and kind of each interruption (see :func:`_interrupt`). Occupancy updates
#: happen at steps 0, 4 and 8.
INTERRUPTIONS = {
    "train": [("train-keyboard-interrupt", 3, "keyboard-interrupt"), ("train-ctrl-c", 4, "sigint"),
              ("train-stop-request", 6, "request")],
    "distill": [("distill-keyboard-interrupt", 3, "keyboard-interrupt"), ("distill-ctrl-c", 4, "sigint")],
}
#: TRAIN with a moving average of the parameters: the checkpoint's field holds the average and
#: a resumed run must continue from the trained values.
TRAIN_EMA = {**TRAIN, "ema_decay": 0.7}
#: The tiny hash field (HASH) as `pvd-ti train` options.
CLI_FIELD = ["--set", "log2_table_size=10", "--set", "n_levels=2", "--set", "finest_resolution=32"]
#: What `pvd-ti train` runs with these options (default marching; with 256 rays, two runs on
#: several Taichi threads already differ) ...
CLI_ARGS = [*CLI_FIELD, "--steps", "3", "--batch-rays", "256", "--val-every", "0", "--checkpoint-every", "0",
            "--grid-resolution", "16", "--seed", "7"]
#: ... and the same through the library.
CLI_EQUIVALENT = {"steps": 3, "batch_rays": 256, "val_every": 0, "checkpoint_every": 0,
                  "grid_resolution": 16, "seed": 7}


# -- the helper process ------------------------------------------------------------------------


@contextlib.contextmanager
def _interrupt(loop_class, at_step: int, how: str):
    """Interrupt runs of ``loop_class`` at step ``at_step`` (0-based).

    ``"keyboard-interrupt"``: KeyboardInterrupt raised as the step starts (as a callback or a
    second Ctrl-C would); the state of ``at_step`` whole steps is saved. ``"sigint"``: a real
    Ctrl-C in the middle of the step, after its batch was drawn and before its backward pass;
    ``"request"``: :func:`request_stop` at the same point. In both, the step is finished and
    ``at_step + 1`` steps are saved.
    """
    # The method each loop calls once a step, after drawing its batch and before its backward
    # pass: the trainer's loss, the distiller's labels of the step.
    name = "step_labels" if loop_class is Distiller else "train_step"
    original = getattr(loop_class, name)

    def interrupted(self, *args):
        if how == "keyboard-interrupt" and self.step == at_step:
            raise KeyboardInterrupt
        result = original(self, *args)
        if how == "sigint" and self.step == at_step:
            signal.raise_signal(signal.SIGINT)
        elif how == "request" and self.step == at_step:
            request_stop()
        return result

    setattr(loop_class, name, interrupted)
    try:
        yield
    finally:
        setattr(loop_class, name, original)


def _interrupted_then_resumed(run, out: Path, loop_class, at_step: int, how: str) -> dict:
    """Run ``run(out, resume)`` interrupted as :func:`_interrupt` says, record what the
    interruption left, then resume to the end."""
    record = {"interrupted": False}
    with _interrupt(loop_class, at_step, how):
        try:
            run(out, False)
        except KeyboardInterrupt:
            record["interrupted"] = True
    record["saved_step"] = load_checkpoint(checkpoint_path(out)).meta["step"]
    record["metrics_written"] = (out / METRICS_NAME).exists()
    run(out, True)
    return record


def produce_runs(root: str) -> None:
    """Write every run the tests compare under ``root`` plus ``root/record.json``. Runs in a
    process started with ``PVD_DETERMINISTIC=1``."""
    from taichi_pvd import backend

    assert backend.init("cpu") == "cpu" and backend.is_deterministic()
    root = Path(root)
    scene = write_demo_scene(root / "scene", size=16, n_train=4, n_val=1, n_test=1)

    def trained(out, resume, overrides=TRAIN):
        train(data=scene, model="hash", out=out, field_overrides=HASH, train_overrides=overrides,
              resume=resume)

    def distilled(out, resume):
        distill(source="hash", target="hash", teacher=root / "train", out=out, student_overrides=HASH,
                distill_overrides=DISTILL, resume=resume)

    record = {}
    trained(root / "cli-equivalent", False, CLI_EQUIVALENT)
    trained(root / "train", False)
    trained(root / "train-again", False)
    for name, at_step, how in INTERRUPTIONS["train"]:
        record[name] = _interrupted_then_resumed(trained, root / name, Trainer, at_step, how)
    trained(root / "train-ema", False, TRAIN_EMA)
    record["train-ema-ctrl-c"] = _interrupted_then_resumed(
        lambda out, resume: trained(out, resume, TRAIN_EMA), root / "train-ema-ctrl-c", Trainer, 4, "sigint")
    distilled(root / "distill", False)
    for name, at_step, how in INTERRUPTIONS["distill"]:
        record[name] = _interrupted_then_resumed(distilled, root / name, Distiller, at_step, how)
    (root / "record.json").write_text(json.dumps(record))


# -- the tests -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The helper process's runs and record, and the `pvd-ti train --seed` run made meanwhile."""
    root = tmp_path_factory.mktemp("deterministic")
    # One torch thread: equal thread counts in both processes, and no oversubscription of a
    # busy machine (which slows these tiny steps a hundredfold).
    env = {**os.environ, "PVD_ARCH": "cpu", "PVD_DETERMINISTIC": "1", "OMP_NUM_THREADS": "1"}
    helper = subprocess.Popen(
        [sys.executable, "-c", f"from tests.test_interrupt_resume import produce_runs; produce_runs({str(root)!r})"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cli_root = tmp_path_factory.mktemp("cli")
    cli_scene = write_demo_scene(cli_root / "scene", size=16, n_train=4, n_val=1, n_test=1)
    cli_env = {k: v for k, v in env.items() if k != "PVD_DETERMINISTIC"}
    cli = subprocess.run(
        [sys.executable, "-m", "taichi_pvd_cli", "--arch", "cpu", "train",
         "--data", str(cli_scene), "--out", str(cli_root / "run"), *CLI_ARGS],
        check=False, cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=300)
    log, _ = helper.communicate(timeout=300)
    assert helper.returncode == 0, log
    assert cli.returncode == 0, cli.stdout + cli.stderr
    return {"root": root, "record": json.loads((root / "record.json").read_text()), "cli": cli_root / "run"}


def _state(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(checkpoint_path(run_dir)).tensors


def _assert_identical(a: Path, b: Path) -> None:
    """Field parameters, occupancy grid, optimizer moments and generator state all equal."""
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"{a.name} and {b.name} differ in {different}"
    meta_a, meta_b = load_checkpoint(checkpoint_path(a)).meta, load_checkpoint(checkpoint_path(b)).meta
    assert meta_a["step"] == meta_b["step"]


def test_two_seeded_cpu_runs_give_identical_parameters(runs):
    _assert_identical(runs["root"] / "train", runs["root"] / "train-again")


def test_cli_seed_alone_makes_a_cpu_run_reproducible(runs):
    """`pvd-ti train --seed` in a fresh process, without PVD_DETERMINISTIC, matches the library run
    with the same settings bit for bit."""
    _assert_identical(runs["cli"], runs["root"] / "cli-equivalent")


def _saved_step(at_step: int, how: str) -> int:
    return at_step if how == "keyboard-interrupt" else at_step + 1


@pytest.mark.parametrize("loop, name, at_step, how",
                         [(loop, *case) for loop in ("train", "distill") for case in INTERRUPTIONS[loop]])
def test_interrupted_run_saves_and_resumes_to_the_uninterrupted_result(runs, loop, name, at_step, how):
    """Training and distillation alike: stopped, saved, resumed, equal to the uninterrupted run."""
    record = runs["record"][name]
    assert record["interrupted"]
    assert record["saved_step"] == _saved_step(at_step, how)
    assert not record["metrics_written"]
    _assert_identical(runs["root"] / name, runs["root"] / loop)


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    scene = write_demo_scene(tmp_path / "scene", size=16, n_train=4, n_val=1, n_test=1)
    out = tmp_path / "run"

    def poison_from_step_5(trainer):
        forward = trainer.field.forward

        def poisoned(x, d):
            sigma, rgb = forward(x, d)
            return (sigma * math.nan, rgb) if trainer.step >= 5 else (sigma, rgb)

        trainer.field.forward = poisoned

    overrides = {**TRAIN, "checkpoint_every": 2}
    with pytest.raises(TrainingDiverged, match="NaN") as caught:
        train(data=scene, model="hash", out=out, field_overrides=HASH, train_overrides=overrides,
              on_ready=poison_from_step_5)
    assert "last good checkpoint" in str(caught.value)
    ckpt = load_checkpoint(checkpoint_path(out))
    assert ckpt.meta["step"] == 4
    assert all(bool(torch.isfinite(t).all()) for t in ckpt.tensors.values() if t.is_floating_point())
    assert not (out / METRICS_NAME).exists()


def test_ctrl_c_in_pvd_ti_train_says_where_the_run_is_and_resume_finishes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PVD_ARCH", "cpu")  # the CLI exports it
    monkeypatch.setenv("COLUMNS", "400")  # no line wrapping of the long paths
    scene = write_demo_scene(tmp_path / "scene", size=16, n_train=4, n_val=1, n_test=1)
    out = tmp_path / "run"
    args = ["train", "--data", str(scene), "--out", str(out), *CLI_FIELD, "--steps", "4", "--batch-rays", "64",
            "--val-every", "0", "--checkpoint-every", "0", "--grid-resolution", "16"]
    with monkeypatch.context() as patch:
        original = Trainer.train_step

        def train_step(self):
            result = original(self)
            if self.step == 1:
                signal.raise_signal(signal.SIGINT)
            return result

        patch.setattr(Trainer, "train_step", train_step)
        stopped = CliRunner().invoke(main, args)
    assert stopped.exit_code == 130, stopped.output
    assert f"stopped at step 2: checkpoint saved in {out}" in stopped.output
    assert "continue with the same `pvd-ti train` command plus --resume" in stopped.output
    assert load_checkpoint(checkpoint_path(out)).meta["step"] == 2

    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(checkpoint_path(out)).meta["step"] == 4
    assert json.loads((out / METRICS_NAME).read_text())["steps"] == 4


def test_an_averaged_run_saves_the_average_and_resumes_from_the_trained_values(runs):
    """With ``ema_decay`` the field in the checkpoint is the parameters' average, the trained
    values ride along, and an interrupted run resumes to the uninterrupted one bit for bit."""
    root = runs["root"]
    assert runs["record"]["train-ema-ctrl-c"]["interrupted"]
    _assert_identical(root / "train-ema-ctrl-c", root / "train-ema")
    state = _state(root / "train-ema")
    trained = {k.removeprefix("ema.trained."): v for k, v in state.items() if k.startswith("ema.trained.")}
    assert trained and all(f"field.{name}" in state for name in trained)
    assert not torch.equal(state["field.table"], trained["table"])
    assert torch.equal(_state(root / "train")["field.table"], trained["table"])
