"""The CLI's wording of the library's errors: the same facts, with the command's flags.

The library's messages name its own options (``resume=True``, ``batch_rays``); an error whose
advice names options carries its facts (:mod:`taichi_pvd.errors`), and :func:`user_message`
words that advice with the flags of the command that failed. Where the command has no flag for
an option, the library's message stands.
"""

from __future__ import annotations

import click

from taichi_pvd.advice import Advice
from taichi_pvd.errors import (
    ArchitectureMismatch,
    NoRunFound,
    NotEnoughMemory,
    NothingToResume,
    OptionConflict,
    OptionValueError,
    OutputFolderUnusable,
    PvdError,
    ResumeMismatch,
    RunDiverged,
    RunFolderInUse,
    RunFolderLocked,
)

#: Library option -> the name of the command parameter that sets it, where they differ.
_PARAMETER_NAMES = {"n_views": "views", "time_limit_s": "time_limit", "snapshot_times_s": "snapshot_times",
                    "scene_size": "size", "video_frames": "frames", "preset": "preset_name"}


def flag(command: click.Command | None, option: str) -> str | None:
    """The flag of ``command`` that sets the library option ``option`` (``batch_rays`` ->
    ``--batch-rays``, ``source`` -> ``--from``), or None where the command has none."""
    name = _PARAMETER_NAMES.get(option, option)
    for param in command.params if command is not None else ():
        if isinstance(param, click.Option) and param.name == name:
            return max(param.opts, key=len)
    return None


def _worded(err: PvdError, command: click.Command | None) -> str | None:
    """The CLI's message for ``err``, or None to keep the library's."""
    if isinstance(err, NotEnoughMemory):
        option = flag(command, err.option)
        if option is None and _has_flag(command, "--set"):
            return f"--set {err.option}={err.value} {err.problem.removeprefix(str(err.value) + ' ')}"
        return option and f"{option} {err.problem}"
    if isinstance(err, OptionValueError):
        option = flag(command, err.option)
        return option and f"{option} {err.problem}"
    if isinstance(err, OptionConflict):
        first, second = (flag(command, name) for name in err.options)
        return first and second and f"{first} and {second} contradict each other: choose one"
    if isinstance(err, RunFolderInUse):
        resume, overwrite, out = (flag(command, name) for name in ("resume", "overwrite", "out"))
        return resume and overwrite and out and (
            f"{err.folder} already holds a run: pass {resume} to continue it, {overwrite} to replace it, "
            f"or choose another {out}")
    if isinstance(err, RunFolderLocked):
        out = flag(command, "out")
        by = f" ({err.holder})" if err.holder else ""
        return out and f"{err.folder} is in use by another run{by}: wait for it to finish or choose another {out}"
    if isinstance(err, NothingToResume):
        resume = flag(command, "resume")
        return resume and (f"nothing to resume: {err.folder} holds no {err.checkpoint}; "
                           f"drop {resume} to start a new run")
    if isinstance(err, OutputFolderUnusable):
        out = flag(command, "out") or flag(command, "out_dir")
        return out and f"{err.folder} {err.problem}: choose another {out} folder"
    if isinstance(err, NoRunFound):
        picker = flag(command, "teacher") or flag(command, "run_dir")
        train = "pvd-ti train" + (f" --model {err.model}" if err.model else "")
        return picker and f"{err.what_is_missing()}: train one first (`{train}`) or pass {picker} RUN_DIR"
    if isinstance(err, ArchitectureMismatch):
        if err.role == "teacher":
            source, teacher = flag(command, "source"), flag(command, "teacher")
            return source and teacher and (
                f"{err.what_is_wrong()}: pass {source} {err.found} or a {err.expected} run as {teacher}")
        out = flag(command, "out")
        return out and f"{err.what_is_wrong()}: resume with the same architecture or choose another {out}"
    if isinstance(err, ResumeMismatch):
        resume, force = flag(command, "resume"), flag(command, "force")
        return resume and force and (f"{err.what_is_wrong()}: resume with the same {err.what}, or pass "
                                     f"{resume} {force} to continue anyway")
    if isinstance(err, RunDiverged):
        lr, seed = flag(command, "lr"), flag(command, "seed")
        return lr and seed and f"{err.what_happened()}. Try a lower {lr} or another {seed}"
    return None


def _has_flag(command: click.Command | None, name: str) -> bool:
    return any(isinstance(p, click.Option) and name in p.opts for p in (command.params if command else ()))


def user_message(err: PvdError, command: click.Command | None) -> str:
    """The one-line message ``pvd-ti`` prints for ``err`` raised while running ``command``."""
    message = _worded(err, command) or str(err)
    return " ".join(message.split()) or type(err).__name__


#: The flag that sets any option of a kind, where the command has no flag of the option's own.
_SETTERS = {"field": "--set", "training": "--train-set", "distillation": "--distill-set"}


def advice_message(advice: Advice, command: click.Command | None) -> str:
    """``advice`` worded with the flags of ``command``: the option's own flag where it has one
    (``--batch-rays``), else ``--set`` / ``--train-set`` / ``--distill-set OPTION=VALUE``; the
    library's words where the command has neither."""
    own = None if advice.kind == "field" else flag(command, advice.option)
    if own is not None:
        return f"{advice.finding}; {advice.remedy(own, separator=' ')}"
    setter = _SETTERS[advice.kind]
    params = command.params if command is not None else []
    if not any(isinstance(p, click.Option) and setter in p.opts for p in params):
        return str(advice)
    return f"{advice.finding}; {advice.remedy(f'{setter} {advice.option}')}"
