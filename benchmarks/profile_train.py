"""Where a training or distillation step's time goes: the host's Python profile, per-stage wall
time (synchronised) and the top device kernels from the torch profiler.

Usage: ``python benchmarks/profile_train.py --data SCENE [--model hash] [--steps 300]
[--train-set mixed_precision=false] [--set finest_resolution=512] [--hash-points-a-thread 8]``;
with ``--teacher RUN`` the step profiled is a distillation of that run into ``--model``
(``--train-set`` then sets distillation options, ``--set`` the student's field options).
``--hash-points-a-thread`` replaces the hash kernels' ``POINTS_A_THREAD``, to compare on one card.
Prints tables; nothing is recorded under results/ (profiling perturbs timings).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taichi_pvd import backend  # noqa: E402
from taichi_pvd.data import load_scene  # noqa: E402
from taichi_pvd.data.camera_rig import CameraRig  # noqa: E402
from taichi_pvd.distill.api import resolve_distill_config  # noqa: E402
from taichi_pvd.distill.distiller import Distiller  # noqa: E402
from taichi_pvd.fields import make_field  # noqa: E402
from taichi_pvd.io.runs import load_run  # noqa: E402
from taichi_pvd.kernels import hash_encoding  # noqa: E402
from taichi_pvd.rendering.volume import MarchingConfig  # noqa: E402
from taichi_pvd.training.api import resolve_train_config  # noqa: E402
from taichi_pvd.training.trainer import Trainer  # noqa: E402
import taichi_pvd.distill.distiller as distiller_module  # noqa: E402
import taichi_pvd.rendering.volume as volume  # noqa: E402
import taichi_pvd.training.trainer as trainer_module  # noqa: E402


class StageTimer:
    """Accumulates synchronised wall time per named stage."""

    def __init__(self, device: torch.device):
        self.device = device
        self.totals: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.totals[name] += time.perf_counter() - t0
            return out

        return timed


def make_trainer(args, overrides: dict, device: torch.device) -> tuple[Trainer, list]:
    """The training loop to profile and its stages: (owner, attribute, stage name)."""
    scene = load_scene(args.data, "train", device=device)
    config = resolve_train_config(args.model, {"steps": 100000, "val_every": 0, "checkpoint_every": 0, **overrides})
    trainer = Trainer(make_field(args.model, scene.aabb, args.field), scene, None, config, "/tmp/pvd-profile")
    stages = [(trainer_module, "march", "march"), (trainer, "field_fn", "field forward"),
              (volume, "composite", "composite forward"), (trainer.sampler, "sample", "sample rays"),
              (trainer.grid, "update", "occupancy update"), (trainer.scaler, "step", "optimizer step"),
              (torch.Tensor, "backward", "backward")]
    return trainer, stages


def make_distiller(args, overrides: dict, device: torch.device) -> tuple[Distiller, list]:
    """The distillation loop (teacher ``args.teacher`` into ``args.model``) and its stages."""
    loaded = load_run(args.teacher, device)
    # Stage 3, every loss, unless the options say otherwise.
    config = resolve_distill_config(args.model, {"steps": 100000, "stage1_steps": 0, "stage2_steps": 0,
                                                 "val_every": 0, "checkpoint_every": 0, **overrides})
    if config.marching == MarchingConfig() and "train" in loaded.config:
        config = dataclasses.replace(config, marching=MarchingConfig(**loaded.config["train"]["marching"]))
    student = make_field(args.model, loaded.field.aabb.detach().cpu(), args.field)
    distiller = Distiller(loaded.field, loaded.grid, student, CameraRig(**loaded.config["camera_rig"]), config,
                          "/tmp/pvd-profile-distill", device)
    stages = [(distiller_module, "march", "march (block)"), (distiller.teacher, "features", "teacher features (block)"),
              (distiller_module, "keep_composited", "keep composited (block)"),
              (distiller.teacher, "colour", "teacher colour (block)"), (distiller_module, "pack_block", "pack (block)"),
              (distiller.field, "features", "student features"),
              (distiller.field, "colour_from_encoding", "student colour"),
              (distiller_module, "composite_slots", "composite"),
              (distiller.scaler, "step", "optimizer step"), (torch.Tensor, "backward", "backward")]
    if distiller.average is not None:
        stages.append((distiller.average, "update", "parameter average"))
    return distiller, stages


def json_pairs(pairs: list[str]) -> dict:
    """``["key=JSON value", ...]`` as a dict."""
    return {k: json.loads(v) for k, _, v in (pair.partition("=") for pair in pairs)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=None, help="scene (training)")
    parser.add_argument("--teacher", type=Path, default=None, help="teacher run (distillation into --model)")
    parser.add_argument("--model", default="hash")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--train-set", dest="train_sets", action="append", default=[],
                        help="training (or distillation) option key=value (JSON value)")
    parser.add_argument("--set", dest="field_sets", action="append", default=[],
                        help="field option key=value (JSON value) of the field trained")
    parser.add_argument("--hash-points-a-thread", type=int, default=None, metavar="N",
                        help="consecutive points a thread of the hash kernels (default: the library's)")
    args = parser.parse_args()
    if args.hash_points_a_thread is not None:
        hash_encoding.POINTS_A_THREAD.update(forward=args.hash_points_a_thread, backward=args.hash_points_a_thread)
    if (args.data is None) == (args.teacher is None):
        parser.error("give --data (profile training) or --teacher (profile distillation)")
    backend.init()
    device = backend.device()
    overrides = json_pairs(args.train_sets)
    args.field = json_pairs(args.field_sets)
    loop, stages = (make_trainer if args.data is not None else make_distiller)(args, overrides, device)
    for _ in range(args.warmup):
        loop.optimizer_step()
    torch.cuda.synchronize() if device.type == "cuda" else None
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loop.optimizer_step()
    torch.cuda.synchronize() if device.type == "cuda" else None
    plain = (time.perf_counter() - t0) / args.steps
    print(f"step: {plain * 1e3:.2f} ms ({loop.config.batch_rays} rays/step)")
    if getattr(loop, "graphs", None) is not None and loop.graphs.enabled:
        # Synchronising stages inside a captured step is impossible: profile the replays only.
        print(f"{loop.graphs.captured} step(s) captured as CUDA graphs; pass --train-set cuda_graphs=false "
              "for the per-stage breakdown")
        profile_device(loop)
        return

    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.steps):
        loop.optimizer_step()
    torch.cuda.synchronize() if device.type == "cuda" else None
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)

    timer = StageTimer(device)
    # Each stage is wrapped for the timed steps, then put back, so that the torch profiler
    # below sees the step without the stage synchronisations.
    originals = [getattr(owner, name) for owner, name, _ in stages]
    for (owner, name, stage), original in zip(stages, originals):
        setattr(owner, name, timer.wrap(stage, original))
    spp = 0.0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        _, s, _ = loop.optimizer_step()
        spp += s
    for (owner, name, _), original in zip(stages, originals):
        setattr(owner, name, original)
    total = (time.perf_counter() - t0) / args.steps
    print(f"step (unsynchronised): {plain * 1e3:.2f} ms; with stage syncs: {total * 1e3:.2f} ms; "
          f"{spp / args.steps:.1f} samples/ray; {loop.config.batch_rays} rays/step")
    for name, seconds in sorted(timer.totals.items(), key=lambda kv: -kv[1]):
        print(f"  {name:20s} {seconds / args.steps * 1e3:7.2f} ms")
    profile_device(loop)


def profile_device(loop) -> None:
    """The top kernels and host operations of 20 steps (torch profiler), on CUDA only."""
    if loop.device.type != "cuda":
        return
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(20):
            loop.optimizer_step()
        torch.cuda.synchronize()
    print_device_summary(prof, 20, "step")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25))
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=15))


def print_device_summary(prof, repeats: int, unit: str) -> None:
    """Device kernels launched and device busy time per ``unit`` (one of ``repeats``) from a
    torch profiler run."""
    from torch.autograd import DeviceType

    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    busy_us = sum(e.device_time for e in kernels)
    launches = sum(1 for e in prof.events() if e.device_type == DeviceType.CPU
                   and e.name in ("cudaLaunchKernel", "cuLaunchKernel", "cuLaunchKernelEx", "cudaLaunchKernelExC"))
    print(f"a {unit}: {len(kernels) / repeats:.0f} device kernels ({launches / repeats:.0f} launch calls), "
          f"device busy {busy_us / repeats / 1e3:.2f} ms")


if __name__ == "__main__":
    main()
