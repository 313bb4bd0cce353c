"""Mesh export of trained runs: time, size, and how far each student's mesh lies from its
teacher's.

Usage: ``python benchmarks/export.py TEACHER_RUN STUDENT_RUN [STUDENT_RUN ...] [--resolution 512]
[--threshold 3.35] [--min-faces 1] [--samples 200000] [--points 1000000] [--volume-resolution 256]
[--scene lego] [--out-dir DIR]``, e.g. the hash teacher and its vm, mlp and grid students. Writes
``export-<scene>-<card>.json`` following the results convention (DESIGN.md), with one entry per
run under ``runs``: ``model``, ``run``, ``role``, ``mesh_seconds``
(:func:`taichi_pvd.export.extract_mesh` with the faces the training views see, and writing the
``.ply``, after an untimed warm-up export at resolution 32), ``vertices``, ``faces``, ``mesh``
(the ``.ply`` written, ``<run>/export/mesh-<resolution>.ply``), ``points_seconds`` and
``points`` (:func:`~taichi_pvd.export.extract_points` from the training views),
``volume_seconds`` (:func:`~taichi_pvd.export.write_volume` at ``--volume-resolution``) and, for
the students, ``chamfer_to_teacher``: the symmetric Chamfer distance between ``--samples`` points
drawn uniformly on each mesh (the mean of the two mean nearest-point distances, world units),
also as ``chamfer_to_teacher_box_percent`` of the scene box's largest side.
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
from taichi_pvd.errors import PvdError  # noqa: E402
from taichi_pvd.io.runs import load_run  # noqa: E402
from taichi_pvd.rendering.view_sets import split_views  # noqa: E402


def synchronized_clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the device's queued work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


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
    parser.add_argument("--points", type=int, default=1_000_000, help="most points of each point cloud")
    parser.add_argument("--volume-resolution", type=int, default=256, help="grid points of the volume's longest side")
    parser.add_argument("--scene", default=None, help="scene name for the file (default: the teacher's)")
    parser.add_argument("--out-dir", type=Path, default=None, help="where the result file goes")
    args = parser.parse_args(argv)
    backend.init()
    device = backend.device()
    entries, teacher_samples, scene = [], None, args.scene
    for index, run_dir in enumerate([args.teacher, *args.students]):
        run = load_run(run_dir, device)
        scene = scene or run.config.get("scene", {}).get("name", "unknown")
        views = split_views(run.scene_path(), "train", scene_options=run.scene_options())
        (run_dir / "export").mkdir(exist_ok=True)
        try:
            export.extract_mesh(run, resolution=32, threshold=args.threshold, views=views.view(0))  # kernels compiled
            start = synchronized_clock(device)
            mesh = export.extract_mesh(run, resolution=args.resolution, threshold=args.threshold, views=views,
                                       min_component_faces=args.min_faces)
        except PvdError as exc:
            if index == 0:
                raise
            entries.append({"model": run.model, "run": str(run_dir), "role": "student", "error": str(exc)})
            print(f"{run.model:5s} {run_dir}: no mesh: {exc}", flush=True)
            continue
        path = export.write_mesh(mesh, run_dir / "export" / f"mesh-{args.resolution}.ply")
        mesh_seconds = synchronized_clock(device) - start
        start = synchronized_clock(device)
        cloud = export.extract_points(run, views, threshold=args.threshold, n_points=args.points)
        export.write_points(cloud, run_dir / "export" / "points.ply")
        points_seconds = synchronized_clock(device) - start
        start = synchronized_clock(device)
        export.write_volume(run, run_dir / "export" / f"volume-{args.volume_resolution}.npz",
                            resolution=args.volume_resolution)
        volume_seconds = synchronized_clock(device) - start
        entry = {"model": run.model, "run": str(run_dir), "role": "teacher" if index == 0 else "student",
                 "mesh_seconds": mesh_seconds, "vertices": len(mesh.vertices), "faces": len(mesh.faces),
                 "resolution": args.resolution, "threshold": args.threshold, "mesh": str(path),
                 "points_seconds": points_seconds, "points": len(cloud.points), "views": len(views),
                 "volume_seconds": volume_seconds, "volume_resolution": args.volume_resolution}
        samples = surface_samples(mesh, args.samples).to(device)
        if index == 0:
            teacher_samples = samples
            box_side = float((run.field.aabb[1] - run.field.aabb[0]).max())
        else:
            entry["chamfer_to_teacher"] = chamfer(samples, teacher_samples)
            entry["chamfer_to_teacher_box_percent"] = 100.0 * entry["chamfer_to_teacher"] / box_side
        print(f"{run.model:5s} {run_dir}: mesh {mesh_seconds:.1f} s, {len(mesh.vertices)} vertices, "
              f"points {points_seconds:.1f} s, volume {volume_seconds:.1f} s"
              + (f", Chamfer to the teacher {entry['chamfer_to_teacher']:.4f}" if index else ""), flush=True)
        entries.append(entry)
    result = write_result("export", scene, {"runs": entries, "samples": args.samples}, args.out_dir)
    print(f"wrote {result}")
    return result


if __name__ == "__main__":
    main()
