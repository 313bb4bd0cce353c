"""Merge result files of the same benchmark (e.g. from two device calls) into one: the ``runs``
lists are united, a later file's entry replacing an earlier one with the same key.

Usage: ``python benchmarks/merge_results.py OUT.json IN1.json IN2.json ...``. Top-level fields
(card, commit, command, date) come from the last input; each run keeps the commit, command and
date of the file it came from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KEYS = {"train": ("model", "label"), "distill": ("teacher", "student", "variant", "label"), "render_fps": ("model",)}


def merge(paths: list[Path]) -> dict:
    """The merged record of the result files at ``paths`` (oldest first)."""
    merged: dict = {}
    runs: dict[tuple, dict] = {}
    for path in paths:
        record = json.loads(path.read_text())
        key = KEYS[record["benchmark"]]
        for run in record.get("runs", []):
            run = {**run, **{k: record[k] for k in ("commit", "command", "date") if k not in run}}
            runs[tuple(run.get(k) for k in key)] = run
        merged = {k: v for k, v in record.items() if k != "runs"}
    merged["runs"] = list(runs.values())
    return merged


def main() -> None:
    out, *inputs = (Path(a) for a in sys.argv[1:])
    out.write_text(json.dumps(merge(inputs), indent=2) + "\n")


if __name__ == "__main__":
    main()
