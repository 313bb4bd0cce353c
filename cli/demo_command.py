"""``pvd-ti demo``: the whole job on the embedded demo scene, with a display for each phase."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .options import PRESETS, parse_overrides
from .progress import progress_display

_console = Console(stderr=True)
_out = Console()
#: Where the demo writes by default (the library's ``demo_job.DEFAULT_OUT``).
DEFAULT_OUT = Path("runs") / "demo"


def _bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=_console, transient=False)


def _phase(number: int, text: str) -> None:
    _console.rule(f"[bold]{number}/5[/] {text}", align="left")


def _summary_table(summary) -> Table:
    from taichi_pvd.demo_job import STUDENT_MODEL, TEACHER_MODEL

    table = Table(title=f"demo done in {summary.seconds['total']:.0f} s", show_header=True)
    table.add_column("")
    table.add_column("model")
    table.add_column("test PSNR", justify="right")
    table.add_column("SSIM", justify="right")
    table.add_column("run folder", overflow="fold")
    for role, model, result, folder in (("teacher", TEACHER_MODEL, summary.teacher, summary.paths.teacher),
                                        ("student", STUDENT_MODEL, summary.student, summary.paths.student)):
        table.add_row(role, model, f"{result.psnr_db:.2f} dB", f"{result.ssim:.4f}", str(folder))
    return table


@click.command(short_help="The whole job on the demo scene: train, distil, render, evaluate.")
@click.option("--preset", "preset_name", type=PRESETS, default="auto",
              show_default=True,
              help="Settings: cpu (fits a CPU, minutes), gpu (the demo sized for a GPU), full (the "
                   "paper-sized settings); "
                   "auto picks by the backend.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT, show_default=True,
              help="Folder for everything the demo writes (an earlier demo there is replaced).")
@click.option("--size", type=click.IntRange(min=8), default=None, help="Demo scene image size in pixels.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Teacher training steps.")
@click.option("--batch-rays", type=click.IntRange(min=1), default=None, help="Teacher rays per step.")
@click.option("--distill-steps", type=click.IntRange(min=1), default=None, help="Distillation steps (all stages).")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Frames of the orbit video.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of training and distillation.")
@click.option("--set", "teacher_sets", multiple=True, metavar="KEY=VALUE",
              help="Teacher (hash) field option, e.g. --set log2_table_size=17 (repeatable).")
@click.option("--student-set", "student_sets", multiple=True, metavar="KEY=VALUE",
              help="Student (grid) field option, e.g. --student-set resolution=96 (repeatable).")
@click.option("--train-set", "train_sets", multiple=True, metavar="KEY=VALUE",
              help="Any training option, e.g. --train-set grid_resolution=128 or "
                   "--train-set 'marching={\"steps_across_box\": 512}' (repeatable).")
@click.option("--distill-set", "distill_sets", multiple=True, metavar="KEY=VALUE",
              help="Any distillation option, e.g. --distill-set stage2_steps=500 (repeatable).")
def demo(preset_name, out, size, steps, batch_rays, distill_steps, frames, seed, teacher_sets, student_sets,
         train_sets, distill_sets) -> None:
    """Run the whole job on the embedded demo scene: train a hash teacher, distil it into a grid
    student, render an orbit video of both side by side, and score both on the test views.

    The preset that fits the hardware is printed first; every part of it can be overridden.
    Writes into --out: hash/ (teacher run), hash-to-grid/ (student run), orbit/ (videos and
    frames) and summary.json (figures and timings)."""
    from taichi_pvd import backend
    from taichi_pvd.demo_job import STUDENT_MODEL, TEACHER_MODEL, DemoJob
    from taichi_pvd.presets import get_preset, settings_lines

    chosen = get_preset(preset_name)
    changes = dict(
        train={**parse_overrides(train_sets, "--train-set"), "steps": steps, "batch_rays": batch_rays},
        fields={TEACHER_MODEL: parse_overrides(teacher_sets, "--set"),
                STUDENT_MODEL: parse_overrides(student_sets, "--student-set")},
        distill={**parse_overrides(distill_sets, "--distill-set"), "steps": distill_steps},
    )
    preset = chosen.with_overrides(scene_size=size, video_frames=frames, **changes)
    _console.print(f"backend: [bold]{backend.arch()}[/]")
    for line in settings_lines(chosen, trained=TEACHER_MODEL, student=STUDENT_MODEL, **changes):
        _console.print(line)
    job = DemoJob(preset, out, seed=seed)
    if job.prepare():
        _console.print(f"replacing the earlier demo in {out}")

    _phase(1, f"demo scene, {preset.scene_size}x{preset.scene_size} pixels")
    with _console.status("rendering the demo scene (first use only; it is cached)..."):
        scene = job.scene()
    _console.print(f"scene: {scene} ({job.seconds['scene']:.1f} s)")

    _phase(2, f"train the {TEACHER_MODEL} teacher from the training images")
    with progress_display(_console, f"train {TEACHER_MODEL}") as display:
        teacher = job.train_teacher(on_progress=display, on_first_step=display.first_step_done)
    _console.print(f"teacher: {teacher['steps']} steps in {teacher['train_seconds']:.1f} s, "
                   f"validation PSNR {teacher['val_psnr_db']:.2f} dB")

    _phase(3, f"distil it into a {STUDENT_MODEL} student (no training images: the teacher labels virtual rays)")
    with progress_display(_console, f"distill {TEACHER_MODEL}->{STUDENT_MODEL}") as display:
        student = job.distill_student(on_progress=display, on_first_step=display.first_step_done)
    _console.print(f"student: {student['steps']} steps in {student['distill_seconds']:.1f} s, "
                   f"{student['student_vs_teacher_psnr_db']:.2f} dB against the teacher's renderings")

    _phase(4, "orbit video, teacher | student")
    with _bar() as bar:
        task = bar.add_task("render orbit", total=preset.video_frames)
        video, depth = job.render_orbit(on_frame=lambda done, total: bar.update(task, completed=done))

    _phase(5, "evaluate both on the test views")
    with _bar() as bar:
        tasks = {role: bar.add_task(f"eval {role}", total=None) for role in ("teacher", "student")}
        job.evaluate(on_view=lambda role, _: bar.advance(tasks[role]))

    summary = job.finish()
    _out.print(_summary_table(summary))
    _out.print(f"video:   {video} (depth: {depth.name}, frames: {summary.paths.orbit / 'frames'})")
    _out.print(f"summary: {summary.paths.summary}")
    _out.print(f"next:    pvd-ti info {summary.paths.teacher} {summary.paths.student}")
