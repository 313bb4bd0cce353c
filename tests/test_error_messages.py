"""The library's messages name its own options, never a CLI flag; the CLI words the same advice
with the flags of the command that failed."""

from pathlib import Path

import pytest

from taichi_pvd.advice import Advice
from taichi_pvd.errors import (
    ArchitectureMismatch,
    NoRunFound,
    NothingToResume,
    OptionConflict,
    OptionValueError,
    OutputFolderUnusable,
    RunDiverged,
    RunFolderInUse,
)
from taichi_pvd_cli.error_messages import advice_message, user_message
from taichi_pvd_cli.main import main

CASES = [
    ("eval", OptionValueError("n_views", "must be positive, got 0"), "--views must be positive, got 0"),
    ("render", OptionValueError("fps", "must be positive, got 0"), "--fps must be positive, got 0"),
    ("train", OptionConflict("resume", "overwrite"), "--resume and --overwrite contradict each other: choose one"),
    ("distill", RunFolderInUse(Path("runs/a")),
     "runs/a already holds a run: pass --resume to continue it, --overwrite to replace it, or choose another --out"),
    ("train", NothingToResume(Path("runs/a"), "checkpoint.pt"),
     "nothing to resume: runs/a holds no checkpoint.pt; drop --resume to start a new run"),
    ("demo", OutputFolderUnusable(Path("runs/demo"), "is a file"), "runs/demo is a file: choose another --out folder"),
    ("render", NoRunFound(Path("runs")),
     "no run found under runs/: train one first (`pvd-ti train`) or pass --run RUN_DIR"),
    ("distill", NoRunFound(Path("runs"), "hash", "lego"),
     "no 'hash' run found under runs/ for scene 'lego': train one first (`pvd-ti train --model hash`) "
     "or pass --teacher RUN_DIR"),
    ("distill", ArchitectureMismatch(Path("runs/t"), "hash", "vm", "teacher"),
     "teacher runs/t is a 'hash' model, not 'vm': pass --from hash or a vm run as --teacher"),
    ("train", ArchitectureMismatch(Path("runs/a"), "hash", "grid", "resume"),
     "runs/a holds a 'hash' run, not 'grid': resume with the same architecture or choose another --out"),
    ("distill", RunDiverged("loss became nan", 7, Path("runs/a")),
     "loss became nan at step 7; the last good checkpoint in runs/a is kept. Try a lower --lr or another --seed"),
]


@pytest.mark.parametrize("command,err,expected", CASES, ids=[type(c[1]).__name__ + "-" + c[0] for c in CASES])
def test_the_cli_words_the_advice_with_the_commands_flags(command, err, expected):
    assert "--" not in str(err) and "pvd-ti" not in str(err)
    assert user_message(err, main.commands[command]) == expected


def test_the_library_message_stands_where_the_command_has_no_flag_for_an_option():
    err = RunDiverged("loss became nan", 7, Path("runs/a"))
    assert "--lr" not in [opt for p in main.commands["demo"].params for opt in p.opts]
    assert user_message(err, main.commands["demo"]) == str(err)
    assert "lr" in str(err)


ADVICE_CASES = [
    ("train", Advice("too fine", "finest_resolution", "field", 512), "too fine; try --set finest_resolution=512"),
    ("distill", Advice("bare grid", "batch_rays", "distillation"), "bare grid; lower --batch-rays"),
    ("distill", Advice("few cameras", "virtual_cameras", "distillation", 600),
     "few cameras; try --distill-set virtual_cameras=600"),
    ("eval", Advice("too fine", "finest_resolution", "field", 512),
     "too fine; try the field option finest_resolution=512"),
]


@pytest.mark.parametrize("command,advice,expected", ADVICE_CASES, ids=[f"{c}-{a.option}" for c, a, _ in ADVICE_CASES])
def test_the_cli_words_advice_with_the_flags_of_the_command(command, advice, expected):
    assert advice_message(advice, main.commands[command]) == expected
