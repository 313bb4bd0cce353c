"""``pvd-ti render``, ``pvd-ti eval`` and ``pvd-ti info``: see what a run learned."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .options import ImageSize

_console = Console(stderr=True)
_out = Console()

RUNS_ROOT_OPTION = click.option(
    "--runs-root", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"),
    show_default=True, help="Where to look for the latest run when --run is not given.")
RUN_OPTION = click.option(
    "--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Run folder (default: the most recently written run under --runs-root).")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=_console, transient=True)


def _resolve_run(run_dir: Path | None, runs_root: Path) -> Path:
    from taichi_pvd.run_info import latest_run

    return run_dir if run_dir is not None else latest_run(runs_root)


def _captions(paths: list[Path]) -> list[str]:
    """Folder names of the runs, with their parent folder when two names clash."""
    names = [p.resolve().name for p in paths]
    if len(set(names)) < len(names):
        names = [f"{p.resolve().parent.name}/{p.resolve().name}" for p in paths]
    return names


@click.command(short_help="Render an orbit, a spiral, an ellipse or the test views to PNGs and videos.")
@RUN_OPTION
@click.option("--path", "path_kind", type=click.Choice(["orbit", "spiral", "ellipse", "test"]), default=None,
              help="orbit: a circle around the scene at 30 degrees elevation (objects); spiral: around the "
                   "training cameras (forward-facing scenes); ellipse: the ellipse fitted to the training "
                   "cameras, looking where their axes meet (360-degree captures); test: the test views, with "
                   "an error heat-map against the ground truth. Default: by the scene's type (orbit for "
                   "bounded, spiral for forward-facing, ellipse for unbounded).")
@click.option("--frames", type=click.IntRange(min=1), default=None,
              help="Number of frames (orbit/spiral/ellipse: 120; test: every test view, evenly spaced "
                   "when fewer).")
@click.option("--size", type=ImageSize(), default=None, metavar="WxH",
              help="Frame size in pixels (default: the training image size; on the test path the "
                   "trained size divided by a whole number).")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Frames per second of the videos.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: <run>/render/<path>).")
@click.option("--compare", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="RUN2",
              help="Render a second run beside the first (RUN | RUN2), captioned.")
@RUNS_ROOT_OPTION
def render(run_dir, path_kind, frames, size, fps, out, compare, runs_root) -> None:
    """Render a trained or distilled run along a camera path.

    Writes frames/NNNN.png, depth/NNNN.png, video.mp4 and depth.mp4 (GIFs when imageio-ffmpeg
    is not installed) into the output folder. Depth is coloured from near (yellow) to far
    (purple) over the scene's near/far range (on a log scale for unbounded scenes), black where
    nothing was hit. Scenes are loaded as the run was trained (its downscale, holdout and type)."""
    from taichi_pvd import backend
    from taichi_pvd.io.runs import load_run
    from taichi_pvd.memory import check_render_memory
    from taichi_pvd.rendering.images import PathWriter
    from taichi_pvd.rendering.inference import render_path
    from taichi_pvd.rendering.view_sets import default_path, ellipse_views, orbit_views, spiral_views, split_views

    run_dir = _resolve_run(run_dir, runs_root)
    backend.init()
    device = backend.device()
    paths = [run_dir] + ([compare] if compare is not None else [])
    runs = [load_run(p, device) for p in paths]
    background = runs[0].render_background()
    rig = runs[0].camera_rig()
    path_kind = path_kind or default_path(rig)
    if path_kind == "orbit":
        views = orbit_views(rig, frames or 120, size, background=background)
    elif path_kind == "spiral":
        views = spiral_views(rig, runs[0].load_scene("train").c2w, frames or 120, size, background=background)
    elif path_kind == "ellipse":
        views = ellipse_views(rig, runs[0].load_scene("train").c2w, frames or 120, size, background=background)
    else:
        views = split_views(runs[0].scene_path(), "test", frames, size, runs[0].scene_options())
    check_render_memory(views.width, views.height, device)
    out = out if out is not None else run_dir / "render" / path_kind
    unbounded = runs[0].camera_rig().contraction is not None
    writer = PathWriter(out, _captions(paths), views.near, views.far, fps, log_depth=unbounded)
    with _progress() as progress:
        task = progress.add_task(f"render {path_kind}", total=len(views))
        for i, rendered in render_path(runs, views):
            gt = None if views.ground_truth is None else views.ground_truth[i].cpu().numpy()
            writer.add([f.rgb for f in rendered], [f.depth for f in rendered],
                       [f.opacity for f in rendered], gt)
            progress.advance(task)
    video, depth = writer.finish()
    _console.print(f"[green]done[/]: {len(views)} frames of {views.width}x{views.height} -> {out}/frames, "
                   f"{video.name}, {depth.name}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


@click.command("eval", short_help="PSNR/SSIM (LPIPS if available) on the test split.")
@RUN_OPTION
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True,
              help="Scene split to evaluate.")
@click.option("--views", type=click.IntRange(min=1), default=None,
              help="Evaluate this many views, evenly spaced over the split (default: all).")
@click.option("--no-images", is_flag=True, help="Do not write the per-view PNGs.")
@click.option("--supersample", type=click.IntRange(min=1), default=1, show_default=True, metavar="K",
              help="Render K x K rays per pixel and average them (anti-aliased; K^2 times the work).")
@click.option("--downscale", type=click.IntRange(min=1), default=None,
              help="Score at the full images' size divided by this (default: the run's own downscale).")
@RUNS_ROOT_OPTION
def eval_(run_dir, split, views, no_images, supersample, downscale, runs_root) -> None:
    """Render the views of a split and score them against the ground truth: on white for scenes
    with transparent images, on black (the background their training composites) for opaque ones.
    The scene is loaded as the run was trained (its downscale, holdout and type).

    Writes <run>/eval/<split>/NNN-pred.png and NNN-gt.png, <run>/eval/metrics.json, and adds
    test_psnr_db / test_ssim (eval_<split>_... for other splits) to <run>/metrics.json. LPIPS is
    computed only when the lpips package and its AlexNet weights are already installed."""
    from taichi_pvd import backend
    from taichi_pvd.evaluation import evaluate_run
    from taichi_pvd.io.runs import load_run

    run_dir = _resolve_run(run_dir, runs_root)
    backend.init()
    run = load_run(run_dir, backend.device())
    with _progress() as progress:
        task = progress.add_task(f"eval {split}", total=views)
        result = evaluate_run(run, split=split, n_views=views, write_images=not no_images,
                              supersample=supersample, downscale=downscale,
                              on_view=lambda _: progress.advance(task))
    background = "black" if result.background == (0.0, 0.0, 0.0) else "white"
    table = Table(title=f"{run_dir.name}: {split} split",
                  caption=f"{result.width}x{result.height}, {background} background"
                          + (f", {supersample}x{supersample} rays per pixel" if supersample > 1 else ""))
    table.add_column("view", justify="right")
    table.add_column("PSNR (dB)", justify="right")
    table.add_column("SSIM", justify="right")
    with_lpips = result.lpips is not None
    if with_lpips:
        table.add_column("LPIPS", justify="right")
    for v in result.views:
        table.add_row(str(v.index), f"{v.psnr_db:.2f}", f"{v.ssim:.4f}", *([f"{v.lpips:.4f}"] if with_lpips else []))
    table.add_section()
    table.add_row("mean", f"{result.psnr_db:.2f}", f"{result.ssim:.4f}",
                  *([f"{result.lpips:.4f}"] if with_lpips else []), style="bold")
    _out.print(table)
    if not with_lpips:
        _console.print(f"[yellow]{result.lpips_note}[/]")
    _console.print(f"rendered {len(result.views)} views in {result.render_seconds:.1f} s -> {run_dir / 'eval'}")


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.2f} MiB ({n_bytes:,} bytes)"


_SPACES = {"box": "bounded box", "ndc": "forward-facing, normalized device coordinates",
           "contracted": "unbounded, contracted into [-2, 2]^3"}


def _info_table(info) -> Table:
    table = Table(title=str(info.path), show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("architecture", info.model)
    table.add_row("parameters", f"{info.num_parameters:,}")
    table.add_row("checkpoint", _size(info.checkpoint_bytes))
    table.add_row("run folder", _size(info.run_bytes))
    scene = info.scene.get("name", "?") + (" (embedded demo)" if info.scene.get("demo") else "")
    table.add_row("scene", f"{scene}: {info.scene.get('path', 'not recorded')}")
    table.add_row("scene space", _SPACES[info.space])
    options = info.scene.get("options") or {}
    if "scene_type" in options:
        table.add_row("scene type", f"{options['scene_type']} ({info.scene.get('type_reason', 'reason not recorded')})")
    split = info.scene.get("split")
    if split:
        table.add_row("split", f"{split['rule']}: {len(split['train'])} train, {len(split['test'])} test; "
                               f"downscale {options.get('downscale', 1)}")
    if info.teachers:
        links = []
        for t in info.teachers:
            psnr = "" if t.val_psnr_db is None else f", val {t.val_psnr_db:.2f} dB"
            missing = "" if t.exists else ", missing here"
            links.append(f"{t.model} ({t.path}{psnr}{missing})")
        table.add_row("origin", f"distilled from {' <- '.join(links)}")
    else:
        table.add_row("origin", "trained from images")
    table.add_row("metrics", ", ".join(f"{k}={_fmt(v)}" for k, v in info.metrics.items()) or "none recorded")
    if info.evaluation is not None:
        e = info.evaluation
        lpips = "" if e.get("lpips") is None else f", LPIPS {e['lpips']:.4f}"
        table.add_row("evaluation", f"{e['split']}: {e['n_views']} views, PSNR {e['psnr_db']:.2f} dB, "
                                    f"SSIM {e['ssim']:.4f}{lpips}")
    table.add_row("field config", ", ".join(f"{k}={v}" for k, v in info.field_config.items()))
    table.add_row(f"{'distillation' if info.origin == 'distilled' else 'training'} settings",
                  ", ".join(f"{k}={v}" for k, v in info.settings.items()))
    table.add_row("history", f"{info.history_records} records")
    return table


@click.command(short_help="Describe runs: architecture, parameters, provenance, metrics.")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also plot validation PSNR against time of all RUNS into this PNG file.")
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON instead of tables.")
def info(runs, plot, as_json) -> None:
    """Describe one or more run folders: architecture, exact parameter count, size on disk, where
    it came from (training, or the chain of teachers it was distilled from), recorded metrics
    and configuration.

    With --plot, write their validation PSNR against optimisation time into one PNG, e.g.
    `pvd-ti info runs/demo-mlp runs/demo-hash-to-mlp --plot psnr.png` to see distillation
    against training from scratch (a distilled run's PSNR is measured against its teacher)."""
    from taichi_pvd.plots import plot_psnr_vs_time
    from taichi_pvd.run_info import describe_run

    infos = [describe_run(r) for r in runs]
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in infos] if len(infos) > 1 else infos[0].to_dict(), indent=2))
    else:
        for i in infos:
            _out.print(_info_table(i))
    if plot is not None:
        written = plot_psnr_vs_time(list(runs), plot)
        _console.print(f"PSNR against time -> {written}")
