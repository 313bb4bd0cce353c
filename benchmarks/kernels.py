"""Kernel throughput on the current device: hash encoding, grid interpolation, march+composite.

Usage: ``python benchmarks/kernels.py [--out-dir DIR]``. Writes ``kernels-synthetic-<card>.json``
following the results convention (DESIGN.md). Each figure is the median of repeated, warmed-up
runs timed with CUDA events (or wall clock on the CPU), on random inputs. Alongside each figure
it reports the bytes the kernel must move at least, and the bandwidth that implies, next to a
measured device-to-device copy bandwidth.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result  # noqa: E402
from taichi_pvd import backend  # noqa: E402
from taichi_pvd.data.contracted_space import contracted_aabb  # noqa: E402
from taichi_pvd.kernels.compositing import composite, composite_reference  # noqa: E402
from taichi_pvd.kernels.grid_interpolation import grid_interpolate, grid_interpolate_reference  # noqa: E402
from taichi_pvd.kernels import hash_encoding  # noqa: E402
from taichi_pvd.kernels.hash_encoding import (  # noqa: E402
    hash_encode,
    hash_encode_reference,
    hash_grid_layout,
    init_hash_table,
)
from taichi_pvd.kernels.marching import default_precision, march_rays  # noqa: E402
from taichi_pvd.rendering.occupancy import OccupancyGrid  # noqa: E402


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after 3 warm-up runs."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def copy_bandwidth(device: torch.device) -> float:
    """Measured device-to-device copy bandwidth, GB/s (bytes read + written)."""
    n = (1 << 28) if device.type == "cuda" else (1 << 24)
    a = torch.rand(n, device=device)
    b = torch.empty_like(a)
    seconds = timed(lambda: b.copy_(a), 10, device)
    return 2 * a.numel() * 4 / seconds / 1e9


def ray_ordered_points(n_points: int, device: torch.device, samples_per_ray: int = 32) -> torch.Tensor:
    """[n_points, 3] positions in [0, 1]^3 as a marcher packs them: ``samples_per_ray``
    consecutive points 1/512 apart along each of random rays through the cube's middle."""
    g = torch.Generator(device=device).manual_seed(2)
    n_rays = -(-n_points // samples_per_ray)
    starts = 0.25 + 0.5 * torch.rand(n_rays, 1, 3, device=device, generator=g)
    directions = torch.nn.functional.normalize(torch.randn(n_rays, 1, 3, device=device, generator=g), dim=-1)
    steps = torch.arange(samples_per_ray, device=device, dtype=torch.float32)[None, :, None] / 512
    return (starts + steps * directions).reshape(-1, 3)[:n_points].clamp(0, 1).contiguous()


def bench_hash(device: torch.device, n_points: int) -> dict:
    """Forward and forward+backward times of the hash encoding at Instant-NGP's defaults on
    uniform random points; then at those defaults (2 features) and at the 400-pixel recipe
    (finest 512, 4 features), on random and on ray-ordered points, for 1 to 32 points a thread."""
    layout = hash_grid_layout()
    param = torch.nn.Parameter(init_hash_table(layout, device=device))
    x = torch.rand(n_points, 3, device=device)
    upstream = torch.randn(n_points, layout.output_dim, device=device)

    def fwd():
        return hash_encode(x, param, layout)

    def fwd_bwd():
        (grad,) = torch.autograd.grad(hash_encode(x, param, layout), param, upstream)
        return grad

    t_fwd = timed(fwd, 20, device)
    t_all = timed(fwd_bwd, 20, device)
    lookups = n_points * layout.n_levels
    # At least: positions in, features out; per level 8 corner reads of F floats (cached for
    # coarse levels, so this is an upper bound on what must come from DRAM).
    bytes_min = n_points * 3 * 4 + n_points * layout.output_dim * 4
    figures = {
        "hash_points": n_points,
        "hash_levels": layout.n_levels,
        "hash_forward_ms": t_fwd * 1e3,
        "hash_forward_backward_ms": t_all * 1e3,
        "hash_forward_point_levels_per_second": lookups / t_fwd,
        "hash_forward_backward_point_levels_per_second": lookups / t_all,
        "hash_forward_min_bytes_gb_per_second": bytes_min / t_fwd / 1e9,
    }
    chosen = dict(hash_encoding.POINTS_A_THREAD)
    for name, layout in (("default", layout),
                         ("f4_finest512", hash_grid_layout(features_per_level=4, finest_resolution=512))):
        param = torch.nn.Parameter(init_hash_table(layout, device=device))
        upstream = torch.randn(n_points, layout.output_dim, device=device)
        for points, x in (("random", torch.rand(n_points, 3, device=device)),
                          ("rays", ray_ordered_points(n_points, device))):
            for run in (1, 4, 8, 16, 32):
                hash_encoding.POINTS_A_THREAD.update(forward=run, backward=run)
                key = f"hash_{name}_{points}_run{run}"
                figures[f"{key}_forward_ms"] = timed(lambda: hash_encode(x, param, layout), 20, device) * 1e3
                figures[f"{key}_forward_backward_ms"] = timed(
                    lambda: torch.autograd.grad(hash_encode(x, param, layout), param, upstream), 20, device) * 1e3
    hash_encoding.POINTS_A_THREAD.update(chosen)
    return figures


def bench_grid(device: torch.device, n_points: int, resolution: int = 128, channels: int = 28) -> dict:
    grid = torch.nn.Parameter(torch.randn(resolution, resolution, resolution, channels, device=device))
    x = torch.rand(n_points, 3, device=device)
    upstream = torch.randn(n_points, channels, device=device)

    def fwd():
        return grid_interpolate(x, grid)

    def fwd_bwd():
        (g,) = torch.autograd.grad(grid_interpolate(x, grid), grid, upstream)
        return g

    t_fwd = timed(fwd, 20, device)
    t_all = timed(fwd_bwd, 10, device)
    gather_bytes = n_points * 8 * channels * 4 + n_points * channels * 4 + n_points * 12
    return {
        "grid_points": n_points,
        "grid_resolution": resolution,
        "grid_channels": channels,
        "grid_forward_ms": t_fwd * 1e3,
        "grid_forward_backward_ms": t_all * 1e3,
        "grid_forward_points_per_second": n_points / t_fwd,
        "grid_forward_gather_gb_per_second": gather_bytes / t_fwd / 1e9,
    }


def bench_march_composite(device: torch.device, n_rays: int, occupancy: float = 0.05) -> dict:
    aabb = torch.tensor([[-1.5] * 3, [1.5] * 3])
    grid = OccupancyGrid(aabb, resolution=128).to(device)
    # A solid blob in the middle (like an object scene) occupying about ``occupancy`` of cells.
    radius = 1.5 * (3 * occupancy / (4 * math.pi)) ** (1 / 3) * 2
    grid.update(lambda p: torch.where(p.norm(dim=-1) < radius, 100.0, 0.0), step=0, warmup_steps=1)
    g = torch.Generator(device=device).manual_seed(0)
    theta = torch.rand(n_rays, device=device, generator=g) * 2 * math.pi
    eye = torch.stack([4 * torch.cos(theta), 4 * torch.sin(theta), torch.full_like(theta, 1.0)], -1)
    target = (torch.rand(n_rays, 3, device=device, generator=g) - 0.5) * 1.0
    dirs = torch.nn.functional.normalize(target - eye, dim=-1).contiguous()
    origins = eye.contiguous()
    jitter = torch.rand(n_rays, device=device, generator=g)
    step = math.sqrt(3) * 3.0 / 1024

    def march(precision: str | None = None):
        return march_rays(origins, dirs, grid, near=0.1, far=10.0, step_size=step, jitter=jitter,
                          precision=precision)

    # The rays in each arithmetic; the default one (``default_precision(device)``) is ``march_ms``.
    t_march_in = {precision: timed(lambda: march(precision), 20, device) for precision in ("float32", "float64")}
    t_march = t_march_in[default_precision(device)]
    s = march()
    sig = torch.nn.Parameter(torch.rand(s.n_samples, device=device) * 5)
    rgb = torch.nn.Parameter(torch.rand(s.n_samples, 3, device=device))

    def comp():
        c, d, o = composite(sig, rgb, s.dt, s.t, s.ray_starts, s.ray_counts)
        torch.autograd.grad((c.sum() + d.sum() + o.sum()), (sig, rgb))

    t_comp = timed(comp, 20, device)
    return {
        "march_rays": n_rays,
        "march_occupied_fraction": grid.occupancy_fraction(),
        "march_samples_per_ray": s.n_samples / n_rays,
        "march_precision": default_precision(device),
        "march_ms": t_march * 1e3,
        "march_float32_ms": t_march_in["float32"] * 1e3,
        "march_float64_ms": t_march_in["float64"] * 1e3,
        "composite_forward_backward_ms": t_comp * 1e3,
        "march_composite_rays_per_second": n_rays / (t_march + t_comp),
    }


def bench_contracted_march(device: torch.device, n_rays: int) -> dict:
    """Marching of an unbounded scene in float32 and float64: rays from inside the unit cube of a
    contracted 128^3 grid whose occupied cells are a ball in the middle and the far background
    (contracted radius above 1.6), to a far distance of 1000 (Instant-NGP's 1/256 cone)."""
    grid = OccupancyGrid(contracted_aabb(), resolution=128, contracted=True).to(device)
    grid.update(lambda p: torch.where((p.norm(dim=-1) < 0.5) | (p.abs().amax(dim=-1) > 1.6), 100.0, 0.0),
                step=0, warmup_steps=1)
    g = torch.Generator(device=device).manual_seed(2)
    origins = (1.6 * (torch.rand(n_rays, 3, device=device, generator=g) - 0.5)).contiguous()
    dirs = torch.nn.functional.normalize(torch.randn(n_rays, 3, device=device, generator=g), dim=-1).contiguous()
    jitter = torch.rand(n_rays, device=device, generator=g)

    def march(precision: str):
        return march_rays(origins, dirs, grid, near=0.05, far=1000.0, step_size=math.sqrt(3) * 4.0 / 1024,
                          cone_angle=1 / 256, jitter=jitter, precision=precision)

    return {
        "contracted_march_rays": n_rays,
        "contracted_march_occupied_fraction": grid.occupancy_fraction(),
        "contracted_march_samples_per_ray": march("float32").n_samples / n_rays,
        "contracted_march_float32_ms": timed(lambda: march("float32"), 20, device) * 1e3,
        "contracted_march_float64_ms": timed(lambda: march("float64"), 20, device) * 1e3,
    }


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


def check_against_references(device: torch.device) -> dict:
    """Values and gradients of the kernels on this device against the float64 torch
    references (relative errors; the CPU test suite asserts < 1e-3)."""
    g = torch.Generator(device=device).manual_seed(1)
    layout = hash_grid_layout(n_levels=8, log2_table_size=14, finest_resolution=512)
    table = (torch.rand(layout.total_entries, 2, device=device, generator=g) - 0.5).requires_grad_()
    x = torch.rand(4096, 3, device=device, generator=g)
    up = torch.randn(4096, layout.output_dim, device=device, generator=g)
    out = hash_encode(x, table, layout)
    (gk,) = torch.autograd.grad(out, table, up)
    t64 = table.detach().double().requires_grad_()
    ref = hash_encode_reference(x.double(), t64, layout)
    (gr,) = torch.autograd.grad(ref, t64, up.double())
    grid = torch.randn(16, 16, 16, 28, device=device, generator=g).requires_grad_()
    gout = grid_interpolate(x, grid)
    (gg,) = torch.autograd.grad(gout, grid, torch.ones_like(gout))
    grid64 = grid.detach().double().requires_grad_()
    gref = grid_interpolate_reference(x.double(), grid64)
    (ggr,) = torch.autograd.grad(gref, grid64, torch.ones_like(gref))
    counts = torch.randint(0, 40, (256,), device=device, generator=g, dtype=torch.int32)
    starts = (torch.cumsum(counts, 0) - counts).int()
    s = int(counts.sum())
    sig = (torch.rand(s, device=device, generator=g) * 20).requires_grad_()
    rgb = torch.rand(s, 3, device=device, generator=g).requires_grad_()
    dt = torch.full((s,), 0.01, device=device)
    t = torch.rand(s, device=device, generator=g)
    c, d, o = composite(sig, rgb, dt, t, starts, counts)
    gs = torch.autograd.grad(c.sum() + d.sum() + o.sum(), (sig, rgb))
    sig64, rgb64 = sig.detach().double().requires_grad_(), rgb.detach().double().requires_grad_()
    cr, dr, orr = composite_reference(sig64, rgb64, dt.double(), t.double(), starts, counts)
    gsr = torch.autograd.grad(cr.sum() + dr.sum() + orr.sum(), (sig64, rgb64))
    return {
        "check_hash_forward_rel_error": relative_error(out, ref),
        "check_hash_backward_rel_error": relative_error(gk, gr),
        "check_grid_forward_rel_error": relative_error(gout, gref),
        "check_grid_backward_rel_error": relative_error(gg, ggr),
        "check_composite_forward_rel_error": relative_error(c, cr),
        "check_composite_backward_rel_error": max(relative_error(a, b) for a, b in zip(gs, gsr)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--points", type=int, default=None, help="points per encoding call")
    parser.add_argument("--rays", type=int, default=None, help="rays per march call")
    args = parser.parse_args()
    backend.init()
    device = backend.device()
    big = device.type == "cuda"
    n_points = args.points or ((1 << 21) if big else (1 << 16))
    n_rays = args.rays or ((1 << 17) if big else 4096)
    figures = {"device": str(device), **check_against_references(device)}
    figures["copy_bandwidth_gb_per_second"] = copy_bandwidth(device)
    figures.update(bench_hash(device, n_points))
    figures.update(bench_grid(device, n_points))
    figures.update(bench_march_composite(device, n_rays))
    figures.update(bench_contracted_march(device, n_rays))
    path = write_result("kernels", "synthetic", figures, args.out_dir)
    for k, v in figures.items():
        print(f"{k:50s} {v:.4g}" if isinstance(v, float) else f"{k:50s} {v}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
