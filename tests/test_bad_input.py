"""Bad input through the command line: every mistake a user can make with scenes, checkpoints,
run folders and options ends in one line ``Error: <what was wrong and what to do>`` and exit
code 2, never a traceback; a GPU running out of memory gives advice; a missing GPU falls back to
the CPU with a warning."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from taichi_pvd.data.demo import write_demo_scene
from taichi_pvd.io.checkpoint import FORMAT_VERSION, load_checkpoint
from taichi_pvd.io.runs import CHECKPOINT_NAME
from taichi_pvd.training.api import train
from tests.cli_checks import assert_user_error, invoke

#: A tiny model trained for 3 steps: enough to exercise every command quickly.
TINY = ["--set", "log2_table_size=10", "--set", "n_levels=2", "--set", "finest_resolution=32",
        "--steps", "3", "--batch-rays", "64", "--val-every", "0", "--checkpoint-every", "0",
        "--grid-resolution", "16"]


@pytest.fixture(autouse=True)
def _cpu(monkeypatch):
    """The CLI exports PVD_ARCH: keep the tests on the CPU (where backend.init already runs
    torch on one thread)."""
    monkeypatch.setenv("PVD_ARCH", "cpu")


@pytest.fixture(scope="module")
def scene_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    return write_demo_scene(root / "scene", size=16, n_train=4, n_val=1, n_test=1)


@pytest.fixture
def scene(scene_template, tmp_path):
    """A private copy of the demo scene, free to damage."""
    return Path(shutil.copytree(scene_template, tmp_path / "scene"))


@pytest.fixture(scope="module")
def hash_run(scene_template, tmp_path_factory):
    """A trained tiny hash run (never modified by the tests)."""
    out = tmp_path_factory.mktemp("runs") / "hash"
    train(data=scene_template, model="hash", out=out,
          field_overrides={"log2_table_size": 10, "n_levels": 2, "finest_resolution": 32},
          train_overrides={"steps": 3, "batch_rays": 64, "val_every": 0, "checkpoint_every": 0,
                           "grid_resolution": 16, "marching": {"steps_across_box": 64}})
    return out


@pytest.fixture
def run_copy(hash_run, tmp_path):
    """A private copy of the trained run, free to damage."""
    return Path(shutil.copytree(hash_run, tmp_path / "run"))






def _train(scene, out, *extra):
    return invoke("train", "--data", scene, "--out", out, *TINY, *extra)


# -- scenes ------------------------------------------------------------------------------------


def test_missing_scene_folder(tmp_path):
    result = _train(tmp_path / "no-such-scene", tmp_path / "run")
    assert_user_error(result, "no-such-scene does not exist", "transforms_train.json")
    assert not (tmp_path / "run").exists()


def test_scene_path_that_is_a_file(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a scene")
    assert_user_error(_train(notes, tmp_path / "run"), "neither a scene folder nor a transforms .json file")


def test_scene_folder_without_transforms(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_user_error(_train(tmp_path / "empty", tmp_path / "run"), "no transforms_train.json",
                       "NeRF-Synthetic or Instant-NGP")


def test_scene_without_a_validation_split(scene, tmp_path):
    (scene / "transforms_val.json").unlink()
    assert_user_error(_train(scene, tmp_path / "run"), "no transforms_val.json")


def _edit(fn):
    """A damage that rewrites transforms_train.json through ``fn(meta)``."""

    def damage(scene):
        path = scene / "transforms_train.json"
        meta = json.loads(path.read_text())
        fn(meta)
        path.write_text(json.dumps(meta))

    return damage


def _write(text: bytes):
    return lambda scene: (scene / "transforms_train.json").write_bytes(text)


def _first_frame(key, value):
    return _edit(lambda meta: meta["frames"][0].__setitem__(key, value))


def _scaled_rotation(meta):
    meta["frames"][1]["transform_matrix"] = [[2 * v for v in row[:3]] + row[3:] for row in
                                             meta["frames"][1]["transform_matrix"][:3]]


BAD_TRANSFORMS = {
    "not JSON": (_write(b'{"frames": [{"file_path": '), ["is not valid JSON", "fix or regenerate"]),
    "binary": (_write(bytes(range(256))), ["cannot read", "transforms_train.json"]),
    "a list": (_write(b"[1, 2, 3]"), ["must hold a JSON object"]),
    "no frames": (_edit(lambda meta: meta.pop("frames")), ["has no 'frames' list"]),
    "empty frames": (_edit(lambda meta: meta.__setitem__("frames", [])), ["has no 'frames' list"]),
    "frame without pose": (_edit(lambda meta: meta["frames"][2].pop("transform_matrix")),
                           ["frame 2", "has no 'transform_matrix'", "add it"]),
    "frame without image": (_edit(lambda meta: meta["frames"][0].pop("file_path")),
                            ["frame 0", "has no 'file_path'"]),
    "no focal length": (_edit(lambda meta: meta.pop("camera_angle_x")),
                        ["no focal length", "add 'camera_angle_x'", "'fl_x'"]),
    "3x3 pose": (_first_frame("transform_matrix", [[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
                 ["has shape [3, 3]", "must be 4x4 or 3x4"]),
    "ragged pose": (_first_frame("transform_matrix", [[1, 0, 0, 0], [0, 1, 0]]), ["not a matrix of numbers"]),
    "pose of strings": (_first_frame("transform_matrix", [["a"] * 4] * 4), ["not a matrix of numbers"]),
    "NaN pose": (_first_frame("transform_matrix", [[math.nan] * 4] * 4), ["contains NaN or Inf"]),
    "scaled pose": (_edit(_scaled_rotation), ["frame 1", "not a rigid camera-to-world transform"]),
    "field of view of 0": (_edit(lambda meta: meta.__setitem__("camera_angle_x", 0)),
                           ["'camera_angle_x'", "between 0 and pi"]),
    "negative far": (_edit(lambda meta: meta.__setitem__("far", -1)), ["'far'", "non-negative number"]),
}


@pytest.mark.parametrize("damage, fragments", BAD_TRANSFORMS.values(), ids=BAD_TRANSFORMS.keys())
def test_malformed_or_incomplete_transforms(scene, tmp_path, damage, fragments):
    damage(scene)
    result = _train(scene, tmp_path / "run")
    assert_user_error(result, "transforms_train.json", *fragments)
    assert not (tmp_path / "run" / CHECKPOINT_NAME).exists()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


BAD_IMAGES = {
    "missing": (lambda scene: (scene / "train" / "r_1.png").unlink(),
                ["image of frame 1", "not found", "check 'file_path'"]),
    "truncated": (lambda scene: _truncate(scene / "train" / "r_2.png"),
                  ["cannot read image", "r_2.png", "truncated, corrupt or not an image"]),
    "not an image": (lambda scene: (scene / "train" / "r_0.png").write_text("hello"),
                     ["cannot read image", "r_0.png"]),
    "another size": (lambda scene: Image.new("RGBA", (8, 8)).save(scene / "train" / "r_3.png"),
                     ["r_3.png is 8x8 pixels", "is 16x16", "must have one size"]),
    "size not as declared": (_edit(lambda meta: meta.update(w=32, h=32)),
                             ["is 16x16 pixels but", "says w=32", "fix 'w'/'h'"]),
}


@pytest.mark.parametrize("damage, fragments", BAD_IMAGES.values(), ids=BAD_IMAGES.keys())
def test_missing_truncated_or_mis_sized_images(scene, tmp_path, damage, fragments):
    damage(scene)
    assert_user_error(_train(scene, tmp_path / "run"), *fragments)


def test_eval_of_a_run_whose_scene_was_removed(scene, tmp_path):
    out = tmp_path / "run"
    assert _train(scene, out).exit_code == 0
    shutil.rmtree(scene)
    result = invoke("eval", "--run", out, "--no-images")
    assert_user_error(result, "is not on this machine", "put the scene folder back")


# -- architectures and teachers ------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["train", "--model", "nerfacto"],
    ["distill", "--from", "nerfacto", "--to", "grid"],
    ["distill", "--from", "hash", "--to", "plenoctree"],
], ids=["train --model", "distill --from", "distill --to"])
def test_unknown_architecture(args):
    assert_user_error(invoke(*args), "Invalid value for", "is not one of 'grid', 'hash', 'mlp', 'vm'")


@pytest.mark.parametrize("value, message", [("5min", "expected seconds separated by commas"),
                                            ("300,-1", "snapshot times must be positive")])
@pytest.mark.parametrize("command", ["train", "distill"])
def test_bad_snapshot_times(command, value, message):
    assert_user_error(invoke(command, "--snapshot-at", value), "Invalid value for '--snapshot-at'", message)


def test_teacher_of_another_architecture_than_from(hash_run, tmp_path):
    result = invoke("distill", "--from", "vm", "--to", "grid", "--teacher", hash_run,
                     "--out", tmp_path / "student")
    assert_user_error(result, "is a 'hash' model, not 'vm'", "pass --from hash")
    assert not (tmp_path / "student").exists()


def test_missing_teacher(tmp_path):
    result = invoke("distill", "--from", "hash", "--to", "grid", "--runs-root", tmp_path / "runs")
    assert_user_error(result, "no 'hash' run found", "pvd-ti train --model hash", "--teacher")


# -- damaged checkpoints ------------------------------------------------------------------------


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flipped_bytes(path: Path) -> None:
    """Damage in the middle of the tensor data: the archive still opens, only checksums tell."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 64] = bytes(b ^ 0xFF for b in data[middle: middle + 64])
    path.write_bytes(bytes(data))


def _future_version(path: Path) -> None:
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, path)


DAMAGES = {
    "truncated": (_truncated, ["truncated or corrupted", "use another checkpoint or re-create it"]),
    "corrupted": (_flipped_bytes, ["truncated or corrupted", "fails its checksum"]),
    "future version": (_future_version, ["written by a newer taichi-pvd", "upgrade taichi-pvd"]),
    "missing": (lambda path: path.unlink(), ["no checkpoint at"]),
}
COMMANDS = {
    "distill": lambda run, tmp: ["distill", "--from", "hash", "--to", "grid", "--teacher", run,
                                 "--out", tmp / "student"],
    "eval": lambda run, tmp: ["eval", "--run", run, "--no-images"],
    "render": lambda run, tmp: ["render", "--run", run, "--frames", "1", "--size", "8x8",
                                "--out", tmp / "frames"],
    "info": lambda run, tmp: ["info", run],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_checkpoint(run_copy, tmp_path, command, damage):
    damage_fn, fragments = DAMAGES[damage]
    damage_fn(run_copy / CHECKPOINT_NAME)
    result = invoke(*COMMANDS[command](run_copy, tmp_path))
    assert_user_error(result, str(run_copy), *fragments)
    assert not (tmp_path / "student").exists() and not (tmp_path / "frames").exists()


def _leave_mark(path: str) -> None:
    """What the malicious payload would run: it leaves a file behind."""
    Path(path).write_text("the payload ran")


class _Payload:
    """Unpickles by calling :func:`_leave_mark`."""

    def __init__(self, mark: Path):
        self.mark = str(mark)

    def __reduce__(self):
        return _leave_mark, (self.mark,)


@pytest.mark.parametrize("command", COMMANDS)
def test_checkpoint_carrying_pickled_code_is_refused_and_never_run(run_copy, tmp_path, command):
    mark = tmp_path / "payload-ran"
    path = run_copy / CHECKPOINT_NAME
    payload = torch.load(path, weights_only=True)
    payload["meta"]["note"] = _Payload(mark)
    torch.save(payload, path)

    result = invoke(*COMMANDS[command](run_copy, tmp_path))
    assert_user_error(result, "holds pickled Python objects", "_leave_mark",
                       "refused because loading it could run code")
    assert not mark.exists()
    torch.load(path, weights_only=False)  # the control: an unsafe loader does run it
    assert mark.read_text() == "the payload ran"


# -- run folders ---------------------------------------------------------------------------------


def test_output_folder_holding_a_run_is_refused(scene, run_copy):
    before = (run_copy / CHECKPOINT_NAME).read_bytes()
    assert_user_error(_train(scene, run_copy), "already holds a run", "--resume", "--overwrite")
    assert (run_copy / CHECKPOINT_NAME).read_bytes() == before


def test_distilling_into_a_folder_holding_a_run_is_refused(hash_run, run_copy):
    before = (run_copy / CHECKPOINT_NAME).read_bytes()
    result = invoke("distill", "--from", "hash", "--to", "grid", "--teacher", hash_run, "--out", run_copy)
    assert_user_error(result, "already holds a run", "--resume", "--overwrite")
    assert (run_copy / CHECKPOINT_NAME).read_bytes() == before


def test_resume_without_a_run(scene, tmp_path):
    assert_user_error(_train(scene, tmp_path / "run", "--resume"), "nothing to resume", "drop --resume")


def test_resume_and_overwrite_together(scene, run_copy):
    assert_user_error(_train(scene, run_copy, "--resume", "--overwrite"), "contradict each other")


def test_resuming_with_another_architecture_is_refused(scene, run_copy):
    result = invoke("train", "--data", scene, "--out", run_copy, "--model", "grid", "--steps", "3",
                     "--grid-resolution", "16", "--set", "resolution=16", "--resume")
    assert_user_error(result, "holds a 'hash' run, not 'grid'")


# -- options ------------------------------------------------------------------------------------


BAD_TRAIN_OPTIONS = {
    "negative steps": (["--steps", "-1"], "steps must be positive, got -1"),
    "zero steps": (["--steps", "0"], "steps must be positive"),
    "zero batch": (["--batch-rays", "0"], "batch-rays must be positive, got 0"),
    "zero lr": (["--lr", "0"], "lr must be positive"),
    "NaN lr": (["--lr", "nan"], "lr must be positive"),
    "zero downscale": (["--downscale", "0"], "downscale must be positive"),
    "huge downscale": (["--downscale", "100"], "leaves no pixels"),
    "negative val-every": (["--val-every", "-1"], "val-every must be >= 0"),
    "negative checkpoint-every": (["--checkpoint-every", "-5"], "checkpoint-every must be >= 0"),
    "zero grid resolution": (["--grid-resolution", "0"], "grid-resolution must be positive"),
    "zero levels": (["--set", "n_levels=0"], "n_levels must be positive"),
    "unknown field option": (["--set", "bogus=1"], "unknown option(s) bogus for the 'hash' field"),
    "field option of the wrong type": (["--set", "log2_table_size=abc"],
                                       "log2_table_size='abc' should be an integer"),
    "malformed --set": (["--set", "log2_table_size"], "expected KEY=VALUE"),
    "steps not a number": (["--steps", "ten"], "'ten' is not a valid integer"),
    "unknown training option": (["--train-set", "bogus=1"], "bogus"),
    "removed training option": (["--train-set", "pixel_jitter=true"], "unknown training option(s): pixel_jitter"),
}


@pytest.mark.parametrize("extra, fragment", BAD_TRAIN_OPTIONS.values(), ids=BAD_TRAIN_OPTIONS.keys())
def test_out_of_range_training_options(scene, tmp_path, extra, fragment):
    assert_user_error(_train(scene, tmp_path / "run", *extra), fragment)
    assert not (tmp_path / "run" / CHECKPOINT_NAME).exists()


def test_train_set_options_reach_the_run_and_explicit_options_win(scene, tmp_path):
    result = _train(scene, tmp_path / "run", "--train-set", "ema_decay=0.5", "--train-set", "steps=9",
                    "--steps", "2")
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    assert ckpt.config["train"]["ema_decay"] == 0.5 and ckpt.meta["step"] == 2


BAD_DISTILL_OPTIONS = {
    "negative steps": (["--steps", "-1"], "steps must be positive"),
    "zero batch": (["--batch-rays", "0"], "batch-rays must be positive"),
    "negative stage": (["--stage1-steps", "-1"], "stage1-steps must be >= 0"),
    "no cameras": (["--distill-set", "virtual_cameras=0"], "virtual_cameras must be positive"),
    "unknown option": (["--distill-set", "bogus=1"], "unknown distillation option(s): bogus"),
    "option of the wrong type": (["--distill-set", "marching=5"],
                                 "marching=5 should be a set of key=value options"),
    "lr of the wrong type": (["--distill-set", "lr=fast"], "lr='fast' should be a number"),
    "student option of the wrong type": (["--set", "resolution=x"], "grid field option resolution='x'"),
}


@pytest.mark.parametrize("extra, fragment", BAD_DISTILL_OPTIONS.values(), ids=BAD_DISTILL_OPTIONS.keys())
def test_out_of_range_distillation_options(hash_run, tmp_path, extra, fragment):
    result = invoke("distill", "--from", "hash", "--to", "grid", "--teacher", hash_run, "--out",
                     tmp_path / "student", *extra)
    assert_user_error(result, fragment)
    assert not (tmp_path / "student" / CHECKPOINT_NAME).exists()


# -- the machine ---------------------------------------------------------------------------------


def _out_of_memory(**kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79 GiB total)")


def test_gpu_out_of_memory_in_training_gives_advice(scene, tmp_path, monkeypatch):
    monkeypatch.setattr("taichi_pvd.training.api.train", _out_of_memory)
    assert_user_error(_train(scene, tmp_path / "run"), "GPU ran out of memory", "Tried to allocate 2.00 GiB",
                       "smaller --batch-rays (e.g. --batch-rays 32)", "--resume")


def test_gpu_out_of_memory_in_distillation_gives_advice(hash_run, tmp_path, monkeypatch):
    monkeypatch.setattr("taichi_pvd.distill.api.distill", _out_of_memory)
    result = invoke("distill", "--from", "hash", "--to", "grid", "--teacher", hash_run,
                     "--out", tmp_path / "student")
    assert_user_error(result, "GPU ran out of memory", "smaller --batch-rays")


def test_arch_cuda_without_a_gpu_falls_back_to_the_cpu_with_a_warning(scene, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="no CUDA GPU is visible to torch: falling back to the CPU"):
        result = invoke("--arch", "cuda", "train", "--data", scene, "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME).meta["step"] == 3


def test_train_hints_at_a_finest_hash_level_far_finer_than_the_images(scene, tmp_path):
    result = _train(scene, tmp_path / "run", "--set", "finest_resolution=512")
    assert result.exit_code == 0, result.output
    assert "hint: " in result.output and "try --set finest_resolution=128" in result.output
    quiet = _train(scene, tmp_path / "quiet")
    assert quiet.exit_code == 0 and "hint: " not in quiet.output
