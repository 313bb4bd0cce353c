"""Benchmark helpers: train or distill with the library, then score the result on the test
split and merge it into a results file as one entry of its ``runs`` list."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from taichi_pvd import backend
from taichi_pvd.evaluation import evaluate_run
from taichi_pvd.io.runs import checkpoint_path, load_run, read_history
from taichi_pvd.run_info import EVAL_METRICS
from taichi_pvd.training.loop import Progress


def printer(label: str, every: int = 500):
    """A progress callback printing one line every ``every`` steps."""

    def show(p: Progress) -> None:
        if p.step % every == 0 or p.phase != "train":
            val = f"{p.val_psnr_db:.2f}" if p.val_psnr_db is not None else "-"
            print(f"[{label}] step {p.step}/{p.steps} loss {p.loss:.3e} val {val} dB "
                  f"{p.rays_per_second / 1e6:.2f} Mrays/s {p.samples_per_ray:.1f} spp t={p.elapsed_s:.1f}s", flush=True)

    return show


def _recorded_evaluation(run_dir: Path, test_views: int | None) -> dict[str, Any] | None:
    """The run's own ``eval/metrics.json`` when it scores the test split on ``test_views``
    views, one ray per pixel, and was written after the run's checkpoint; else None."""
    path = run_dir / EVAL_METRICS
    if test_views is None or not path.is_file() or path.stat().st_mtime < checkpoint_path(run_dir).stat().st_mtime:
        return None
    recorded = json.loads(path.read_text())
    if (recorded.get("split") != "test" or recorded.get("n_views") != test_views
            or recorded.get("supersample", 1) != 1):
        return None
    return recorded


def score(run_dir: Path, test_views: int | None, *, reuse: bool = False,
          supersample: int = 1) -> dict[str, Any]:
    """Test-split PSNR/SSIM of a run (``test_views`` evenly spaced views, all when None),
    rendered with ``supersample x supersample`` rays per pixel. ``reuse``: take the run's
    recorded one-ray-per-pixel evaluation of the same views when it is newer than the
    checkpoint (a teacher scored once for several students)."""
    recorded = _recorded_evaluation(run_dir, test_views) if reuse and supersample == 1 else None
    t0 = time.perf_counter()
    if recorded is None:
        evaluation = evaluate_run(load_run(run_dir, backend.device()), split="test", n_views=test_views,
                                  write_images=False, supersample=supersample)
        recorded = {"psnr_db": evaluation.psnr_db, "ssim": evaluation.ssim, "n_views": len(evaluation.views)}
    return {
        "test_psnr_db": recorded["psnr_db"],
        "test_ssim": recorded["ssim"],
        "test_views": recorded["n_views"],
        "eval_seconds": time.perf_counter() - t0,
        "history": [{"elapsed_s": h["elapsed_s"], "val_psnr_db": h.get("val_psnr_db"), "step": h["step"]}
                    for h in read_history(run_dir)],
    }


def merge_runs(path: Path, entry: dict[str, Any], key: tuple[str, ...]) -> None:
    """Replace (by the values of ``key``) or append ``entry`` in the ``runs`` list of the
    results file at ``path`` (written by :func:`benchmarks.common.write_result`)."""
    record = json.loads(path.read_text())
    previous: list[dict[str, Any]] = []
    old_path = path.with_suffix(".previous")
    if old_path.exists():
        previous = json.loads(old_path.read_text()).get("runs", [])
        old_path.unlink()
    # Each entry keeps the commit, command and date (and note) of the process that made it: the
    # other entries of the file came from other commands.
    entry = {**entry, **{k: record[k] for k in ("commit", "command", "date", "note") if k in record}}
    runs = [r for r in previous if tuple(r.get(k) for k in key) != tuple(entry.get(k) for k in key)]
    runs.append(entry)
    record["runs"] = runs
    path.write_text(json.dumps(record, indent=2) + "\n")


def keep_previous(path: Path) -> None:
    """Set the existing results file aside so :func:`merge_runs` can carry its other runs over."""
    if path.exists():
        path.rename(path.with_suffix(".previous"))

