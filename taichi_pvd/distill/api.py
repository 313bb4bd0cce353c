"""The library entry point behind ``pvd-ti distill``: find and check the teacher, build the
student, distil."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from .. import backend
from ..data import load_scene
from ..data.camera_rig import CameraRig
from ..errors import ArchitectureMismatch, CheckpointError, NoRunFound
from ..fields import field_class, make_field
from ..io.checkpoint import load_checkpoint
from ..io.runs import CHECKPOINT_NAME, load_run
from ..option_types import check_option_types, config_with_options
from ..rendering.volume import MarchingConfig
from ..training.api import prepare_run_dir
from ..training.interrupts import graceful_termination
from ..training.loop import ProgressFn
from .config import DistillConfig
from .distiller import Distiller


def find_latest_run(model: str, root: Path = Path("runs"), scene_name: str | None = None) -> Path:
    """The most recently written run directory under ``root`` whose checkpoint holds a field
    of architecture ``model`` (and, if given, was trained on the scene named ``scene_name``)."""
    candidates = []
    for ckpt in root.glob(f"*/{CHECKPOINT_NAME}"):
        try:
            config = load_checkpoint(ckpt, expected_kind="run").config
        except CheckpointError:
            continue
        if config.get("model") != model:
            continue
        if scene_name is not None and config.get("scene", {}).get("name") != scene_name:
            continue
        candidates.append((ckpt.stat().st_mtime, ckpt.parent))
    if not candidates:
        raise NoRunFound(root, model, scene_name)
    return max(candidates)[1]


def teacher_run_dir(source: str, teacher: str | Path | None, runs_root: str | Path = "runs") -> Path:
    """The teacher's run folder: ``teacher`` when given, else the latest ``source`` run under
    ``runs_root``."""
    return Path(teacher) if teacher is not None else find_latest_run(source, Path(runs_root))


def trained_on_demo_scene(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` was trained on the embedded demo scene."""
    config = load_checkpoint(run_dir / CHECKPOINT_NAME, expected_kind="run").config
    return bool(config.get("scene", {}).get("demo"))


def resolve_distill_config(student_model: str, overrides: dict[str, Any] | None = None) -> DistillConfig:
    """:class:`DistillConfig` defaults, then the student architecture's ``distill_defaults``,
    then ``overrides`` (``None`` values ignored); ``lr`` left unset takes the student
    architecture's training default."""
    student = field_class(student_model)
    values = {**student.distill_defaults, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    if values.get("lr") is None:
        values["lr"] = float(student.train_defaults.get("lr", 1e-2))
    return config_with_options(DistillConfig, values, "distillation option")


def default_distill_dir(teacher_dir: Path, student_model: str) -> Path:
    """``runs/<teacher folder>-to-<student>`` beside the teacher."""
    return teacher_dir.parent / f"{teacher_dir.name}-to-{student_model}"


def distill(*, source: str, target: str, teacher: str | Path | None = None, out: str | Path | None = None,
            student_overrides: dict[str, Any] | None = None, distill_overrides: dict[str, Any] | None = None,
            resume: bool = False, overwrite: bool = False, runs_root: str | Path = "runs",
            on_progress: ProgressFn | None = None, on_ready=None,
            monitor_split: str | None = None) -> dict[str, Any]:
    """Distil the ``source``-architecture run ``teacher`` (default: the latest such run under
    ``runs_root``) into a new ``target``-architecture student written to ``out``.

    Returns the final metrics dict (with ``run_dir``). ``on_ready(distiller)`` is called before
    the first step. ``monitor_split`` (benchmarks only) also scores the student against that
    split's ground-truth images at each validation, recorded as ``monitor_psnr_db`` in the
    history; the losses never see those images.
    """
    field_class(source)
    check_option_types(field_class(target).config_class, student_overrides or {}, f"{target} field option")
    teacher_dir = teacher_run_dir(source, teacher, runs_root)
    backend.init()
    device = backend.device()
    loaded = load_run(teacher_dir, device)
    if loaded.model != source:
        raise ArchitectureMismatch(teacher_dir, loaded.model, source, "teacher")
    if "camera_rig" not in loaded.config:
        raise CheckpointError(f"teacher {teacher_dir} records no camera rig; retrain it with this version")
    rig = CameraRig(**loaded.config["camera_rig"])
    config = resolve_distill_config(target, distill_overrides)
    if config.marching == MarchingConfig() and "train" in loaded.config:
        config = dataclasses.replace(config, marching=MarchingConfig(**loaded.config["train"]["marching"]))
    out_dir = Path(out) if out is not None else default_distill_dir(teacher_dir, target)
    resuming = prepare_run_dir(out_dir, resume=resume, overwrite=overwrite)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    student_options = {**field_class(target).options_for_steps(config.steps), **(student_overrides or {})}
    student = make_field(target, loaded.field.aabb.detach().cpu(), student_options, generator=generator)
    run_info = {
        "scene": loaded.config.get("scene", {}),
        "teacher": {
            "path": str(teacher_dir.resolve()),
            "model": loaded.model,
            "val_psnr_db": loaded.meta.get("val_psnr_db"),
            "provenance": loaded.config.get("teacher"),
        },
    }
    monitor = None
    if monitor_split is not None:
        monitor = load_scene(loaded.config["scene"]["path"], monitor_split, background=(1.0, 1.0, 1.0),
                             device=device, downscale=int(loaded.config.get("train", {}).get("downscale", 1)))
    distiller = Distiller(loaded.field, loaded.grid, student, rig, config, out_dir, device, run_info=run_info,
                          monitor_scene=monitor)
    if resuming:
        distiller.resume()
    if on_ready is not None:
        on_ready(distiller)
    with graceful_termination():
        metrics = distiller.run(on_progress)
    return {**metrics, "teacher": str(teacher_dir), "run_dir": str(out_dir)}
