"""The batch's one summary, written into its output folder: :data:`RESULTS_JSON` (a row a job)
and :data:`RESULTS_TABLE` (per scene, the teachers and the distillation matrix: teacher and
student test PSNR, the gap between them, seconds of optimisation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io.runs import write_json
from .graph import JobGraph
from .jobs import read_metrics
from .queue import JobQueue

RESULTS_JSON = "batch-results.json"
RESULTS_TABLE = "batch-results.md"


def summary_rows(graph: JobGraph, queue: JobQueue, out_root: Path) -> list[dict[str, Any]]:
    """One row a job: its state in the queue, its counters in this batch (``claims``,
    ``completions``; 0 for a job done before), the error of a failed job, and the figures of
    its run folder (``test_psnr_db``, ``steps``, ``seconds``; a distillation also its
    teacher's ``teacher_test_psnr_db`` and ``gap_db``, teacher minus student)."""
    states = queue.states()
    rows = []
    for job in graph:
        metrics = read_metrics(out_root / job.folder) or {}
        row: dict[str, Any] = {
            "job": job.name, "scene": job.scene,
            "teacher": job.source or job.model, "student": job.model if job.is_distillation else None,
            "state": states[job.name].state, "run_dir": str(out_root / job.folder),
            "claims": queue.counter("claims", job.name), "completions": queue.counter("completions", job.name),
            "test_psnr_db": metrics.get("test_psnr_db"), "steps": metrics.get("steps"),
            "seconds": metrics.get("distill_seconds" if job.is_distillation else "train_seconds"),
        }
        if job.is_distillation:
            teacher = (read_metrics(out_root / job.depends_on[0]) or {}).get("test_psnr_db")
            row["teacher_test_psnr_db"] = teacher
            row["gap_db"] = None if teacher is None or row["test_psnr_db"] is None else teacher - row["test_psnr_db"]
        error = queue.error(job.name)
        if error is not None:
            row["error"] = error
        rows.append(row)
    return rows


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def matrix_table(rows: list[dict[str, Any]]) -> str:
    """The summary as markdown: per scene, a table of its teachers and the distillation matrix."""
    lines: list[str] = []
    for scene in dict.fromkeys(row["scene"] for row in rows):
        lines += [f"## {scene}", "", "| teacher | steps | time (s) | test PSNR (dB) | state |", "| --- | --- | --- | --- | --- |"]
        ours = [row for row in rows if row["scene"] == scene]
        for row in ours:
            if row["student"] is None:
                lines.append(f"| {row['teacher']} | {_number(row['steps'], 'd')} | {_number(row['seconds'], '.0f')} | "
                             f"{_number(row['test_psnr_db'], '.2f')} | {_state(row)} |")
        lines += ["", "| teacher -> student | steps | time (s) | teacher (dB) | student (dB) | gap (dB) | state |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for row in ours:
            if row["student"] is not None:
                lines.append(f"| {row['teacher']} -> {row['student']} | {_number(row['steps'], 'd')} | "
                             f"{_number(row['seconds'], '.0f')} | {_number(row['teacher_test_psnr_db'], '.2f')} | "
                             f"{_number(row['test_psnr_db'], '.2f')} | {_number(row['gap_db'], '.2f')} | {_state(row)} |")
        lines.append("")
    return "\n".join(lines)


def _state(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['state']}: {row['error']}".replace("|", "/").replace("\n", " ")
    return row["state"]


def write_summary(out_root: Path, plan: Path, rows: list[dict[str, Any]]) -> tuple[Path, Path]:
    """Write :data:`RESULTS_JSON` (``plan`` and ``jobs``: the rows) and :data:`RESULTS_TABLE`
    into ``out_root``; returns their paths."""
    out_root.mkdir(parents=True, exist_ok=True)
    write_json(out_root / RESULTS_JSON, {"plan": str(plan), "jobs": rows})
    table = out_root / RESULTS_TABLE
    table.write_text(f"# Batch {plan.name}\n\n{matrix_table(rows)}")
    return out_root / RESULTS_JSON, table
