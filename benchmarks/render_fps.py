"""Rendering speed of trained runs: frames per second of an orbit with the inference renderer.

Usage: ``python benchmarks/render_fps.py RUN_DIR [RUN_DIR ...] [--size 400] [--frames 10]
[--scene lego] [--out-dir DIR]``, one run directory per architecture. Writes
``render_fps-<scene>-<card>.json`` following the results convention (DESIGN.md), with one entry
per run under ``runs``: ``model``, ``run``, ``fps`` (frames per second of
``inference.render_views``, what ``pvd-ti render`` uses), the frame size and count. Each figure
times ``--frames`` orbit frames after one warm-up frame.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result  # noqa: E402
from taichi_pvd import backend  # noqa: E402
from taichi_pvd.io.runs import LoadedRun, load_run  # noqa: E402
from taichi_pvd.rendering.inference import render_views  # noqa: E402
from taichi_pvd.rendering.view_sets import ViewSet, orbit_views  # noqa: E402


@dataclass
class FpsMeasurement:
    """Rendering speed of one run."""

    fps: float
    """Frames per second of :func:`~taichi_pvd.rendering.inference.render_views`."""
    frames: int
    width: int
    height: int


def _timed_fps(run: LoadedRun, views: ViewSet) -> float:
    render_views(run, views.view(0))  # kernels compiled, caches warm
    if run.grid.aabb.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    render_views(run, views)
    if run.grid.aabb.device.type == "cuda":
        torch.cuda.synchronize()
    return len(views) / (time.perf_counter() - start)


def measure_fps(run: LoadedRun | str | Path, size: int | tuple[int, int], n_frames: int) -> FpsMeasurement:
    """Frames per second of rendering an orbit of ``run``.

    Args:
        run: a loaded run, or a run directory (loaded onto :func:`taichi_pvd.backend.device`).
        size: frame size in pixels, ``N`` (N x N) or ``(width, height)``.
        n_frames: frames timed (after one untimed warm-up frame), orbiting the scene.
    """
    backend.init()
    if not isinstance(run, LoadedRun):
        run = load_run(run, backend.device())
    width, height = (size, size) if isinstance(size, int) else size
    views = orbit_views(run.camera_rig(), n_frames, (width, height))
    return FpsMeasurement(fps=_timed_fps(run, views), frames=n_frames, width=width, height=height)


def main(argv: list[str] | None = None) -> Path:
    """Measure every run given on the command line and write the result file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (one per architecture)")
    parser.add_argument("--size", type=int, default=400, help="frame width and height in pixels")
    parser.add_argument("--frames", type=int, default=10, help="frames timed per run")
    parser.add_argument("--scene", default=None, help="scene name for the file (default: the first run's)")
    parser.add_argument("--out-dir", type=Path, default=None, help="where the result file goes")
    args = parser.parse_args(argv)
    backend.init()
    device = backend.device()
    entries, scene = [], args.scene
    for run_dir in args.runs:
        run = load_run(run_dir, device)
        scene = scene or run.config.get("scene", {}).get("name", "unknown")
        m = measure_fps(run, args.size, args.frames)
        entry = {"model": run.model, "run": str(run_dir), "fps": m.fps,
                 "width": m.width, "height": m.height, "frames": m.frames}
        print(f"{run.model:5s} {run_dir}: {m.fps:.2f} fps at {m.width}x{m.height}")
        entries.append(entry)
    path = write_result("render_fps", scene, {"runs": entries}, args.out_dir)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
