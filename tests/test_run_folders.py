"""Nothing lost, ever: a run folder is replaced only once the new run has written its first
checkpoint, locked while a run writes into it, cleaned of what killed saves left; resume checks
that it continues the same job; a save is never cut halfway by a second Ctrl-C; SIGTERM exits
143; full disks and unwritable outputs are ``Error:`` lines; what is written is valid JSON with
the user's permissions.

Where signals or exit codes matter the CLI runs in a subprocess (:func:`drive`), with a hook that
sends the signal at a chosen moment."""

import errno
import fcntl
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from taichi_pvd import backend
from taichi_pvd.data.demo import write_demo_scene
from taichi_pvd.io.checkpoint import load_checkpoint, save_checkpoint
from taichi_pvd.io.run_folder import LOCK_NAME, REPLACED_DIR, claim_run_folder
from taichi_pvd.io.runs import CHECKPOINT_NAME, HISTORY_NAME, METRICS_NAME, append_history, read_history, write_json
from taichi_pvd.training.api import train
from tests.cli_checks import assert_user_error, error_line, invoke

REPO = Path(__file__).resolve().parents[1]
HASH = {"log2_table_size": 10, "n_levels": 2, "finest_resolution": 32}
TRAIN = {"steps": 3, "batch_rays": 64, "val_every": 0, "checkpoint_every": 0, "grid_resolution": 16,
         "marching": {"steps_across_box": 64}}
TINY = ["--set", "log2_table_size=10", "--set", "n_levels=2", "--set", "finest_resolution=32",
        "--steps", "3", "--batch-rays", "64", "--val-every", "0", "--checkpoint-every", "0",
        "--grid-resolution", "16"]
DISTILL = ["--from", "hash", "--to", "hash", *TINY[:6], "--steps", "3", "--stage1-steps", "1",
           "--stage2-steps", "1", "--batch-rays", "64",
           "--val-every", "0", "--checkpoint-every", "0", "--distill-set", "virtual_cameras=4",
           "--distill-set", "val_views=1", "--distill-set", "val_size=8"]


@pytest.fixture(autouse=True)
def _cpu(monkeypatch):
    monkeypatch.setenv("PVD_ARCH", "cpu")
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Two different tiny demo scenes."""
    root = tmp_path_factory.mktemp("scenes")
    return (write_demo_scene(root / "a", size=16, n_train=4, n_val=1, n_test=1, seed=0),
            write_demo_scene(root / "b", size=16, n_train=4, n_val=1, n_test=1, seed=1))


def _trained(scene, out, **overrides) -> Path:
    train(data=scene, model="hash", out=out, field_overrides=HASH, train_overrides={**TRAIN, **overrides})
    return out


@pytest.fixture(scope="module")
def hash_run(scenes, tmp_path_factory):
    return _trained(scenes[0], tmp_path_factory.mktemp("runs") / "hash")


@pytest.fixture
def run_copy(hash_run, tmp_path):
    return Path(shutil.copytree(hash_run, tmp_path / "run"))


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (but the lock) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != LOCK_NAME}








# -- --overwrite keeps the earlier run until the new one has a checkpoint --------------------------


@pytest.mark.parametrize("extra, fragment", [
    (["--data", "TYPO"], "TYPO does not exist"),
    (["--set", "bogus=1"], "unknown option(s) bogus"),
    (["--train-set", "lr=fast"], "lr='fast'"),
], ids=["missing scene", "unknown field option", "bad training option"])
def test_overwrite_with_wrong_inputs_keeps_the_earlier_run(scenes, run_copy, extra, fragment):
    before = _snapshot(run_copy)
    args = ["train", "--data", scenes[0], *TINY, *extra, "--overwrite", "--out", run_copy]
    assert_user_error(invoke(*args), fragment)
    assert _snapshot(run_copy) == before


def test_distill_overwrite_with_wrong_inputs_keeps_the_earlier_run(hash_run, run_copy):
    before = _snapshot(run_copy)
    result = invoke("distill", *DISTILL, "--teacher", hash_run, "--set", "bogus=1", "--overwrite",
                     "--out", run_copy)
    assert_user_error(result, "bogus")
    assert _snapshot(run_copy) == before


def test_overwrite_whose_run_crashes_before_its_first_checkpoint_keeps_the_earlier_run(scenes, run_copy,
                                                                                        monkeypatch):
    from taichi_pvd.training.trainer import Trainer

    def crash(self):
        raise RuntimeError("a bug in the new run")

    monkeypatch.setattr(Trainer, "train_step", crash)
    before = _snapshot(run_copy)
    result = invoke("train", "--data", scenes[0], *TINY, "--overwrite", "--out", run_copy)
    assert result.exit_code == 1 and "a bug in the new run" in str(result.exception)
    assert _snapshot(run_copy) == before
    assert not (run_copy / REPLACED_DIR).exists()


def test_overwrite_replaces_the_earlier_run_once_the_new_one_is_saved(scenes, run_copy):
    (run_copy / "eval").mkdir()
    (run_copy / "eval" / "old.png").write_bytes(b"old")
    result = invoke("train", "--data", scenes[1], *TINY, "--steps", "2", "--overwrite", "--out", run_copy)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run_copy / CHECKPOINT_NAME).meta["step"] == 2
    assert [r["step"] for r in read_history(run_copy)] == [2]
    assert not (run_copy / "eval").exists() and not (run_copy / REPLACED_DIR).exists()


def test_a_replacement_killed_before_its_checkpoint_is_undone_at_the_next_claim(run_copy):
    before = _snapshot(run_copy)
    aside = run_copy / REPLACED_DIR
    aside.mkdir()
    for name in (CHECKPOINT_NAME, METRICS_NAME, HISTORY_NAME):
        os.replace(run_copy / name, aside / name)
    (run_copy / HISTORY_NAME).write_text('{"step": 1}\n')  # what the killed new run wrote
    (run_copy / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half a save")
    with claim_run_folder(run_copy, resume=True, overwrite=False) as folder:
        assert folder.resuming
    assert _snapshot(run_copy) == before


def test_a_new_run_that_fails_leaves_no_folder_behind(tmp_path):
    result = invoke("train", "--data", tmp_path / "TYPO", *TINY, "--out", tmp_path / "new" / "run")
    assert_user_error(result, "does not exist")
    assert not (tmp_path / "new" / "run").exists()


# -- the lock and the clean-up -----------------------------------------------------------------


def test_a_second_run_into_a_folder_in_use_is_refused(scenes, hash_run, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / LOCK_NAME, "w") as held:
        held.write("process 4242\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = invoke("train", "--data", scenes[0], *TINY, "--out", out)
        assert_user_error(result, f"{out} is in use by another run (process 4242)", "choose another --out")
        distilled = invoke("distill", *DISTILL, "--teacher", hash_run, "--out", out)
        assert_user_error(distilled, "is in use by another run")
    assert not (out / CHECKPOINT_NAME).exists() and not (out / HISTORY_NAME).exists()
    assert invoke("train", "--data", scenes[0], *TINY, "--out", out).exit_code == 0  # free again


def test_two_runs_started_together_into_one_folder_one_is_refused(scenes, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "taichi_pvd_cli", "--arch", "cpu", "train", "--data", str(scenes[0]),
               *TINY, "--steps", "30", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400"}
    procs = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stdout.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = error_line(next(output for code, output in results if code == 2))
    # Refused by the lock; or, where the first finished before the second started, by its run.
    assert "is in use by another run" in refused or "already holds a run" in refused
    assert [r["step"] for r in read_history(out)] == [30]
    assert load_checkpoint(out / CHECKPOINT_NAME).meta["step"] == 30


def test_stale_temporary_files_of_killed_saves_are_removed(scenes, run_copy):
    stale = run_copy / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"x" * 1000)
    result = invoke("train", "--data", scenes[0], *TINY, "--steps", "4", "--resume", "--out", run_copy)
    assert result.exit_code == 0, result.output
    assert not stale.exists()
    assert not list(run_copy.glob(".*.tmp"))


# -- resume checks the job ---------------------------------------------------------------------


def test_resume_on_another_scene_is_refused_unless_forced(scenes, run_copy):
    before = _snapshot(run_copy)
    args = ["train", "--data", scenes[1], *TINY, "--steps", "4", "--out", run_copy, "--resume"]
    assert_user_error(invoke(*args), "was made from the scene", str(scenes[0].resolve()), str(scenes[1].resolve()),
                       "pass --resume --force to continue anyway")
    assert _snapshot(run_copy) == before
    forced = invoke(*args, "--force")
    assert forced.exit_code == 0, forced.output
    assert load_checkpoint(run_copy / CHECKPOINT_NAME).meta["step"] == 4


def test_resume_on_a_copy_of_the_same_scene_is_accepted(scenes, run_copy, tmp_path):
    moved = shutil.copytree(scenes[0], tmp_path / "moved-scene")
    result = invoke("train", "--data", moved, *TINY, "--steps", "4", "--out", run_copy, "--resume")
    assert result.exit_code == 0, result.output


def test_resume_on_the_same_path_with_other_content_is_refused(scenes, tmp_path):
    scene = Path(shutil.copytree(scenes[0], tmp_path / "scene"))
    out = _trained(scene, tmp_path / "run")
    meta = json.loads((scene / "transforms_train.json").read_text())
    meta["frames"] = meta["frames"][:3]
    (scene / "transforms_train.json").write_text(json.dumps(meta))
    result = invoke("train", "--data", scene, *TINY, "--steps", "4", "--out", out, "--resume")
    assert_user_error(result, "(as it was then)", "its present content", "--resume --force")


@pytest.fixture(scope="module")
def student(hash_run, scenes, tmp_path_factory):
    """A distillation of ``hash_run`` (3 steps), and another hash teacher and a grid teacher."""
    root = tmp_path_factory.mktemp("students")
    result = invoke("distill", *DISTILL, "--teacher", hash_run, "--out", root / "student")
    assert result.exit_code == 0, result.output
    other = _trained(scenes[0], root / "other-hash", seed=9)
    grid = root / "grid"
    train(data=scenes[0], model="grid", out=grid, field_overrides={"resolution": 16}, train_overrides=TRAIN)
    return {"student": root / "student", "other": other, "grid": grid}


@pytest.mark.parametrize("teacher, source, fragment", [
    ("other", "hash", "hash run"), ("grid", "grid", "not grid run"),
], ids=["another teacher", "a teacher of another architecture"])
def test_distill_resume_from_another_teacher_is_refused_unless_forced(student, tmp_path, teacher, source,
                                                                      fragment):
    out = Path(shutil.copytree(student["student"], tmp_path / "student"))
    before = _snapshot(out)
    args = ["distill", *DISTILL, "--from", source, "--teacher", student[teacher], "--steps", "4", "--out", out,
            "--resume"]
    assert_user_error(invoke(*args), "was made from the teacher", fragment, "--resume --force")
    assert _snapshot(out) == before
    if teacher == "other":
        forced = invoke(*args, "--force")
        assert forced.exit_code == 0, forced.output


# -- signals, in a subprocess ------------------------------------------------------------------


def _signal_at_step(sig: int, step: int):
    from taichi_pvd.training.trainer import Trainer

    original = Trainer.train_step

    def train_step(self):
        result = original(self)
        if self.step == step:
            os.kill(os.getpid(), sig)
        return result

    Trainer.train_step = train_step


def _hook_sigterm_at_step_1():
    _signal_at_step(signal.SIGTERM, 1)


def _hook_second_ctrl_c_during_the_save():
    """Ctrl-C during step 1, then again in the middle of writing the checkpoint."""
    import taichi_pvd.io.checkpoint as checkpoint

    _signal_at_step(signal.SIGINT, 1)
    original = checkpoint.torch.save

    def slow_save(payload, f, *args, **kwargs):
        f.write(b"PK")  # the save is under way
        os.kill(os.getpid(), signal.SIGINT)
        f.seek(0)
        return original(payload, f, *args, **kwargs)

    checkpoint.torch.save = slow_save


def _hook_ctrl_c_during_start_up():
    """Ctrl-C while the scene loads (inside start-up, before any step)."""
    import taichi_pvd.training.api as api

    original = api.load_scene

    def load_scene(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    api.load_scene = load_scene


def drive(hook: str, args: list[str]) -> None:
    """Run ``pvd-ti args`` in this process after installing the hook named ``hook``."""
    globals()[hook]()
    from taichi_pvd_cli.main import main as cli

    cli(args, prog_name="pvd-ti")


def _drive(hook: str, args: list) -> subprocess.CompletedProcess:
    env = {**os.environ, "PVD_ARCH": "cpu", "OMP_NUM_THREADS": "1", "COLUMNS": "400"}
    code = f"from tests.test_run_folders import drive; drive({hook!r}, {[str(a) for a in args]!r})"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_sigterm_saves_and_exits_143(scenes, tmp_path):
    out = tmp_path / "run"
    done = _drive("_hook_sigterm_at_step_1", ["train", "--data", scenes[0], *TINY, "--steps", "50", "--out", out])
    assert done.returncode == 143, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"stopped at step 2: checkpoint saved in {out}" in done.stderr
    assert load_checkpoint(out / CHECKPOINT_NAME).meta["step"] == 2


def test_a_second_ctrl_c_during_the_save_waits_for_it(scenes, tmp_path):
    out = tmp_path / "run"
    done = _drive("_hook_second_ctrl_c_during_the_save",
                  ["train", "--data", scenes[0], *TINY, "--steps", "50", "--out", out])
    assert done.returncode == 130, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert f"stopped at step 2: checkpoint saved in {out}" in done.stderr
    assert load_checkpoint(out / CHECKPOINT_NAME).meta["step"] == 2
    assert not list(out.glob(".*.tmp"))


def test_ctrl_c_during_start_up_stops_the_run_and_keeps_the_earlier_one(scenes, run_copy):
    before = _snapshot(run_copy)
    done = _drive("_hook_ctrl_c_during_start_up",
                  ["train", "--data", scenes[0], *TINY, "--steps", "50", "--overwrite", "--out", run_copy])
    assert done.returncode == 130, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert _snapshot(run_copy) == before


# -- unwritable outputs and full disks -----------------------------------------------------------


def test_out_under_a_file_or_in_proc_is_anerror_line(scenes, tmp_path):
    (tmp_path / "a-file").write_text("x")
    assert_user_error(invoke("train", "--data", scenes[0], *TINY, "--out", tmp_path / "a-file" / "run"),
                       "a part of its path is a file", "choose another --out folder")
    assert_user_error(invoke("train", "--data", scenes[0], *TINY, "--out", "/proc/pvd-ti-run"),
                       "cannot be created there")


def _disk_full(*args, **kwargs):
    """What torch.save does on a full disk: an OSError wrapped in ``RuntimeError: unexpected pos``."""
    try:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError as err:
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 4096 vs 4042") from err


def test_a_full_disk_during_a_save_is_an_error_line_and_keeps_the_last_checkpoint(scenes, run_copy,
                                                                                  monkeypatch):
    before = _snapshot(run_copy)
    monkeypatch.setattr("taichi_pvd.io.checkpoint.torch.save", _disk_full)
    result = invoke("train", "--data", scenes[0], *TINY, "--steps", "5", "--resume", "--out", run_copy)
    assert_user_error(result, "no space left on the device", "free some space")
    assert _snapshot(run_copy) == before
    assert not list(run_copy.glob(".*.tmp"))


def test_a_full_disk_in_a_new_run_leaves_nothing(scenes, tmp_path, monkeypatch):
    monkeypatch.setattr("taichi_pvd.io.checkpoint.torch.save", _disk_full)
    result = invoke("train", "--data", scenes[0], *TINY, "--out", tmp_path / "run")
    assert_user_error(result, "no space left on the device")
    assert not (tmp_path / "run").exists()


def _read_only(path, *args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))


def test_eval_of_a_run_on_a_read_only_disk_is_anerror_line(run_copy, monkeypatch):
    monkeypatch.setattr("taichi_pvd.evaluation.write_png", _read_only)
    result = invoke("eval", "--run", run_copy, "--views", "1")
    assert_user_error(result, "the file system is read-only", str(run_copy / "eval"))


def test_render_and_plot_to_a_path_under_a_file_are_error_lines(run_copy, tmp_path):
    (tmp_path / "a-file").write_text("x")
    result = invoke("render", "--run", run_copy, "--frames", "1", "--size", "8x8", "--out", tmp_path / "a-file" / "r")
    assert_user_error(result, "cannot write", "a-file")
    plotted = invoke("info", run_copy, "--plot", tmp_path / "a-file" / "psnr.png")
    assert_user_error(plotted, "cannot write", "a-file")
    assert (tmp_path / "a-file").read_text() == "x"


# -- what is written -----------------------------------------------------------------------------


def test_checkpoints_and_metrics_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "c.pt", kind="run", config={}, tensors={"x": torch.zeros(2)}, meta={})
        write_json(tmp_path / "m.json", {"a": 1})
        os.umask(0o077)
        save_checkpoint(tmp_path / "private.pt", kind="run", config={}, tensors={}, meta={})
    finally:
        os.umask(previous)
    assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.pt").stat().st_mode & 0o777 == 0o600


def _strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_history_and_metrics_write_nan_as_null(tmp_path):
    append_history(tmp_path, {"step": 1, "loss": math.nan, "parts": [math.inf, 1.0]})
    write_json(tmp_path / "metrics.json", {"val_psnr_db": -math.inf})
    assert _strict_json((tmp_path / HISTORY_NAME).read_text()) == {"step": 1, "loss": None, "parts": [None, 1.0]}
    assert _strict_json((tmp_path / "metrics.json").read_text()) == {"val_psnr_db": None}


def test_arch_cuda_without_a_gpu_warns_once(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setitem(backend._state, "warned_fallback", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(7):
            backend.init("cuda")
    assert [str(w.message) for w in caught] == ["no CUDA GPU is visible to torch: falling back to the CPU"]


def test_the_library_raises_typed_errors_worded_with_its_own_options(scenes, run_copy, monkeypatch):
    from taichi_pvd.errors import OutputNotWritable, ResumeMismatch
    from taichi_pvd.evaluation import evaluate_run
    from taichi_pvd.io.runs import load_run

    with pytest.raises(ResumeMismatch, match=r"pass force=True to continue anyway"):
        train(data=scenes[1], model="hash", out=run_copy, field_overrides=HASH,
              train_overrides={**TRAIN, "steps": 4}, resume=True)
    monkeypatch.setattr("taichi_pvd.evaluation.write_png", _read_only)
    with pytest.raises(OutputNotWritable, match="the file system is read-only") as caught:
        evaluate_run(load_run(run_copy), n_views=1)
    assert caught.value.errno == errno.EROFS


@pytest.mark.parametrize("number, reason", [
    (errno.ENOSPC, "no space left on the device"), (errno.EROFS, "the file system is read-only"),
    (errno.EACCES, "permission denied"), (errno.ENOTDIR, "a part of the path is a file"),
    (errno.EEXIST, "a file is in the way"),
])
def test_storage_refusals_the_user_can_fix_become_typed_errors(number, reason):
    from taichi_pvd.errors import OutputNotWritable
    from taichi_pvd.io.storage import storage_error, storage_errors

    with pytest.raises(OutputNotWritable, match=f"cannot write /out/checkpoint.pt: {reason}"):
        with storage_errors():
            try:
                raise OSError(number, os.strerror(number), "/out/checkpoint.pt")
            except OSError as err:
                raise RuntimeError("unexpected pos 64 vs 0") from err
    assert storage_error(OSError(errno.EIO, "I/O error")) is None  # not the user's to fix: a bug report
    assert storage_error(ValueError("a bug")) is None


def _hook_second_ctrl_c_turned_into_another_error():
    """Two Ctrl-C during step 1; a library re-raises the KeyboardInterrupt of the second as a
    RuntimeError."""
    from taichi_pvd.training.trainer import Trainer

    original = Trainer.train_step

    def train_step(self):
        result = original(self)
        if self.step == 1:
            os.kill(os.getpid(), signal.SIGINT)
            try:
                os.kill(os.getpid(), signal.SIGINT)
            except KeyboardInterrupt as err:
                raise RuntimeError("a C extension's wrapping of the interrupt") from err
            raise AssertionError("the second Ctrl-C did not interrupt")
        return result

    Trainer.train_step = train_step


def test_a_second_ctrl_c_wrapped_by_a_library_still_saves_and_exits_130(scenes, tmp_path):
    out = tmp_path / "run"
    done = _drive("_hook_second_ctrl_c_turned_into_another_error",
                  ["train", "--data", scenes[0], *TINY, "--steps", "50", "--out", out])
    assert done.returncode == 130, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    saved = load_checkpoint(out / CHECKPOINT_NAME).meta["step"]
    assert f"stopped at step {saved}: checkpoint saved in {out}" in done.stderr


def test_resume_drops_history_logged_after_the_checkpoint_and_a_half_written_line(scenes, run_copy):
    """What a killed run logged after its last checkpoint (step 3) is redone once, not repeated."""
    with open(run_copy / HISTORY_NAME, "a") as f:
        f.write('{"step": 4, "loss": 0.1}\n{"step": 5, "lo')
    assert [r["step"] for r in read_history(run_copy)] == [3, 4]
    result = invoke("train", "--data", scenes[0], *TINY, "--steps", "5", "--resume", "--out", run_copy)
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_history(run_copy)] == [3, 5]
    for line in (run_copy / HISTORY_NAME).read_text().splitlines():
        _strict_json(line)
