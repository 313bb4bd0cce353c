"""How a batch scales over GPUs: one plan (default: the lego matrix of
``benchmarks/batch_matrix.toml``, 4 teachers and 16 distillations) run by torchrun on N GPUs,
then by ``pvd-ti batch`` alone on one GPU of the same machine; records both wall times (process
start to summary, Taichi's kernel cache shared, so the N-GPU run, first, pays the compilation)
and their ratio, with each run's test PSNR from both summaries.

Usage::

    python benchmarks/batch_scaling.py --gpus 4 [--plan benchmarks/batch_matrix.toml] [--work /tmp/batch-scaling]

Writes ``benchmarks/results/batch_scaling-<scenes>-<card>.json`` (``$PVD_RESULTS_DIR`` elsewhere):
``gpus``, ``jobs``, ``wall_seconds_n_gpus``, ``wall_seconds_one_gpu``, ``speedup`` (one-GPU time over
N-GPU time; ideally close to ``gpus``), ``runs`` (per job: teacher, student, test PSNR of both runs).
On a CPU machine it runs too (``--gpus`` workers share the CPU cores), e.g. with a tiny plan.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_result  # noqa: E402
from taichi_pvd.batch.summary import RESULTS_JSON  # noqa: E402


def timed_batch(command: list[str], out: Path, env: dict[str, str]) -> tuple[float, dict[str, dict]]:
    """Run ``command`` (a batch writing into ``out``, replaced first); its wall time (s) and its
    summary rows by job."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    seconds = time.perf_counter() - start
    rows = json.loads((out / RESULTS_JSON).read_text())["jobs"]
    failed = [row["job"] for row in rows if row["state"] != "done"]
    if failed:
        raise SystemExit(f"jobs failed in {out}: {', '.join(failed)} (see {out / 'batch-results.md'})")
    return seconds, {row["job"]: row for row in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, required=True, help="Workers (one a GPU) of the spread run.")
    parser.add_argument("--plan", type=Path, default=ROOT / "benchmarks" / "batch_matrix.toml")
    parser.add_argument("--work", type=Path, default=Path("/tmp/batch-scaling"), help="Where the runs go.")
    args = parser.parse_args(argv)
    plan = args.plan.resolve()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    spread_out, alone_out = args.work / f"gpus-{args.gpus}", args.work / "gpus-1"
    spread_s, spread = timed_batch(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.gpus),
         "--max-restarts", "1", "-m", "taichi_pvd_cli", "batch", str(plan), "--out", str(spread_out)],
        spread_out, env)
    first_gpu = (env.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0]
    alone_s, alone = timed_batch([sys.executable, "-m", "taichi_pvd_cli", "batch", str(plan), "--out", str(alone_out)],
                                 alone_out, {**env, "CUDA_VISIBLE_DEVICES": first_gpu})
    runs = [{"job": name, "teacher": row["teacher"], "student": row["student"],
             f"test_psnr_db_{args.gpus}_gpus": row["test_psnr_db"], "test_psnr_db_one_gpu": alone[name]["test_psnr_db"],
             f"seconds_{args.gpus}_gpus": row["seconds"], "seconds_one_gpu": alone[name]["seconds"]}
            for name, row in spread.items()]
    scenes = "-".join(dict.fromkeys(row["job"].split("/")[0] for row in spread.values()))
    path = write_result("batch_scaling", scenes, {
        "plan": str(plan.relative_to(ROOT)) if plan.is_relative_to(ROOT) else str(plan),
        "gpus": args.gpus, "jobs": len(runs), "wall_seconds_n_gpus": spread_s, "wall_seconds_one_gpu": alone_s,
        "speedup": alone_s / spread_s, "runs": runs})
    print(f"{len(runs)} jobs: {spread_s:.0f} s on {args.gpus} GPUs, {alone_s:.0f} s on one: "
          f"x{alone_s / spread_s:.2f} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
