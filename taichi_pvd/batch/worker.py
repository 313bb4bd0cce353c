"""The worker loop of a batch: take the next ready job from the shared queue, run it, record
how it ended; until every job is done or failed. One process alone or each of torchrun's
workers runs the same loop; rank 0 then writes the summary.

A job that raises is recorded failed with its message and the others go on (a distillation
whose teacher failed is not run). A worker stopped by SIGTERM (torchrun stopping a group whose
other worker died) saves its run's checkpoint and gives the job back; the job of a worker that
died outright is claimed again (see :mod:`.queue`); either way the next worker resumes it from
its checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import PvdError
from ..training.interrupts import graceful_termination, raise_if_stop_requested
from ..training.loop import ProgressFn
from .graph import Job
from .jobs import RunStage, run_job, run_stage
from .launch import Launch
from .plan import Plan
from .queue import Heartbeat, JobQueue
from .summary import summary_rows, write_summary

#: Seconds between two looks at the queue while no job is ready.
POLL_SECONDS = 1.0

#: ``on_event(event, job, detail)``: ``event`` is ``start``, ``done``, ``failed`` (``detail``:
#: the error message) or ``released``.
EventFn = Callable[[str, Job, str], None]


def failure_message(exc: Exception) -> str:
    """What a failed job's row says: a user error's message, or the exception's type and text."""
    return str(exc) if isinstance(exc, PvdError) else f"{type(exc).__name__}: {exc}"


def run_batch(plan: Plan, out_root: Path, launch: Launch | None = None, *,
              on_event: EventFn | None = None, progress_for: Callable[[Job], ProgressFn | None] | None = None,
              on_queue: Callable[[JobQueue], None] | None = None) -> list[dict[str, Any]] | None:
    """Run the jobs of ``plan`` into ``out_root`` as the worker ``launch`` describes (default:
    from the environment). Returns the summary rows on rank 0 (also written, see
    :func:`~taichi_pvd.batch.summary.write_summary`), ``None`` on the other ranks.

    ``on_event`` hears of each job this worker starts and ends; ``progress_for(job)`` gives the
    progress callback of a job's optimisation; ``on_queue(queue)`` is called once the queue is
    set up (e.g. to show the whole batch's progress from it)."""
    launch = launch or Launch.from_environment()
    out_root = Path(out_root)
    queue = JobQueue(launch.connect(), plan.jobs, node=launch.node, restart=launch.restart, rank=launch.rank)
    queue.start(lambda job: run_stage(out_root / job.folder) is RunStage.SCORED)
    if on_queue is not None:
        on_queue(queue)
    tell = on_event or (lambda event, job, detail: None)
    with graceful_termination(), Heartbeat(queue, launch.connect):
        while True:
            raise_if_stop_requested()
            job = queue.claim()
            if job is None:
                if queue.settled():
                    break
                time.sleep(POLL_SECONDS)
                continue
            tell("start", job, "")
            try:
                run_job(job, out_root, progress_for(job) if progress_for else None)
            except KeyboardInterrupt:
                queue.release(job)
                tell("released", job, "")
                raise
            except Exception as exc:  # noqa: BLE001 - a failed job is recorded; the batch goes on
                queue.fail(job, failure_message(exc))
                tell("failed", job, failure_message(exc))
            else:
                queue.finish(job)
                tell("done", job, "")
    if launch.rank != 0:
        return None
    rows = summary_rows(plan.jobs, queue, out_root)
    write_summary(out_root, plan.path, rows)
    return rows
