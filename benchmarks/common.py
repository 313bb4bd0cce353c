"""Shared helpers of the benchmark scripts: the result file convention of DESIGN.md."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Ground-truth validation views a benchmark run scores as it goes (the training run's
#: ``val_psnr_db``, a distillation's ``monitor_psnr_db``): the same views on both sides of the
#: time-to-quality comparison. (Results recorded before this constant: 2 views for training, 4
#: for distillation.)
VALIDATION_VIEWS = 4


def card_name() -> str:
    """The GPU as the driver names it, or ``cpu-<n>cores``."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu-{os.cpu_count()}cores"


def card_slug(card: str) -> str:
    """Short file-name form of a card name: ``h100``, ``h200``, ``cpu``..."""
    low = card.lower()
    for key in ("h100", "h200", "a100", "l40", "4090", "3090"):
        if key in low:
            return key
    return "cpu" if low.startswith("cpu") else low.replace(" ", "-")


def commit() -> str:
    """The git commit of the working tree (with ``+dirty`` when it has changes), or the value
    of ``PVD_COMMIT`` where there is no git repository (the GPU machine gets a plain copy)."""
    if os.environ.get("PVD_COMMIT"):
        return os.environ["PVD_COMMIT"]
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=root, text=True, stderr=subprocess.DEVNULL).strip()
        dirty = subprocess.check_output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, text=True).strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_result(benchmark: str, scene: str, figures: dict[str, Any], out_dir: Path | None = None) -> Path:
    """Write ``<benchmark>-<scene>-<card>.json`` with card, commit, command, scene and date
    beside ``figures``; returns its path. ``out_dir`` defaults to ``benchmarks/results``, or
    ``$PVD_RESULTS_DIR`` when set. ``$PVD_BENCH_NOTE`` (e.g. what else shared the GPU) is
    recorded as ``note``."""
    card = card_name()
    out_dir = Path(out_dir or os.environ.get("PVD_RESULTS_DIR") or RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": benchmark,
        "card": card,
        "commit": commit(),
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "scene": scene,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        **({"note": os.environ["PVD_BENCH_NOTE"]} if os.environ.get("PVD_BENCH_NOTE") else {}),
        **figures,
    }
    path = out_dir / f"{benchmark}-{scene}-{card_slug(card)}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
