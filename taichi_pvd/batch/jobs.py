"""Running one job of a batch in its run folder, through the library's own entry points
(:func:`~taichi_pvd.training.api.train`, :func:`~taichi_pvd.distill.api.distill`,
:func:`~taichi_pvd.evaluation.evaluate_run`): a run folder that holds a checkpoint is resumed,
a finished run is only scored, a scored run is left alone."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

from ..io.runs import CHECKPOINT_NAME, METRICS_NAME
from ..training.loop import ProgressFn
from .graph import Job


class RunStage(Enum):
    """How far the run in a job's folder got."""

    NEW = "new"
    """No checkpoint: the run starts."""
    STOPPED = "stopped"
    """A checkpoint but no final metrics: the run resumes from it."""
    FINISHED = "finished"
    """Final metrics without a test score: the run is scored."""
    SCORED = "scored"
    """Final metrics with the test score: the job is done."""


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``metrics.json``, or ``None`` where there is none (or a damaged one)."""
    try:
        metrics = json.loads((run_dir / METRICS_NAME).read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def run_stage(run_dir: Path) -> RunStage:
    """How far the run in ``run_dir`` got (see :class:`RunStage`)."""
    metrics = read_metrics(run_dir)
    if metrics is not None and (run_dir / CHECKPOINT_NAME).exists():
        return RunStage.SCORED if metrics.get("test_psnr_db") is not None else RunStage.FINISHED
    return RunStage.STOPPED if (run_dir / CHECKPOINT_NAME).exists() else RunStage.NEW


def run_job(job: Job, out_root: Path, on_progress: ProgressFn | None = None) -> dict[str, Any]:
    """Bring ``job``'s run folder under ``out_root`` to :attr:`RunStage.SCORED`: train or
    distil (resuming a stopped run), then score the run on the test split. Returns the run's
    final metrics (with ``test_psnr_db``)."""
    from .. import backend
    from ..distill.api import distill
    from ..evaluation import evaluate_run
    from ..io.runs import load_run
    from ..training.api import train

    run_dir = out_root / job.folder
    stage = run_stage(run_dir)
    if stage in (RunStage.NEW, RunStage.STOPPED):
        resume = stage is RunStage.STOPPED
        if job.is_distillation:
            distill(source=job.source, target=job.model, teacher=out_root / job.depends_on[0], out=run_dir,
                    preset=job.preset, student_overrides=job.fields, distill_overrides=job.options, resume=resume,
                    on_progress=on_progress)
        else:
            train(data=job.data, model=job.model, out=run_dir, preset=job.preset, field_overrides=job.fields,
                  train_overrides=job.options, resume=resume, on_progress=on_progress)
    if stage is not RunStage.SCORED:
        evaluate_run(load_run(run_dir, backend.device()), split="test", n_views=job.test_views, write_images=False)
    return read_metrics(run_dir) or {}
