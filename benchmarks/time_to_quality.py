"""Time to quality: an mlp trained from scratch against an mlp distilled from a hash teacher,
from the histories recorded by ``benchmarks/train.py`` and ``benchmarks/distill.py`` in the
same device call (what else ran on the card is in each run's note).

Usage: ``python benchmarks/time_to_quality.py [--scene lego] [--card h100] [--scratch-label 5min]
[--distill-label time-to-quality ...] [--tag T]`` (one or more distillations, e.g. of 60 s and of
240 s; ``--tag`` keeps another call's pair beside the earlier ones, in a record named with ``-T``).
Writes ``time_to_quality-<scene>-<card>[-T].json`` (for each distillation, the seconds each side
needed to reach the from-scratch run's 5-minute PSNR (or its last, if it ran less), 31 and 32
dB on ground-truth validation views, and their ratios; ``null`` where a run never got there)
and the plot
``assets/media/<scene>-mlp-time-to-quality.png``, which each new run replaces (the results page
shows the latest run; older runs keep their JSON). Distillation time excludes the teacher's
training time, as in the paper.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR  # noqa: E402
from taichi_pvd.plots import plot_psnr_vs_time  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def first_time_at(history: list[dict], key: str, level: float) -> float | None:
    """Seconds at the first record whose ``key`` reaches ``level`` dB (None if none does)."""
    for record in history:
        if record.get(key) is not None and record[key] >= level:
            return float(record["elapsed_s"])
    return None


def level_times(scratch_history: list[dict], distill_history: list[dict], levels: dict[str, float]) -> dict:
    """Seconds each side needed to reach each level, and their ratio (None where one never did)."""
    figures = {}
    for name, level in levels.items():
        t_scratch = first_time_at(scratch_history, "val_psnr_db", level)
        t_distill = first_time_at(distill_history, "val_psnr_db", level)
        figures[name] = {
            "psnr_db": level,
            "scratch_seconds": t_scratch,
            "distill_seconds": t_distill,
            "speedup": (t_scratch / t_distill) if t_scratch and t_distill else None,
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene", default="lego")
    parser.add_argument("--card", default="h100")
    parser.add_argument("--scratch-label", default="5min", help="label of the mlp from-scratch run to compare")
    parser.add_argument("--distill-label", dest="distill_labels", action="append", default=None,
                        help="label of a hash -> mlp run (variant all) to compare; repeat for several runs of "
                             "different lengths (default: the unlabelled one)")
    parser.add_argument("--tag", default="", help="suffix of the record's name, e.g. the commit")
    args = parser.parse_args()
    suffix = f"-{args.tag}" if args.tag else ""
    labels = args.distill_labels or [None]
    train = json.loads((RESULTS_DIR / f"train-{args.scene}-{args.card}.json").read_text())
    distill = json.loads((RESULTS_DIR / f"distill-{args.scene}-{args.card}.json").read_text())
    scratch = next(r for r in train["runs"] if r["model"] == "mlp" and r.get("label") == args.scratch_label)
    students = [next(r for r in distill["runs"]
                     if (r["teacher"], r["student"], r["variant"], r.get("label")) == ("hash", "mlp", "all", label))
                for label in labels]
    scratch_history = scratch["history"]
    within_5_min = [h for h in scratch_history if h["elapsed_s"] <= 300 and h.get("val_psnr_db") is not None]
    levels = {"scratch_5min_or_last": within_5_min[-1]["val_psnr_db"], "31dB": 31.0, "32dB": 32.0}
    distillations, curves = [], [("mlp from scratch", scratch_history)]
    for label, student in zip(labels, students):
        history = [{"elapsed_s": h["elapsed_s"], "val_psnr_db": h["monitor_psnr_db"]} for h in student["history"]]
        distillations.append({
            "label": label,
            "commit": student["commit"],
            "distill_seconds": student["distill_seconds"],
            "distilled_test_psnr_db": student["student_test_psnr_db"],
            "teacher_test_psnr_db": student["teacher_test_psnr_db"],
            "validation_views": student.get("validation_views", 4),
            "levels": level_times(scratch_history, history, levels),
        })
        curves.append((f"hash -> mlp, {label or 'distillation'} ({student['distill_seconds']:.0f} s)", history))
    record = {
        "benchmark": "time_to_quality",
        "scene": args.scene,
        "card": train["card"],
        "commit": f"scratch {scratch['commit']}, distill {', '.join(sorted({s['commit'] for s in students}))}",
        "command": f"python benchmarks/time_to_quality.py --scene {args.scene} --card {args.card} "
                   f"--scratch-label {args.scratch_label}"
                   + "".join(f" --distill-label {label}" for label in labels if label)
                   + (f" --tag {args.tag}" if args.tag else ""),
        "date": students[-1]["date"],
        "note": f"scratch run: {scratch.get('note', 'alone on its GPU')}; distillations: "
                f"{students[-1].get('note', 'alone on its GPU')}; PSNR on ground-truth validation views (scratch: the first "
                f"{scratch.get('validation_views', 2)}, distillations: the first {students[-1].get('validation_views', 4)}), "
                "which the distillation losses never see",
        "scratch_test_psnr_db": scratch["test_psnr_db"],
        "scratch_train_seconds": scratch["train_seconds"],
        "distillations": distillations,
    }
    path = RESULTS_DIR / f"time_to_quality-{args.scene}-{args.card}{suffix}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    plot = ROOT / "assets" / "media" / f"{args.scene}-mlp-time-to-quality.png"
    plot_psnr_vs_time(curves, plot)
    print(json.dumps(distillations, indent=2))
    print(f"wrote {path} and {plot}")


if __name__ == "__main__":
    main()
