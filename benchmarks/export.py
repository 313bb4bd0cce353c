"""Mesh export of trained runs: time, size, and how far each student's mesh lies from its
teacher's.

Usage: ``python benchmarks/export.py TEACHER_RUN STUDENT_RUN [STUDENT_RUN ...] [--resolution 512]
[--threshold 3.35] [--min-faces 1] [--samples 200000] [--scene lego] [--out-dir DIR]``, e.g. the
hash teacher and its vm, mlp and grid students. Writes ``export-<scene>-<card>.json`` following
the results convention (DESIGN.md), with one entry per run under ``runs``: ``model``, ``run``,
``seconds`` (:func:`taichi_pvd.export.extract_mesh` and writing the ``.ply``, after an untimed
warm-up export at resolution 32), ``vertices``, ``faces``, ``mesh`` (the ``.ply`` written, ``<run>/export/mesh-<resolution>.ply``) and,
for the students, ``chamfer_to_teacher``: the symmetric Chamfer distance between ``--samples``
points drawn uniformly on each mesh (the mean of the two mean nearest-point distances, world
units), also as ``chamfer_to_teacher_box_fraction`` of the scene box's largest side.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result  # noqa: E402
from taichi_pvd import backend  # noqa: E402
from taichi_pvd import export  # noqa: E402
from taichi_pvd.io.runs import load_run  # noqa: E402


def surface_samples(mesh: export.Mesh, n: int, seed: int = 0) -> torch.Tensor:
    """[n, 3] float32 points drawn uniformly (by area) on ``mesh``."""
    import trimesh

    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    return torch.as_tensor(trimesh.sample.sample_surface(tm, n, seed=seed)[0], dtype=torch.float32)


def nearest_distances(a: torch.Tensor, b: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """[len(a)] distance from each point of ``a`` to its nearest point of ``b``."""
    return torch.cat([torch.cdist(a[i:i + chunk], b).min(dim=1).values for i in range(0, len(a), chunk)])


def chamfer(a: torch.Tensor, b: torch.Tensor) -> float:
    """Symmetric Chamfer distance between point sets: the mean of the two mean nearest-point
    distances."""
    return 0.5 * float(nearest_distances(a, b).mean() + nearest_distances(b, a).mean())


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("teacher", type=Path, help="the teacher's run directory")
    parser.add_argument("students", nargs="*", type=Path, help="run directories of its students")
    parser.add_argument("--resolution", type=int, default=512, help="grid points along the box's longest side")
    parser.add_argument("--threshold", type=float, default=export.DEFAULT_THRESHOLD, help="density of the surface")
    parser.add_argument("--min-faces", type=int, default=1, help="drop connected pieces of fewer faces")
    parser.add_argument("--samples", type=int, default=200_000, help="points per mesh for the Chamfer distance")
    parser.add_argument("--scene", default=None, help="scene name for the file (default: the teacher's)")
    parser.add_argument("--out-dir", type=Path, default=None, help="where the result file goes")
    args = parser.parse_args(argv)
    backend.init()
    device = backend.device()
    entries, teacher_samples, scene = [], None, args.scene
    for index, run_dir in enumerate([args.teacher, *args.students]):
        run = load_run(run_dir, device)
        scene = scene or run.config.get("scene", {}).get("name", "unknown")
        export.extract_mesh(run, resolution=32, threshold=args.threshold)  # kernels compiled
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        mesh = export.extract_mesh(run, resolution=args.resolution, threshold=args.threshold,
                                   min_component_faces=args.min_faces)
        (run_dir / "export").mkdir(exist_ok=True)
        path = export.write_mesh(mesh, run_dir / "export" / f"mesh-{args.resolution}.ply")
        seconds = time.perf_counter() - start
        entry = {"model": run.model, "run": str(run_dir), "role": "teacher" if index == 0 else "student",
                 "seconds": seconds, "vertices": len(mesh.vertices), "faces": len(mesh.faces),
                 "resolution": args.resolution, "threshold": args.threshold, "mesh": str(path)}
        samples = surface_samples(mesh, args.samples).to(device)
        if index == 0:
            teacher_samples = samples
            box_side = float((run.field.aabb[1] - run.field.aabb[0]).max())
        else:
            entry["chamfer_to_teacher"] = chamfer(samples, teacher_samples)
            entry["chamfer_to_teacher_box_fraction"] = entry["chamfer_to_teacher"] / box_side
        print(f"{run.model:5s} {run_dir}: {seconds:.1f} s, {len(mesh.vertices)} vertices"
              + (f", Chamfer to the teacher {entry['chamfer_to_teacher']:.4f}" if index else ""), flush=True)
        entries.append(entry)
    result = write_result("export", scene, {"runs": entries, "samples": args.samples}, args.out_dir)
    print(f"wrote {result}")
    return result


if __name__ == "__main__":
    main()
