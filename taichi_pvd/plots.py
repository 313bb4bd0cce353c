"""Plots of training and distillation progress: validation PSNR against wall-clock time.

matplotlib is imported lazily and drawn through its Agg canvas (no pyplot, no display, no
global backend switch), so importing this module costs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .io.checkpoint import load_checkpoint
from .io.runs import checkpoint_path, read_history
from .io.storage import storage_errors

#: A run directory, or ``(label, history records)`` with ``elapsed_s`` and ``val_psnr_db``.
RunSpec = str | os.PathLike | tuple[str, Sequence[dict[str, Any]]]


def psnr_curve(history: Sequence[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """``(seconds, psnr_db)`` of the history records that carry a validation PSNR, in order."""
    points = [(float(r["elapsed_s"]), float(r["val_psnr_db"])) for r in history
              if r.get("val_psnr_db") is not None and r.get("elapsed_s") is not None]
    return [p[0] for p in points], [p[1] for p in points]


def _run_label(run_dir: Path) -> str:
    """The folder name, marked when the run was distilled (its PSNR is measured against the
    teacher's renderings, not the images)."""
    try:
        config = load_checkpoint(checkpoint_path(run_dir), expected_kind="run").config
    except Exception:  # noqa: BLE001 - the label is cosmetic; the history is what is plotted
        return run_dir.name
    if config.get("teacher"):
        return f"{run_dir.name} ({config['teacher'].get('model')} -> {config.get('model')}, vs teacher)"
    return f"{run_dir.name} ({config.get('model')})"


def _curves(runs: Sequence[RunSpec]) -> list[tuple[str, list[float], list[float]]]:
    curves = []
    for spec in runs:
        if isinstance(spec, tuple):
            label, history = spec
        else:
            run_dir = Path(spec)
            history = read_history(run_dir)
            if not history:
                raise ConfigError(f"{run_dir} has no history.jsonl: pass a run folder written by training or distillation")
            label = _run_label(run_dir)
        seconds, values = psnr_curve(history)
        curves.append((label, seconds, values))
    if not any(seconds for _, seconds, _ in curves):
        raise ConfigError("no validation PSNR recorded in these runs: train with validation along the way (val_every) to record it")
    return curves


@storage_errors()
def plot_psnr_vs_time(runs: Sequence[RunSpec], out_png: str | os.PathLike, *,
                      title: str = "Validation PSNR against time") -> Path:
    """Plot validation PSNR (dB) against elapsed optimisation seconds for one or more runs.

    Args:
        runs: run directories (their ``history.jsonl`` is read) or ``(label, records)``
            pairs, records being dicts with ``elapsed_s`` and ``val_psnr_db``; records without
            a PSNR are skipped. One line per run, with markers at the recorded points.
        out_png: the PNG file to write (parent folders are created).
        title: plot title.

    Returns:
        The path written. Raises :class:`ConfigError` when no run recorded any PSNR, or a run
        directory has no history.
    """
    if not runs:
        raise ConfigError("plot_psnr_vs_time needs at least one run")
    curves = _curves(runs)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for label, seconds, values in curves:
        axes.plot(seconds, values, marker="o", markersize=3, linewidth=1.5, label=label)
    axes.set_xlabel("optimisation time (s)")
    axes.set_ylabel("validation PSNR (dB)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png")
    return out
