"""Where a rendered frame's time goes: per-stage wall time (synchronised), samples marched and
composited a ray, and the top device kernels from the torch profiler.

Usage: ``python benchmarks/profile_render.py RUN_DIR [--size 400] [--frames 10] [--chunk 65536]
[--density-rounds 8,32]``. Renders an orbit of the run the way ``pvd-ti render`` does
(:func:`~taichi_pvd.rendering.inference.render_views`); ``--density-rounds`` replaces
:data:`~taichi_pvd.rendering.volume.DENSITY_ROUNDS` (``none``: every marched sample's density in
one round), to compare schedules on one card.
Prints tables; nothing is recorded under results/ (profiling perturbs timings).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.profile_train import StageTimer, print_device_summary  # noqa: E402
from taichi_pvd import backend  # noqa: E402
from taichi_pvd.io.runs import load_run  # noqa: E402
from taichi_pvd.rendering import inference, volume  # noqa: E402
from taichi_pvd.rendering.view_sets import orbit_views  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=1 << 16, help="rays marched at once")
    parser.add_argument("--density-rounds", default=None, metavar="N,N,...|none",
                        help="where the rounds of density evaluation end (default: the library's)")
    args = parser.parse_args()
    if args.density_rounds is not None:
        volume.DENSITY_ROUNDS = (() if args.density_rounds == "none"
                                 else tuple(int(n) for n in args.density_rounds.split(",")))
    backend.init()
    device = backend.device()
    run = load_run(args.run, device)
    views = orbit_views(run.camera_rig(), args.frames, (args.size, args.size))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    inference.render_views(run, views.view(0), chunk=args.chunk)
    sync()
    start = time.perf_counter()
    inference.render_views(run, views, chunk=args.chunk)
    sync()
    plain = (time.perf_counter() - start) / args.frames
    print(f"{run.model}: {plain * 1e3:.2f} ms a frame ({1 / plain:.1f} fps) at {args.size}x{args.size}")

    counts = {"marched": 0, "evaluated": 0, "composited": 0}
    march, keep, features = inference.march, inference.keep_composited, run.field.features

    def counting_march(*args, **kwargs):
        samples = march(*args, **kwargs)
        counts["marched"] += samples.n_samples
        return samples

    def counting_keep(*args, **kwargs):
        kept, index = keep(*args, **kwargs)
        counts["composited"] += kept.n_samples
        return kept, index

    def counting_features(x):
        counts["evaluated"] += x.shape[0]
        return features(x)

    inference.march, inference.keep_composited, run.field.features = counting_march, counting_keep, counting_features
    inference.render_views(run, views, chunk=args.chunk)
    inference.march, inference.keep_composited, run.field.features = march, keep, features
    rays = args.frames * args.size * args.size
    print(f"samples a ray: {counts['marched'] / rays:.1f} marched, {counts['evaluated'] / rays:.1f} with their "
          f"density evaluated (rounds {volume.DENSITY_ROUNDS}), {counts['composited'] / rays:.1f} composited")

    timer = StageTimer(device)
    stages = [(inference, "march", "march"), (run.field, "features", "features"), (run.field, "colour", "colour"),
              (inference, "keep_composited", "keep composited"), (volume, "composite", "composite")]
    originals = [getattr(owner, name) for owner, name, _ in stages]
    for (owner, name, stage), original in zip(stages, originals):
        setattr(owner, name, timer.wrap(stage, original))
    start = time.perf_counter()
    inference.render_views(run, views, chunk=args.chunk)
    sync()
    total = (time.perf_counter() - start) / args.frames
    for (owner, name, _), original in zip(stages, originals):
        setattr(owner, name, original)
    print(f"with stage syncs: {total * 1e3:.2f} ms a frame")
    for name, seconds in sorted(timer.totals.items(), key=lambda kv: -kv[1]):
        print(f"  {name:12s} {seconds / args.frames * 1e3:7.2f} ms")
    if device.type != "cuda":
        return
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        inference.render_views(run, views, chunk=args.chunk)
        sync()
    print_device_summary(prof, args.frames, "frame")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=20))


if __name__ == "__main__":
    main()
