"""The live progress display of long commands (training, distillation)."""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from taichi_pvd.training.loop import Progress as StepProgress


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:{spec}}{unit}"


#: Shown until the first optimizer step is done.
COMPILING = "compiling kernels (slow on the first run only)..."


class StepDisplay:
    """The ``on_progress`` callback that :func:`progress_display` yields (call it with each
    :class:`~taichi_pvd.training.loop.Progress`), plus :meth:`first_step_done` for the kernel
    compilation phase."""

    def __init__(self, bar: Progress, task, title: str):
        self._bar, self._task, self._title = bar, task, title

    def first_step_done(self, seconds: float) -> None:
        """Show how long the first step took: Taichi compiles the kernels there (or loads them
        from its offline cache, which makes later runs start faster)."""
        self._bar.console.print(
            f"[dim]{self._title}: first step {seconds:.1f} s, Taichi kernel compilation included "
            "(compiled kernels are cached, so the next run starts faster)[/]")
        self._bar.update(self._task, stats="running...")

    def __call__(self, p: StepProgress) -> None:
        parts = [f"loss {_fmt(p.loss, '.2e')}"]
        rgb = (p.losses or {}).get("rgb")
        if rgb is not None and rgb > 0:
            parts.append(f"psnr {_fmt(-10 * math.log10(rgb), '.2f')} dB")
        for name in ("feature", "density", "colour"):
            if p.losses and name in p.losses:
                parts.append(f"{name} {p.losses[name]:.2e}")
        parts.append(f"val {_fmt(p.val_psnr_db, '.2f', ' dB')}")
        if p.phase == "validate":
            parts.append("final validation...")
        else:
            parts.append(f"{p.rays_per_second / 1e3:,.0f}k rays/s")
            parts.append(f"{p.samples_per_ray:.1f} spp")
        desc = f"{self._title} [stage {p.stage}]" if getattr(p, "stage", None) else self._title
        self._bar.update(self._task, total=p.steps, completed=p.step, stats=" | ".join(parts), description=desc)


@contextlib.contextmanager
def progress_display(console: Console, title: str) -> Iterator[StepDisplay]:
    """A rich progress bar; yields the ``on_progress`` callback of the optimisation loops
    (a :class:`StepDisplay`).

    Shows "compiling kernels" until the first report (or until
    :meth:`StepDisplay.first_step_done`), then step, total loss (and each named loss),
    training-batch PSNR, validation PSNR, rays per second, samples per ray, elapsed and
    remaining time.
    """
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False, refresh_per_second=4) as bar:
        task = bar.add_task(title, total=None, stats=COMPILING)
        yield StepDisplay(bar, task, title)
