"""``pvd-ti train`` and ``pvd-ti distill``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import click
from rich.console import Console

from taichi_pvd.errors import PvdError

from .error_messages import advice_message
from .options import ARCHITECTURES, PRESETS, parse_overrides
from .progress import progress_display
from .viewer_command import VIEW_OPTION, attach_live_viewer

_console = Console(stderr=True)
#: Options shared by ``train`` and ``distill``.
TIME_LIMIT_OPTION = click.option("--time-limit", type=float, default=None,
                                 help="Stop after this many seconds of optimisation.")


def _snapshot_times(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    """``"300,600"`` -> ``(300.0, 600.0)``; a clear usage error for anything else."""
    if value is None:
        return None
    try:
        times = tuple(float(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected seconds separated by commas, e.g. 300,600; got {value!r}") from None
    if not all(t > 0 for t in times):
        raise click.BadParameter(f"snapshot times must be positive seconds, got {value!r}")
    return times


SNAPSHOT_OPTION = click.option(
    "--snapshot-at", "snapshot_times", type=str, default=None, callback=_snapshot_times,
    metavar="SECONDS[,SECONDS...]",
    help="Keep a copy of the checkpoint in snapshots/<t>s/ once this much optimisation time has passed, "
         "e.g. --snapshot-at 300,600.")
MIXED_PRECISION_OPTION = click.option(
    "--mixed-precision/--no-mixed-precision", default=None,
    help="Autocast for the MLPs on CUDA: float16 in training, bfloat16 in distillation where the GPU has "
         "it (default: on for the mlp, off for the others, whose small MLPs run float32 products in TF32).")


def _reproducible_if_seeded(seed: int | None) -> None:
    """With an explicit seed, start Taichi deterministic: CPU runs become bit-for-bit repeatable."""
    if seed is not None:
        from taichi_pvd import backend

        backend.init(deterministic=True)


@contextlib.contextmanager
def _user_facing_failures(command: str, batch_rays: int | None, started: dict) -> Iterator[None]:
    """Turns a GPU out-of-memory error into advice, and tells where an interrupted run was
    saved and how to continue it (``started["loop"]``: the loop, once it is built)."""
    import torch

    try:
        yield
    except torch.cuda.OutOfMemoryError as err:
        smaller = f"e.g. --batch-rays {max(batch_rays // 2, 1)}" if batch_rays else "e.g. half the default"
        raise PvdError(
            f"the GPU ran out of memory ({str(err).splitlines()[0]}): pass a smaller --batch-rays "
            f"({smaller}) or close other programs using the GPU; a run stopped this way continues "
            "from its last checkpoint with --resume"
        ) from None
    except KeyboardInterrupt:
        loop = started.get("loop")
        if loop is not None and loop.saved_step is not None:
            _console.print(f"[yellow]stopped[/] at step {loop.saved_step}: checkpoint saved in {loop.out_dir}; "
                           f"continue with the same `pvd-ti {command}` command plus --resume")
        elif loop is not None:
            _console.print(f"[yellow]stopped[/] before the first checkpoint: nothing saved in {loop.out_dir}")
        raise


def _print_scene(scene) -> None:
    """The scene's type and why, its split and its cameras' lens model."""
    _console.print(f"[bold]scene[/]: {scene.name}, {scene.scene_type.describe()}", soft_wrap=True)
    _console.print(f"[bold]split[/]: {scene.split_summary.describe()}", soft_wrap=True)
    lens = "pinhole" if scene.lens is None else f"{scene.lens.model} lens distortion, undistorted into the rays"
    _console.print(f"[bold]cameras[/]: {lens}")


def _print_field(title: str, field) -> None:
    _console.print(f"[bold]{title}[/]: {field.kind} field, {field.num_parameters():,} parameters")


def _print_hints(hints: list) -> None:
    """Print the library's :class:`~taichi_pvd.advice.Advice`, worded with this command's flags."""
    command = click.get_current_context().command
    for hint in hints:
        _console.print(f"[yellow]hint[/]: {advice_message(hint, command)}", soft_wrap=True)


@click.command(short_help="Train a field on a scene (the demo scene by default).")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Scene folder with transforms_*.json (default: the embedded demo scene).")
@click.option("--model", type=ARCHITECTURES, default="hash", show_default=True, help="Architecture to train.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: runs/<scene>-<model>).")
@click.option("--steps", type=int, default=None, help="Optimizer steps.")
@click.option("--batch-rays", type=int, default=None, help="Rays per step.")
@click.option("--lr", type=float, default=None, help="Peak learning rate.")
@click.option("--seed", type=int, default=None,
              help="Random seed; with it, CPU runs are bit-for-bit reproducible (Taichi uses one CPU thread).")
@click.option("--downscale", type=int, default=None, help="Integer image downscale factor.")
@click.option("--holdout-every", type=int, default=None,
              help="A scene with one transforms.json (or an LLFF folder) holds out every N-th frame for testing "
                   "(default 8; 0: none, test scores are then on training views).")
@click.option("--scene-type", type=click.Choice(["bounded", "unbounded", "forward-facing"]), default=None,
              help="Override the scene type the loader decides (printed with its reason at the start).")
@click.option("--val-every", type=int, default=None, help="Steps between validation renders (0: end only).")
@click.option("--checkpoint-every", type=int, default=None, help="Steps between checkpoints (0: end only).")
@click.option("--grid-resolution", type=int, default=None, help="Occupancy grid cells per axis (default 128).")
@TIME_LIMIT_OPTION
@SNAPSHOT_OPTION
@MIXED_PRECISION_OPTION
@click.option("--set", "field_sets", multiple=True, metavar="KEY=VALUE",
              help="Field option, e.g. --set log2_table_size=17 (repeatable).")
@click.option("--train-set", "train_sets", multiple=True, metavar="KEY=VALUE",
              help="Any other training option, e.g. --train-set ema_decay=0.99 (repeatable).")
@click.option("--preset", "preset_name", type=PRESETS, default=None,
              help="Settings under the options above: cpu (small, fits a CPU), gpu (the demo sized for a GPU) "
                   "or full (the paper-sized settings); "
                   "auto picks by the backend. Default: auto on the demo scene, full on --data scenes.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--overwrite", is_flag=True,
              help="Replace a run already in --out (kept until the new run writes its first checkpoint).")
@click.option("--force", is_flag=True, help="With --resume: continue even on another scene than the run's.")
@VIEW_OPTION
def train(data, model, out, steps, batch_rays, lr, seed, downscale, holdout_every, scene_type, val_every,
          checkpoint_every, grid_resolution,
          time_limit, snapshot_times, mixed_precision, field_sets, train_sets, preset_name, resume,
          overwrite, force, view) -> None:
    """Train a radiance field (hash, vm, mlp or grid) on a transforms.json scene; writes a
    checkpoint, metrics.json and a history log into the run folder."""
    from taichi_pvd.presets import settings_lines, training_preset
    from taichi_pvd.training.api import train as train_run
    from taichi_pvd.training.interrupts import graceful_termination

    # From here on Ctrl-C and SIGTERM ask the run to stop (answered once it can save), so a signal
    # during start-up is never lost in Taichi's or torch's start.
    click.get_current_context().with_resource(graceful_termination())

    options = dict(steps=steps, batch_rays=batch_rays, lr=lr, seed=seed, downscale=downscale,
                   holdout_every=holdout_every, scene_type=scene_type, val_every=val_every, checkpoint_every=checkpoint_every,
                   grid_resolution=grid_resolution, time_limit_s=time_limit, snapshot_times_s=snapshot_times,
                   mixed_precision=mixed_precision)
    # Options left unset must not erase the same key given with --train-set.
    overrides = {**parse_overrides(train_sets, "--train-set"), **{k: v for k, v in options.items() if v is not None}}
    _reproducible_if_seeded(seed)
    field_options = parse_overrides(field_sets, "--set")
    preset = training_preset(preset_name, demo_scene=data is None)
    for line in settings_lines(preset, trained=model, train=overrides, fields={model: field_options}):
        _console.print(f"[dim]{line}[/]")
    started: dict = {}

    def on_ready(trainer) -> None:
        started["loop"] = trainer
        _print_scene(trainer.scene)
        _print_field("training", trainer.field)
        _print_hints(trainer.field.hints_for_images(trainer.scene.width, trainer.scene.height))
        _print_hints(trainer.hints(preset.name))
        if view:
            attach_live_viewer(trainer)

    with _user_facing_failures("train", batch_rays, started), \
            progress_display(_console, f"train {model}") as on_progress:
        metrics = train_run(
            data=data, model=model, out=out, preset=preset, field_overrides=field_options,
            train_overrides=overrides, resume=resume, overwrite=overwrite, force=force, on_progress=on_progress,
            on_ready=on_ready,
        )
    psnr = metrics.get("val_psnr_db")
    _console.print(
        f"[green]done[/]: {metrics['model']} trained {metrics['steps']} steps in {metrics['train_seconds']:.1f} s, "
        f"validation PSNR {psnr:.2f} dB -> {metrics['run_dir']}"
    )


@click.command(short_help="Convert a trained field into another architecture (PVD).")
@click.option("--from", "source", type=ARCHITECTURES, default="hash", show_default=True, help="Teacher architecture.")
@click.option("--to", "target", type=ARCHITECTURES, default="grid", show_default=True, help="Student architecture.")
@click.option("--teacher", type=click.Path(path_type=Path), default=None,
              help="Teacher run folder (default: the latest --from run under runs/).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Student run folder (default: runs/<teacher>-to-<student>).")
@click.option("--steps", type=int, default=None, help="Total steps (all stages).")
@click.option("--stage1-steps", type=int, default=None, help="Steps of stage 1 (feature loss only).")
@click.option("--stage2-steps", type=int, default=None, help="Steps of stage 2 (+ density and colour).")
@click.option("--batch-rays", type=int, default=None, help="Pseudo-label rays per step.")
@click.option("--lr", type=float, default=None, help="Peak learning rate (default: the student's).")
@click.option("--seed", type=int, default=None,
              help="Random seed; with it, CPU runs are bit-for-bit reproducible (Taichi uses one CPU thread).")
@click.option("--no-feature-loss", is_flag=True, help="Ablation: drop the feature loss.")
@click.option("--no-density-clip", is_flag=True, help="Ablation: compare raw densities unclipped.")
@click.option("--no-blockwise", is_flag=True, help="Ablation: every loss from step 0.")
@click.option("--init-head-from-teacher", is_flag=True, help="Start the student's colour head from the teacher's.")
@click.option("--val-every", type=int, default=None, help="Steps between student-vs-teacher checks.")
@click.option("--checkpoint-every", type=int, default=None, help="Steps between checkpoints.")
@TIME_LIMIT_OPTION
@SNAPSHOT_OPTION
@MIXED_PRECISION_OPTION
@click.option("--set", "student_sets", multiple=True, metavar="KEY=VALUE", help="Student field option (repeatable).")
@click.option("--distill-set", "distill_sets", multiple=True, metavar="KEY=VALUE",
              help="Any other distillation option, e.g. --distill-set rgb_weight=0.5.")
@click.option("--preset", "preset_name", type=PRESETS, default=None,
              help="Settings under the options above (cpu, gpu or full; auto picks by the backend). Default: "
                   "auto for a teacher trained on the demo scene, full (the paper-sized settings) otherwise.")
@click.option("--runs-root", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"),
              show_default=True, help="Where to look for the latest teacher.")
@click.option("--resume", is_flag=True, help="Continue the distillation in --out.")
@click.option("--overwrite", is_flag=True,
              help="Replace a run already in --out (kept until the new run writes its first checkpoint).")
@click.option("--force", is_flag=True, help="With --resume: continue even from another teacher than the run's.")
@VIEW_OPTION
def distill(source, target, teacher, out, steps, stage1_steps, stage2_steps, batch_rays, lr, seed,
            no_feature_loss, no_density_clip, no_blockwise, init_head_from_teacher, val_every,
            checkpoint_every, time_limit, snapshot_times, mixed_precision, student_sets, distill_sets, preset_name, runs_root, resume,
            overwrite, force, view) -> None:
    """Distil a trained field into another architecture without the training images."""
    from taichi_pvd.distill.api import distill as distill_run
    from taichi_pvd.distill.api import teacher_run_dir, trained_on_demo_scene
    from taichi_pvd.presets import settings_lines, training_preset
    from taichi_pvd.training.interrupts import graceful_termination

    click.get_current_context().with_resource(graceful_termination())
    overrides = parse_overrides(distill_sets, "--distill-set")
    options = dict(steps=steps, stage1_steps=stage1_steps, stage2_steps=stage2_steps, batch_rays=batch_rays,
                   lr=lr, seed=seed, val_every=val_every, checkpoint_every=checkpoint_every,
                   time_limit_s=time_limit, snapshot_times_s=snapshot_times, mixed_precision=mixed_precision)
    # Options left unset must not erase the same key given with --distill-set.
    overrides.update({k: v for k, v in options.items() if v is not None})
    if no_feature_loss:
        overrides["feature_loss"] = False
    if no_density_clip:
        overrides["density_clip"] = False
    if no_blockwise:
        overrides["blockwise"] = False
    if init_head_from_teacher:
        overrides["init_head_from_teacher"] = True
    teacher = teacher_run_dir(source, teacher, runs_root)
    preset = training_preset(preset_name, demo_scene=trained_on_demo_scene(teacher))
    student_options = parse_overrides(student_sets, "--set")
    for line in settings_lines(preset, student=target, distill=overrides, fields={target: student_options}):
        _console.print(f"[dim]{line}[/]")
    _reproducible_if_seeded(seed)
    started: dict = {}

    def on_ready(distiller) -> None:
        started["loop"] = distiller
        _print_field(f"distilling {distiller.teacher.kind} -> {distiller.field.kind}", distiller.field)
        _print_hints(distiller.hints())
        if view:
            attach_live_viewer(distiller, teacher)

    with _user_facing_failures("distill", batch_rays, started), \
            progress_display(_console, f"distill {source}->{target}") as on_progress:
        metrics = distill_run(
            source=source, target=target, teacher=teacher, out=out, preset=preset,
            student_overrides=student_options, distill_overrides=overrides,
            resume=resume, overwrite=overwrite, force=force, runs_root=runs_root, on_progress=on_progress,
            on_ready=on_ready,
        )
    _console.print(
        f"[green]done[/]: {source} -> {target} in {metrics['distill_seconds']:.1f} s, student vs teacher "
        f"{metrics['student_vs_teacher_psnr_db']:.2f} dB -> {metrics['run_dir']}"
    )
