"""Distil trained teachers into students, score each student on the test split, record them.

Usage::

    python benchmarks/distill.py --data .device-kit/data/nerf_synthetic/lego \
        --teacher hash=RUN_DIR [--teacher vm=RUN_DIR ...] --pairs hash:grid,hash:mlp \
        [--steps 3000] [--stage1-steps 300] [--stage2-steps 500] [--batch-rays 4096] \
        [--variant all|no-feature-loss|no-density-clip|no-blockwise] [--distill-set KEY=VALUE ...]
        [--test-views 50] [--label L] [--keep-runs DIR]

Each teacher's own test PSNR is scored too (once per teacher). Writes or updates
``benchmarks/results/distill-<scene>-<card>.json``: one entry per (teacher, student, variant,
label) with teacher and student test PSNR/SSIM, distillation wall time (optimisation only) and the
student's PSNR-against-time history (``monitor_psnr_db`` on ground-truth validation views,
which the losses never see). Student run folders are removed after scoring unless ``--keep-runs``
names a folder to keep them in (``DIR/<teacher>-to-<student>``, for renders and exports).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR, VALIDATION_VIEWS, card_name, card_slug, write_result  # noqa: E402
from benchmarks.run_and_eval import keep_previous, merge_runs, printer, score  # noqa: E402
from taichi_pvd_cli.options import parse_overrides  # noqa: E402
from taichi_pvd import backend  # noqa: E402
from taichi_pvd.data import load_scene  # noqa: E402
from taichi_pvd.distill.api import distill  # noqa: E402
from taichi_pvd.io.checkpoint import load_checkpoint  # noqa: E402
from taichi_pvd.io.runs import CHECKPOINT_NAME, read_history, recorded_scene_options  # noqa: E402
from taichi_pvd.metrics import psnr  # noqa: E402
from taichi_pvd.training.loop import OptimizationLoop, ValidateFn  # noqa: E402

VARIANTS = {
    "all": {},
    "no-feature-loss": {"feature_loss": False},
    "no-density-clip": {"density_clip": False},
    "no-blockwise": {"blockwise": False},
}


def ground_truth_validation(scene_dir: Path, teacher_dir: Path, views: int) -> ValidateFn:
    """A validation callback scoring the student on the first ``views`` ground-truth validation
    views of ``scene_dir`` (composited on white, loaded as the teacher was trained: its downscale, holdout and scene type), recorded as
    ``monitor_psnr_db``: the same views a training run validates on, which the distillation's
    losses never see."""
    options = recorded_scene_options(load_checkpoint(teacher_dir / CHECKPOINT_NAME).config)
    scene = load_scene(scene_dir, "val", background=(1.0, 1.0, 1.0), **options, device=backend.device())

    def on_validate(loop: OptimizationLoop) -> dict[str, float]:
        scores = [psnr(loop.render_view(scene, i), scene.images[i]) for i in range(min(views, len(scene)))]
        return {"monitor_psnr_db": float(sum(scores) / len(scores))}

    return on_validate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--teacher", action="append", default=[], help="MODEL=RUN_DIR")
    parser.add_argument("--pairs", required=True, help="comma-separated FROM:TO")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--stage1-steps", type=int, default=None)
    parser.add_argument("--stage2-steps", type=int, default=None)
    parser.add_argument("--batch-rays", type=int, default=None)
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument("--time-limit", type=float, default=None, help="seconds of optimisation per student")
    parser.add_argument("--variant", action="append", default=None, choices=sorted(VARIANTS))
    parser.add_argument("--test-views", type=int, default=50)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="TO.key=value student option")
    parser.add_argument("--distill-set", dest="distill_sets", action="append", default=[],
                        help="distillation option key=value (e.g. lr=5e-3, cuda_graphs=false)")
    parser.add_argument("--label", default=None,
                        help="tells these runs from others of the same pair and variant (e.g. ablation-5k)")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--keep-runs", type=Path, default=None, metavar="DIR",
                        help="keep each student's run folder as DIR/<teacher>-to-<student>")
    args = parser.parse_args()

    teachers = dict(t.split("=", 1) for t in args.teacher)
    distill_sets = parse_overrides(tuple(args.distill_sets), "--distill-set")
    student_sets: dict[str, dict] = {}
    for item in args.sets:
        target_key, _, raw = item.partition("=")
        target, _, key = target_key.partition(".")
        student_sets.setdefault(target, {})[key] = json.loads(raw)
    out_dir = Path(args.out_dir or os.environ.get("PVD_RESULTS_DIR") or RESULTS_DIR)
    path = out_dir / f"distill-{args.data.name}-{card_slug(card_name())}.json"
    teacher_scores: dict[str, dict] = {}
    for variant in args.variant or ["all"]:
        for pair in args.pairs.split(","):
            source, target = pair.split(":")
            teacher_dir = Path(teachers[source])
            if source not in teacher_scores:
                teacher_scores[source] = score(teacher_dir, args.test_views, reuse=True)
            run_dir = (args.keep_runs / f"{source}-to-{target}" if args.keep_runs
                       else Path(tempfile.mkdtemp(prefix=f"pvd-{source}-{target}-")))
            overrides = {"steps": args.steps, "stage1_steps": args.stage1_steps, "stage2_steps": args.stage2_steps,
                         "batch_rays": args.batch_rays, "val_every": args.val_every, "checkpoint_every": 0,
                         "time_limit_s": args.time_limit, "val_views": VALIDATION_VIEWS,
                         **VARIANTS[variant], **distill_sets}
            metrics = distill(source=source, target=target, teacher=teacher_dir, out=run_dir, overwrite=True,
                              student_overrides=student_sets.get(target), distill_overrides=overrides,
                              on_progress=printer(f"{source}->{target} {variant}"),
                              on_validate=ground_truth_validation(args.data, teacher_dir, VALIDATION_VIEWS))
            student = score(run_dir, args.test_views)
            entry = {
                "teacher": source,
                "student": target,
                "variant": variant,
                **({"label": args.label} if args.label else {}),
                "distill_overrides": distill_sets,
                "steps": metrics["steps"],
                "distill_seconds": metrics["distill_seconds"],
                "teacher_test_psnr_db": teacher_scores[source]["test_psnr_db"],
                "teacher_test_ssim": teacher_scores[source]["test_ssim"],
                "student_test_psnr_db": student["test_psnr_db"],
                "student_test_ssim": student["test_ssim"],
                "student_vs_teacher_psnr_db": metrics["student_vs_teacher_psnr_db"],
                "test_views": student["test_views"],
                "validation_views": overrides["val_views"],
                "history": [{"elapsed_s": h["elapsed_s"], "step": h["step"], "monitor_psnr_db": h.get("monitor_psnr_db")}
                            for h in read_history(run_dir)],
            }
            keep_previous(path)
            written = write_result("distill", args.data.name, {}, out_dir)
            merge_runs(written, entry, ("teacher", "student", "variant", "label"))
            print(f"{source}->{target} [{variant}{' ' + args.label if args.label else ''}]: student {entry['student_test_psnr_db']:.2f} dB "
                  f"(teacher {entry['teacher_test_psnr_db']:.2f} dB) in {entry['distill_seconds']:.1f} s", flush=True)
            if not args.keep_runs:
                shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
