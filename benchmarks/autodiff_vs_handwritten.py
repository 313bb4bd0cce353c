"""Hand-written backward kernels against Taichi's autodiff of the forward kernels, timed.

Usage: ``python benchmarks/autodiff_vs_handwritten.py [--points N] [--rays N] [--out-dir DIR]``.
For each kernel with a hand-written backward (the cases of ``tests/autodiff_cases.py``: hash
encoding at the default layout, grid interpolation, VM interpolation, SH encoding, compositing
and its weights) it times the hand-written backward and ``forward_kernel.grad`` on the same
random inputs and records the medians, their ratio and the largest gradient difference, in
``autodiff_vs_handwritten-synthetic-<card>.json`` (DESIGN.md's results convention).

The hand-written kernels launch through the project's lean launch path
(:mod:`taichi_pvd.kernels.fast_launch`); ``kernel.grad`` through Taichi's own, which costs the
host more per launch: at these sizes the device time dominates on a GPU. Compositing's autodiff
differentiates the loops-only restatement of ``tests/autodiff_cases.py``, whose optical-depth
kernel sums every sample's predecessors again (quadratic in samples per ray).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result  # noqa: E402
from taichi_pvd import backend  # noqa: E402
from tests import autodiff_cases as cases  # noqa: E402

#: Samples at most per ray of the compositing cases (their mean is about half).
MAX_SAMPLES_PER_RAY = 128


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after 2 warm-up runs (the first compiles)."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(case: cases.GradientCase, repeats: int, device: torch.device) -> dict:
    expected, actual = case.handwritten(), case.autodiff()
    difference = max(float((actual[k] - v).abs().max() / v.abs().max().clamp(min=1e-30)) for k, v in expected.items())
    handwritten = timed(case.handwritten, repeats, device)
    autodiff = timed(case.autodiff, repeats, device)
    return {
        f"{case.name}_handwritten_ms": handwritten * 1e3,
        f"{case.name}_autodiff_ms": autodiff * 1e3,
        f"{case.name}_autodiff_over_handwritten": autodiff / handwritten,
        f"{case.name}_max_difference_over_max_gradient": difference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--points", type=int, default=None,
                        help="points of the encoding/interpolation cases (default 2^20 on CUDA, 2^12 on the CPU)")
    parser.add_argument("--rays", type=int, default=None,
                        help="rays of the compositing cases (default 8192 on CUDA, 256 on the CPU)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    backend.init()
    device = backend.device()
    big = device.type == "cuda"
    n_points = args.points or ((1 << 20) if big else (1 << 12))
    n_rays = args.rays or (8192 if big else 256)
    generator = torch.Generator().manual_seed(0)
    figures = {"device": str(device), "points": n_points, "rays": n_rays,
               "max_samples_per_ray": MAX_SAMPLES_PER_RAY}
    for case in (
        cases.hash_case(n_points, device, generator),
        cases.grid_case(n_points, (128, 128, 128, 28), device, generator),
        cases.vm_case(n_points, 300, 48, device, generator),
        cases.sh_case(n_points, 4, device, generator),
        cases.composite_case(n_rays, MAX_SAMPLES_PER_RAY, device, generator),
        cases.weights_case(n_rays, MAX_SAMPLES_PER_RAY, device, generator),
    ):
        figures.update(measure(case, args.repeats, device))
    path = write_result("autodiff_vs_handwritten", "synthetic", figures, args.out_dir)
    for k, v in figures.items():
        print(f"{k:60s} {v:.4g}" if isinstance(v, float) else f"{k:60s} {v}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
