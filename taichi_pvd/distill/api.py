"""The library entry point behind ``pvd-ti distill``: find and check the teacher, build the
student, distil."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from .. import backend
from ..data.camera_rig import CameraRig
from ..errors import ArchitectureMismatch, CheckpointError, NoRunFound
from ..fields import field_class, make_config, make_field
from ..io.checkpoint import load_checkpoint
from ..io.run_folder import claim_run_folder, file_fingerprint
from ..io.runs import CHECKPOINT_NAME, load_run
from ..io.storage import storage_errors
from ..memory import check_field_memory, check_loop_memory
from ..option_types import check_option_types, config_with_options
from ..presets import Preset, get_preset, merge_settings, training_preset
from ..rendering.volume import MarchingConfig
from ..training.config import TrainConfig
from ..training.api import run_in_folder
from ..training.interrupts import graceful_termination, raise_if_stop_requested
from ..training.loop import ProgressFn, ValidateFn
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


def resolve_distill_config(student_model: str, overrides: dict[str, Any] | None = None,
                           preset: str | Preset = "full") -> DistillConfig:
    """The config of a distillation into a ``student_model`` field: :class:`DistillConfig`'s
    defaults, then the preset's distillation options for the student
    (:meth:`Preset.distill_options`), then the user's ``overrides`` (``None`` values are
    ignored; ``marching`` may be a partial dict of :class:`MarchingConfig` fields)."""
    field_class(student_model)
    values = merge_settings(get_preset(preset).distill_options(student_model), overrides)
    return config_with_options(DistillConfig, values, "distillation option")


def default_distill_dir(teacher_dir: Path, student_model: str) -> Path:
    """``runs/<teacher folder>-to-<student>`` beside the teacher."""
    return teacher_dir.parent / f"{teacher_dir.name}-to-{student_model}"


def distill(*, source: str, target: str, teacher: str | Path | None = None, out: str | Path | None = None,
            preset: str | Preset | None = None, student_overrides: dict[str, Any] | None = None,
            distill_overrides: dict[str, Any] | None = None, resume: bool = False, overwrite: bool = False,
            force: bool = False, runs_root: str | Path = "runs", on_progress: ProgressFn | None = None, on_ready=None,
            on_validate: ValidateFn | None = None) -> dict[str, Any]:
    """Distil the ``source``-architecture run ``teacher`` (default: the latest such run under
    ``runs_root``) into a new ``target``-architecture student written to ``out``.

    Settings: the library defaults, then ``preset`` (a name or a :class:`Preset`; default
    ``auto`` for a teacher trained on the demo scene, ``full`` otherwise), then
    ``distill_overrides`` and ``student_overrides``. Returns the final metrics dict (with
    ``run_dir``). ``on_ready(distiller)`` is called before the first step;
    ``on_validate(distiller)`` after every validation, its figures recorded in the run's history
    (e.g. the student scored on ground-truth views, which the losses never see).

    The run folder is claimed as :func:`~taichi_pvd.io.run_folder.claim_run_folder` says.
    ``resume`` continues the distillation there from the teacher it recorded (same architecture,
    same checkpoint content); ``force`` continues it from another teacher.
    """
    field_class(source)
    check_option_types(field_class(target).config_class, student_overrides or {}, f"{target} field option")
    teacher_dir = teacher_run_dir(source, teacher, runs_root)
    with graceful_termination(), storage_errors():
        return _distill(source, target, teacher_dir, out, preset, student_overrides, distill_overrides,
                        resume, overwrite, force, on_progress, on_ready, on_validate)


def _distill(source, target, teacher_dir, out, preset, student_overrides, distill_overrides, resume, overwrite,
             force, on_progress, on_ready, on_validate) -> dict[str, Any]:
    backend.init()
    raise_if_stop_requested()
    device = backend.device()
    loaded = load_run(teacher_dir, device)
    if loaded.model != source:
        raise ArchitectureMismatch(teacher_dir, loaded.model, source, "teacher")
    if "camera_rig" not in loaded.config:
        raise CheckpointError(f"teacher {teacher_dir} records no camera rig; retrain it with this version")
    rig = CameraRig(**loaded.config["camera_rig"])
    chosen = training_preset(preset, demo_scene=bool(loaded.config.get("scene", {}).get("demo")))
    config = resolve_distill_config(target, distill_overrides, chosen)
    if config.marching == MarchingConfig() and "train" in loaded.config:
        config = dataclasses.replace(config, marching=TrainConfig.from_dict(loaded.config["train"]).marching)
    out_dir = Path(out) if out is not None else default_distill_dir(teacher_dir, target)
    with claim_run_folder(out_dir, resume=resume, overwrite=overwrite) as folder:
        raise_if_stop_requested()
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        student_options = {**chosen.field_options(target, distill_steps=config.steps), **(student_overrides or {})}
        check_loop_memory(config.batch_rays, device)
        check_field_memory(make_config(target, student_options), device)
        student = make_field(target, loaded.field.aabb.detach().cpu(), student_options, generator=generator)
        teacher_facts = {
            "path": str(teacher_dir.resolve()),
            "model": loaded.model,
            "fingerprint": file_fingerprint(teacher_dir / CHECKPOINT_NAME),
        }
        run_info = {
            "scene": loaded.config.get("scene", {}),
            "teacher": {
                **teacher_facts,
                "val_psnr_db": loaded.meta.get("val_psnr_db"),
                "provenance": loaded.config.get("teacher"),
            },
        }
        distiller = Distiller(loaded.field, loaded.grid, student, rig, config, out_dir, device, run_info=run_info)
        metrics = run_in_folder(distiller, folder, {"teacher": teacher_facts}, force=force, on_ready=on_ready,
                                on_progress=on_progress, on_validate=on_validate)
    return {**metrics, "teacher": str(teacher_dir), "run_dir": str(out_dir)}
