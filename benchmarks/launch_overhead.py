"""Host-side cost of launching work, in microseconds per call: a trivial torch op and trivial
Taichi kernels with 2 and 10 torch-tensor arguments, first with the device idle, then right
after a long torch matmul was queued. If a launch costs about the matmul's time while the
device is busy, the launch waits for the device (a hidden synchronisation).

Usage: ``python benchmarks/launch_overhead.py`` (prints a table; nothing is recorded).
"""

import statistics
import sys
import time
from pathlib import Path

import taichi as ti
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taichi_pvd import backend  # noqa: E402


@ti.kernel
def _two(a: ti.types.ndarray(), b: ti.types.ndarray()):
    for i in range(1):
        a[i] += b[i]


@ti.kernel
def _ten(a: ti.types.ndarray(), b: ti.types.ndarray(), c: ti.types.ndarray(), d: ti.types.ndarray(),
         e: ti.types.ndarray(), f: ti.types.ndarray(), g: ti.types.ndarray(), h: ti.types.ndarray(),
         i_: ti.types.ndarray(), j: ti.types.ndarray()):
    for i in range(1):
        a[i] += b[i] + c[i] + d[i] + e[i] + f[i] + g[i] + h[i] + i_[i] + j[i]


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def per_call_us(fn, n: int = 2000) -> float:
    """Mean host+device time per call of ``fn`` over ``n`` calls, synchronised once."""
    for _ in range(20):
        fn()
    _sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    _sync()
    return (time.perf_counter() - t0) / n * 1e6


def busy_call_us(fn, busy, trials: int = 7) -> tuple[float, float]:
    """Medians over ``trials`` of (host time of ``busy()`` alone, host time of ``fn()`` issued
    right after ``busy()``), microseconds, device idle before each."""
    busy_times, fn_times = [], []
    for _ in range(trials):
        _sync()
        t0 = time.perf_counter()
        busy()
        busy_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fn()
        fn_times.append(time.perf_counter() - t0)
        _sync()
    return statistics.median(busy_times) * 1e6, statistics.median(fn_times) * 1e6


def main() -> None:
    backend.init()
    device = backend.device()
    ts = [torch.zeros(1024, device=device) for _ in range(10)]
    cases = {
        "torch add_": lambda: ts[0].add_(1.0),
        "taichi kernel, 2 args": lambda: _two(ts[0], ts[1]),
        "taichi kernel, 10 args": lambda: _ten(*ts),
    }
    print(f"{'launch':26s} {'idle device us':>15s} {'after 20 matmuls us':>20s}")
    m = torch.randn(4096, 4096, device=device)

    def busy() -> None:
        for _ in range(20):
            torch.mm(m, m)

    for name, fn in cases.items():
        idle = per_call_us(fn)
        t_busy, t_fn = busy_call_us(fn, busy) if device.type == "cuda" else (0.0, 0.0)
        print(f"{name:26s} {idle:15.1f} {t_fn:20.1f}   (queueing the matmuls took {t_busy:.0f} us)")


if __name__ == "__main__":
    main()
