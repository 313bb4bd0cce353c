"""What a run directory holds, for ``pvd-ti info``: architecture, exact parameter count, size on
disk, where it came from (training on a scene, or distillation from a chain of teachers), its
recorded metrics and a summary of its configuration."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointError, NoRunFound
from .io.runs import CHECKPOINT_NAME, METRICS_NAME, load_run, read_history

#: Where ``pvd-ti eval`` writes its summary inside a run directory.
EVAL_METRICS = Path("eval") / "metrics.json"
#: Settings shown from a training or distillation config (the rest stays in the checkpoint).
_TRAIN_KEYS = ("steps", "batch_rays", "lr", "seed", "downscale", "grid_resolution")
_DISTILL_KEYS = ("steps", "stage1_steps", "stage2_steps", "batch_rays", "lr", "seed", "feature_loss",
                 "density_clip", "blockwise", "init_head_from_teacher")
#: A recorded teacher chain deeper than this is cut (a guard against a corrupted config).
_MAX_CHAIN = 32


def latest_run(root: str | os.PathLike = "runs") -> Path:
    """The run directory under ``root`` (searched recursively) whose checkpoint was written
    last; :class:`~taichi_pvd.errors.NoRunFound` when there is none."""
    root = Path(root)
    checkpoints = list(root.rglob(CHECKPOINT_NAME)) if root.is_dir() else []
    if not checkpoints:
        raise NoRunFound(root)
    return max(checkpoints, key=lambda p: p.stat().st_mtime).parent


@dataclass
class TeacherLink:
    """One teacher in a distilled run's ancestry, as recorded at distillation time."""

    model: str
    path: str
    val_psnr_db: float | None
    """The teacher's own validation PSNR when it was used (dB)."""
    exists: bool
    """Whether the teacher's folder is still on this machine."""


@dataclass
class RunInfo:
    """Facts about one run directory."""

    path: Path
    model: str
    num_parameters: int
    """Exact number of trainable scalars of the field."""
    checkpoint_bytes: int
    run_bytes: int
    """Size of every file in the run directory (renders and evaluations included)."""
    origin: str
    """``'trained'`` or ``'distilled'``."""
    scene: dict[str, Any]
    space: str
    """Where the field lives: ``'box'`` (a bounded scene's box), ``'ndc'`` (a forward-facing
    scene's normalized device coordinates) or ``'contracted'`` (an unbounded scene)."""
    teachers: list[TeacherLink]
    """The teacher chain, nearest first (empty for a run trained from images)."""
    metrics: dict[str, Any]
    """``metrics.json`` as written by training/distillation and updated by evaluation."""
    evaluation: dict[str, Any] | None
    """``eval/metrics.json`` without its per-view list, or None before ``pvd-ti eval``."""
    field_config: dict[str, Any]
    settings: dict[str, Any]
    """The main training or distillation settings."""
    history_records: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        return {
            "path": str(self.path), "model": self.model, "num_parameters": self.num_parameters,
            "checkpoint_bytes": self.checkpoint_bytes, "run_bytes": self.run_bytes,
            "origin": self.origin, "scene": self.scene, "space": self.space,
            "teachers": [vars(t) for t in self.teachers], "metrics": self.metrics,
            "evaluation": self.evaluation, "field": self.field_config, "settings": self.settings,
            "history_records": self.history_records,
        }


def teacher_chain(config: dict[str, Any]) -> list[TeacherLink]:
    """The teachers recorded in a run config (``teacher`` and its nested ``provenance``),
    nearest first."""
    chain = []
    record = config.get("teacher")
    while isinstance(record, dict) and len(chain) < _MAX_CHAIN:
        path = str(record.get("path", ""))
        chain.append(TeacherLink(model=str(record.get("model", "?")), path=path,
                                 val_psnr_db=record.get("val_psnr_db"),
                                 exists=bool(path) and Path(path).is_dir()))
        record = record.get("provenance")
    return chain


def scene_space(config: dict[str, Any]) -> str:
    """``'contracted'``, ``'ndc'`` or ``'box'``: the space of the scene a run was made on, from
    the camera rig its config records (``'box'`` when it records none)."""
    rig = config.get("camera_rig") or {}
    if rig.get("contraction"):
        return "contracted"
    return "ndc" if rig.get("ndc") else "box"


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not readable JSON ({exc}): delete it and re-run the command that writes it") from exc


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def describe_run(run_dir: str | os.PathLike) -> RunInfo:
    """Collect the facts about ``run_dir`` (loads the field on the CPU to count parameters).

    Raises :class:`CheckpointError` for a folder without a readable checkpoint.
    """
    run = load_run(run_dir, "cpu")
    config = run.config
    distilled = "distill" in config or bool(config.get("teacher"))
    section = config.get("distill" if distilled else "train", {})
    keys = _DISTILL_KEYS if distilled else _TRAIN_KEYS
    settings = {k: section[k] for k in keys if k in section}
    if "grid_resolution" in config:
        settings["grid_resolution"] = config["grid_resolution"]
    evaluation = _read_json(run.path / EVAL_METRICS)
    if evaluation is not None:
        evaluation = {k: v for k, v in evaluation.items() if k != "views"}
    return RunInfo(
        path=run.path,
        model=run.model,
        num_parameters=run.field.num_parameters(),
        checkpoint_bytes=(run.path / CHECKPOINT_NAME).stat().st_size,
        run_bytes=_folder_bytes(run.path),
        origin="distilled" if distilled else "trained",
        scene=dict(config.get("scene") or {}),
        space=scene_space(config),
        teachers=teacher_chain(config),
        metrics=_read_json(run.path / METRICS_NAME) or {},
        evaluation=evaluation,
        field_config=dict(config.get("field") or {}),
        settings=settings,
        history_records=len(read_history(run.path)),
    )
