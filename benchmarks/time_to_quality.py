"""Time to quality: an mlp trained from scratch against an mlp distilled from a hash teacher,
from the histories recorded by ``benchmarks/train.py`` and ``benchmarks/distill.py`` in the
same device call (what else ran on the card is in each run's note).

Usage: ``python benchmarks/time_to_quality.py [--scene lego] [--card h100] [--scratch-label 5min]
[--distill-label time-to-quality]``. Writes
``time_to_quality-<scene>-<card>.json`` (seconds each run needed to reach the from-scratch
run's 5-minute PSNR (or its last, if it ran less), 31 and 32 dB on ground-truth validation
views, and their ratios; ``null`` where a run never got there) and the plot
``assets/media/<scene>-mlp-time-to-quality.png``. Distillation time excludes the teacher's
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scene", default="lego")
    parser.add_argument("--card", default="h100")
    parser.add_argument("--scratch-label", default="5min", help="label of the mlp from-scratch run to compare")
    parser.add_argument("--distill-label", default=None,
                        help="label of the hash -> mlp run (variant all) to compare (default: the unlabelled one)")
    args = parser.parse_args()
    train = json.loads((RESULTS_DIR / f"train-{args.scene}-{args.card}.json").read_text())
    distill = json.loads((RESULTS_DIR / f"distill-{args.scene}-{args.card}.json").read_text())
    scratch = next(r for r in train["runs"] if r["model"] == "mlp" and r.get("label") == args.scratch_label)
    student = next(r for r in distill["runs"]
                   if (r["teacher"], r["student"], r["variant"], r.get("label")) == ("hash", "mlp", "all", args.distill_label))
    scratch_history = scratch["history"]
    distill_history = [{"elapsed_s": h["elapsed_s"], "val_psnr_db": h["monitor_psnr_db"]} for h in student["history"]]
    within_5_min = [h for h in scratch_history if h["elapsed_s"] <= 300 and h.get("val_psnr_db") is not None]
    levels = {"scratch_5min_or_last": within_5_min[-1]["val_psnr_db"], "31dB": 31.0, "32dB": 32.0}
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
    record = {
        "benchmark": "time_to_quality",
        "scene": args.scene,
        "card": train["card"],
        "commit": f"scratch {scratch['commit']}, distill {student['commit']}",
        "command": f"python benchmarks/time_to_quality.py --scene {args.scene} --card {args.card} "
                   f"--scratch-label {args.scratch_label}"
                   + (f" --distill-label {args.distill_label}" if args.distill_label else ""),
        "date": student["date"],
        "note": f"scratch run: {scratch.get('note', 'alone on its GPU')}; distillation: "
                f"{student.get('note', 'alone on its GPU')}; PSNR on ground-truth validation views (scratch: the first "
                f"{scratch.get('validation_views', 2)}, distillation: the first {student.get('validation_views', 4)}), "
                "which the distillation losses never see",
        "teacher_test_psnr_db": student["teacher_test_psnr_db"],
        "scratch_test_psnr_db": scratch["test_psnr_db"],
        "scratch_train_seconds": scratch["train_seconds"],
        "distilled_test_psnr_db": student["student_test_psnr_db"],
        "distill_seconds": student["distill_seconds"],
        "levels": figures,
    }
    path = RESULTS_DIR / f"time_to_quality-{args.scene}-{args.card}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    plot = ROOT / "assets" / "media" / f"{args.scene}-mlp-time-to-quality.png"
    plot_psnr_vs_time([("mlp from scratch", scratch_history), ("hash -> mlp distillation", distill_history)], plot)
    print(json.dumps(figures, indent=2))
    print(f"wrote {path} and {plot}")


if __name__ == "__main__":
    main()
