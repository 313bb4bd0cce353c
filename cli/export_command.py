"""``pvd-ti export``: a run as a mesh, a point cloud or a volume."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from .view_commands import RUN_OPTION, RUNS_ROOT_OPTION, _resolve_run

_console = Console(stderr=True)

#: The default of --threshold, kept equal to taichi_pvd.export.DEFAULT_THRESHOLD (a test checks
#: it) so that `pvd-ti --help` needs no import of the library.
DEFAULT_THRESHOLD = 3.35


class BoxOption(click.ParamType):
    """``xmin,ymin,zmin,xmax,ymax,zmax``: six numbers."""

    name = "box"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            numbers = [float(v) for v in value.split(",")]
        except ValueError:
            numbers = []
        if len(numbers) != 6:
            self.fail(f"{value!r} is not six numbers xmin,ymin,zmin,xmax,ymax,zmax", param, ctx)
        return (tuple(numbers[:3]), tuple(numbers[3:]))


@click.command("export", short_help="Export a run as a mesh (.ply/.obj/.glb), points (.ply) or a volume (.npz).")
@RUN_OPTION
@click.option("--format", "kind", type=click.Choice(["mesh", "points", "volume"]), required=True,
              help="mesh: marching cubes of the density, with vertex colours; points: a coloured "
                   "point cloud from depth renders; volume: density and RGB on a grid (.npz).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write: .ply, .obj or .glb (mesh), .ply (points), .npz (volume).")
@click.option("--resolution", type=int, default=None,
              help="Grid points along the longest side of the box (mesh, volume; default 512 on a "
                   "GPU, 256 on the CPU). Refused when it would not fit in memory.")
@click.option("--threshold", type=float, default=DEFAULT_THRESHOLD, show_default=True,
              help="Density (1/world unit) of the mesh surface: the default absorbs 1% of the light "
                   "over 1/1000 of a 3-unit box. Raise it for a tighter surface, lower it to "
                   "keep faint parts.")
@click.option("--keep-largest", is_flag=True, help="Mesh: keep only the largest connected piece.")
@click.option("--min-faces", "min_component_faces", type=click.IntRange(min=1), default=1, show_default=True,
              help="Mesh: drop connected pieces with fewer faces (floaters).")
@click.option("--keep-hidden", is_flag=True,
              help="Mesh: keep the faces no view sees (such as the inner walls of solids).")
@click.option("--views", "views_kind", type=click.Choice(["train", "orbit"]), default="train", show_default=True,
              help="The cameras whose pixels give the points, and whose unseen mesh faces are dropped: "
                   "the training views, or an orbit of virtual views.")
@click.option("--frames", type=click.IntRange(min=1), default=60, show_default=True,
              help="Number of orbit views (with --views orbit).")
@click.option("--points", "n_points", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Points: the most points to keep (picked at random).")
@click.option("--box", type=BoxOption(), default=None, metavar="X0,Y0,Z0,X1,Y1,Z1",
              help="Region to export, field coordinates (default: the occupied part of the scene "
                   "box; for an unbounded scene, of its inner region [-1,1]^3).")
@RUNS_ROOT_OPTION
def export(run_dir, kind, out, resolution, threshold, keep_largest, min_component_faces, keep_hidden, views_kind,
           frames, n_points, box, runs_root) -> None:
    """Export a trained or distilled run of any architecture as explicit geometry.

    \b
    mesh    marching cubes of the density sigma at --threshold, the faces the --views see,
            vertex colours seen along the surface normal; .ply, .obj or .glb.
    points  one point per pixel of the --views, where its ray first reaches --threshold
            (when it becomes opaque just after: faint floaters give none), with the
            colour seen there; .ply.
    volume  .npz: data = numpy.load(FILE);
              data["density"]  [nx, ny, nz] float32, sigma (1/world unit) at
                               data["box"][0] + data["voxel_size"] * (i, j, k)
              data["rgb"]      [nx, ny, nz, 3] uint8, colour averaged over 4 directions
                               (0 where density < data["rgb_threshold"])
              data["box"]      [2, 3] min and max corner; data["model"] the architecture.

    Positions are in the field's coordinates (world units for a bounded scene); the density
    is zero away from the run's occupied cells, as rendering sees it. Mesh and
    point export need the optional packages PyMCubes and trimesh: pip install "taichi-pvd[export]".
    """
    import numpy as np

    from taichi_pvd import backend
    from taichi_pvd import export as exporting
    from taichi_pvd.io.runs import load_run
    from taichi_pvd.rendering.view_sets import orbit_views, split_views

    exporting.check_output(out, kind)
    if kind != "volume":
        exporting.require_mesh_libraries()
    run_dir = _resolve_run(run_dir, runs_root)
    backend.init()
    device = backend.device()
    if resolution is None:
        resolution = 512 if device.type == "cuda" else 256
    box = None if box is None else np.array(box, dtype=np.float64)
    run = load_run(run_dir, device)
    views = None
    if kind == "points" or (kind == "mesh" and not keep_hidden):
        if views_kind == "train":
            views = split_views(run.scene_path(), "train", scene_options=run.scene_options())
        else:
            views = orbit_views(run.camera_rig(), frames, background=run.render_background())
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                  console=_console, transient=True) as progress:
        task = progress.add_task(f"export {kind}", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        if kind == "mesh":
            mesh = exporting.extract_mesh(run, resolution=resolution, threshold=threshold, box=box, views=views,
                                          keep_largest=keep_largest, min_component_faces=min_component_faces,
                                          on_progress=on_progress)
            exporting.write_mesh(mesh, out)
            summary = f"{len(mesh.vertices)} vertices, {len(mesh.faces)} faces"
        elif kind == "points":
            cloud = exporting.extract_points(run, views, threshold=threshold, n_points=n_points, box=box,
                                             on_progress=on_progress)
            exporting.write_points(cloud, out)
            summary = f"{len(cloud.points)} points from {len(views)} views"
        else:
            grid = exporting.write_volume(run, out, resolution=resolution, box=box, on_progress=on_progress)
            summary = f"{grid.shape[0]}x{grid.shape[1]}x{grid.shape[2]} voxels of {grid.voxel_size:.4g}"
    _console.print(f"[green]done[/]: {summary} -> {out}")
