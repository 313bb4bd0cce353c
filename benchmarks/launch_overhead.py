"""Host-side cost of launching work: a trivial torch op and trivial Taichi kernels with 2 and 10
torch-tensor arguments, in microseconds per call (synchronised once at the end)."""

from __future__ import annotations

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


def per_call_us(fn, n: int = 2000) -> float:
    for _ in range(20):
        fn()
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    backend.init()
    device = backend.device()
    ts = [torch.zeros(1024, device=device) for _ in range(10)]
    print(f"torch add_:            {per_call_us(lambda: ts[0].add_(1.0)):8.1f} us")
    print(f"taichi kernel, 2 args: {per_call_us(lambda: _two(ts[0], ts[1])):8.1f} us")
    print(f"taichi kernel, 10 args:{per_call_us(lambda: _ten(*ts)):8.1f} us")


if __name__ == "__main__":
    main()
