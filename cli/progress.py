"""The live progress display of long commands (training, distillation): one line a task, fitted
to the terminal's width.

A full line reads::

    distill hash->grid stage 2 ━━━━━━━━━━━━━━━━━━━━━━━━ 1200/2000 loss 1.23e-02 psnr 31.20 dB
    feature 2.10e-03 density 4.00e-04 colour 7.50e-04 val 30.95 dB 52.3k rays/s 45.3 spp 1:23 eta 0:40

(one line on a wide terminal). On a narrower one the parts that matter least go first: the named
losses, samples per ray, elapsed time, stage, title, validation PSNR, time left; the bar takes
the width the other parts leave. The step count, loss, PSNR and speed always stay.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from rich.console import Console
from rich.progress import Progress, ProgressColumn, Task
from rich.text import Text

if TYPE_CHECKING:
    from taichi_pvd.training.loop import Progress as StepProgress

#: Shown until the first optimizer step is done.
COMPILING = "compiling kernels (slow on the first run only)..."
#: Shown after the first step until the first report.
RUNNING = "running..."
#: Widest progress bar, characters.
BAR_WIDTH = 24
#: Narrowest progress bar worth drawing.
MIN_BAR_WIDTH = 5
#: Rank of the parts that are never dropped.
ALWAYS = 100


class _Part(NamedTuple):
    text: str
    keep: int
    """Parts of lower rank are dropped first when the line is too long."""
    style: str = ""


def _number(value: float | None, spec: str, unit: str = "") -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:{spec}}{unit}"


def _clock(seconds: float | None) -> str:
    """``83`` -> ``1:23``; ``3723`` -> ``1:02:03``; ``-:--`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _rate(rays_per_second: float) -> str:
    """Three significant digits: ``52300`` -> ``52.3k rays/s``; ``1234567`` -> ``1.23M rays/s``."""
    value, unit = rays_per_second, ""
    for bigger in ("k", "M", "G"):
        if value < 999.5:
            break
        value, unit = value / 1e3, bigger
    digits = 0 if not unit or value >= 99.5 else 1 if value >= 9.95 else 2
    return f"{value:.{digits}f}{unit} rays/s"


#: Where the bar goes in the list of parts; it takes the width the other parts leave.
_BAR = _Part("", ALWAYS)


def _parts(title: str, report: StepProgress | None, status: str, elapsed: float | None) -> list[_Part]:
    """Every part of the line in display order."""
    parts = [_Part(title, 5, "bold")]
    if report is None:
        return parts + [_Part(status, ALWAYS), _Part(_clock(elapsed), 3)]
    if report.stage:
        parts.append(_Part(f"stage {report.stage}", 4))
    parts.append(_BAR)
    parts.append(_Part(f"{report.step}/{report.steps}", ALWAYS))
    parts.append(_Part(f"loss {_number(report.loss, '.2e')}", ALWAYS))
    losses = report.losses or {}
    rgb = losses.get("rgb")
    if rgb is not None and rgb > 0:
        parts.append(_Part(f"psnr {-10 * math.log10(rgb):.2f} dB", ALWAYS))
    parts += [_Part(f"{name} {losses[name]:.2e}", 1) for name in ("feature", "density", "colour") if name in losses]
    parts.append(_Part(f"val {_number(report.val_psnr_db, '.2f', ' dB')}", 6))
    if report.phase == "validate":
        parts.append(_Part("final validation...", ALWAYS))
    else:
        parts.append(_Part(_rate(report.rays_per_second), ALWAYS))
        parts.append(_Part(f"{report.samples_per_ray:.1f} spp", 2))
    parts.append(_Part(_clock(elapsed), 3))
    if report.phase != "validate":
        parts.append(_Part(f"eta {_clock(report.eta_s)}", 7))
    return parts


def _bar(width: int, report: StepProgress) -> Text:
    done = round(width * min(report.step / report.steps, 1.0)) if report.steps else 0
    bar = Text("━" * done, style="bar.complete")
    bar.append("━" * (width - done), style="bar.back")
    return bar


def step_line(title: str, report: StepProgress | None, status: str, elapsed: float | None, width: int) -> Text:
    """The progress line of one task, at most ``width`` characters wide (unless the parts that
    always stay are wider).

    Args:
        title: what runs, e.g. ``train hash``.
        report: the loop's latest report, or ``None`` before the first one.
        status: shown instead of the figures before the first report.
        elapsed: wall-clock seconds since the task started.
        width: the terminal's width, characters.
    """
    parts = _parts(title, report, status, elapsed)

    def length(kept: list[_Part]) -> int:
        return sum(len(p.text) for p in kept if p is not _BAR) + len(kept) - 1

    while length(parts) > width and any(p.keep < ALWAYS for p in parts):
        lowest = min(p.keep for p in parts)
        del parts[max(i for i, p in enumerate(parts) if p.keep == lowest)]
    bar_width = min(BAR_WIDTH, width - length(parts))
    line = Text(no_wrap=True, overflow="ellipsis")
    for part in parts:
        if part is _BAR:
            if report is None or bar_width < MIN_BAR_WIDTH:
                continue
            line.append_text(_bar(bar_width, report))
        else:
            line.append(part.text, style=part.style)
        line.append(" ")
    line.rstrip()
    return line


class _StepLineColumn(ProgressColumn):
    """The whole line of a task (:func:`step_line`), fitted to the console's width."""

    def __init__(self, console: Console):
        super().__init__()
        self._console = console

    def render(self, task: Task) -> Text:
        return step_line(task.description, task.fields["report"], task.fields["status"], task.elapsed,
                         self._console.width)


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
        self._bar.update(self._task, status=RUNNING)

    def __call__(self, p: StepProgress) -> None:
        self._bar.update(self._task, total=p.steps, completed=p.step, report=p)


@contextlib.contextmanager
def progress_display(console: Console, title: str) -> Iterator[StepDisplay]:
    """A live progress line on ``console``; yields the ``on_progress`` callback of the
    optimisation loops (a :class:`StepDisplay`).

    Shows "compiling kernels" until the first report (or until
    :meth:`StepDisplay.first_step_done`), then the line of :func:`step_line`: step, total loss
    (and each named loss), training-batch PSNR, validation PSNR, rays per second, samples per
    ray, elapsed and remaining time.
    """
    with Progress(_StepLineColumn(console), console=console, transient=False, refresh_per_second=4) as bar:
        task = bar.add_task(title, total=None, report=None, status=COMPILING)
        yield StepDisplay(bar, task, title)
