"""Train one architecture on a scene, score it on the test split, record the result.

Usage::

    python benchmarks/train.py --model hash --data .device-kit/data/nerf_synthetic/lego \
        [--steps N] [--time-limit S] [--batch-rays B] [--test-views 50] [--supersample K]
        [--set key=value ...] [--train-set key=value ...]

Writes (or updates the entry for this model in) ``benchmarks/results/train-<scene>-<card>.json``:
training wall time (``train_seconds``: optimisation only, validation excluded), test PSNR/SSIM,
steps, rays per step, the scene's space (``box``, ``contracted``: unbounded, ``ndc``:
forward-facing), the mean samples a ray after the occupancy grid's warm-up, and the validation
PSNR history against time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import VALIDATION_VIEWS, card_name, card_slug, write_result, RESULTS_DIR  # noqa: E402
from benchmarks.run_and_eval import keep_previous, merge_runs, printer, score  # noqa: E402
from taichi_pvd_cli.options import parse_overrides  # noqa: E402
from taichi_pvd.io.checkpoint import load_checkpoint  # noqa: E402
from taichi_pvd.io.runs import SNAPSHOTS_DIR, checkpoint_path  # noqa: E402
from taichi_pvd.run_info import scene_space  # noqa: E402
from taichi_pvd.training.api import train  # noqa: E402


def score_snapshots(run_dir: Path, test_views: int) -> list[dict]:
    """Test PSNR/SSIM of each checkpoint kept under ``snapshots/`` (``snapshot_times_s``), by time."""
    entries = []
    for folder in sorted((run_dir / SNAPSHOTS_DIR).glob("*s"), key=lambda f: float(f.name[:-1])):
        meta = load_checkpoint(checkpoint_path(folder), expected_kind="run").meta
        scores = score(folder, test_views)
        entries.append({"snapshot_s": float(folder.name[:-1]), "steps": meta["step"],
                        "train_seconds": meta["train_seconds"], "test_psnr_db": scores["test_psnr_db"],
                        "test_ssim": scores["test_ssim"]})
        print(f"  snapshot at {folder.name}: {scores['test_psnr_db']:.2f} dB after {meta['step']} steps")
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="hash")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--time-limit", type=float, default=None, metavar="S",
                        help="stop after S seconds of optimisation (the learning rate decays over the time)")
    parser.add_argument("--batch-rays", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--val-every", type=int, default=1000)
    parser.add_argument("--test-views", type=int, default=50)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="field option key=value")
    parser.add_argument("--train-set", dest="train_sets", action="append", default=[], help="training option key=value")
    parser.add_argument("--supersample", type=int, default=1, metavar="K",
                        help="also score the test views with K x K rays per pixel (recorded under 'supersampled')")
    parser.add_argument("--label", default=None,
                        help="tells this run from others of the same model in the results file (e.g. 20min)")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--out-dir", type=Path, default=None, help="results folder")
    args = parser.parse_args()

    field_overrides = parse_overrides(tuple(args.sets), "--set")
    run_dir = args.out or Path(tempfile.mkdtemp(prefix=f"pvd-{args.model}-"))
    train_overrides = {"steps": args.steps, "time_limit_s": args.time_limit, "batch_rays": args.batch_rays, "lr": args.lr, "val_every": args.val_every,
                       "val_views": VALIDATION_VIEWS, "checkpoint_every": 0, **parse_overrides(tuple(args.train_sets), "--train-set")}
    metrics = train(data=args.data, model=args.model, out=run_dir, field_overrides=field_overrides,
                    train_overrides=train_overrides, overwrite=True, on_progress=printer(args.model))
    scores = score(run_dir, args.test_views)
    config = load_checkpoint(checkpoint_path(run_dir), expected_kind="run").config
    entry = {
        "model": args.model,
        **({"label": args.label} if args.label else {}),
        "steps": metrics["steps"],
        "batch_rays": train_overrides["batch_rays"] or "default",
        "train_seconds": metrics["train_seconds"],
        "scene_space": scene_space(config),
        "samples_per_ray_after_warmup": metrics["samples_per_ray_after_warmup"],
        "test_psnr_db": scores["test_psnr_db"],
        "test_ssim": scores["test_ssim"],
        "test_views": scores["test_views"],
        "num_parameters": metrics["num_parameters"],
        "field_overrides": field_overrides,
        "history": scores["history"],
        "validation_views": train_overrides["val_views"],
        "snapshots": score_snapshots(run_dir, args.test_views),
    }
    if args.supersample > 1:
        supersampled = score(run_dir, args.test_views, supersample=args.supersample)
        entry["supersampled"] = {"rays_per_pixel": args.supersample**2, "test_psnr_db": supersampled["test_psnr_db"],
                                 "test_ssim": supersampled["test_ssim"]}
        print(f"{args.model}: {supersampled['test_psnr_db']:.2f} dB test PSNR with {args.supersample**2} rays a pixel")
    out_dir = Path(args.out_dir or os.environ.get("PVD_RESULTS_DIR") or RESULTS_DIR)
    path = out_dir / f"train-{args.data.name}-{card_slug(card_name())}.json"
    keep_previous(path)
    path = write_result("train", args.data.name, {}, out_dir)
    merge_runs(path, entry, ("model", "label"))
    print(f"{args.model}: {entry['test_psnr_db']:.2f} dB test PSNR ({entry['test_views']} views), "
          f"SSIM {entry['test_ssim']:.4f}, trained {entry['steps']} steps in {entry['train_seconds']:.1f} s, "
          f"{entry['samples_per_ray_after_warmup'] or 0:.1f} samples a ray after warm-up -> {path}")
    if args.out is None:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
