"""``pvd-ti batch PLAN``: the teachers and distillations of a plan file, in this process or
across torchrun's workers (``torchrun --nproc-per-node N -m taichi_pvd_cli batch PLAN``)."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from taichi_pvd.errors import PvdError

_console = Console(stderr=True)
_COLOURS = {"done": "green", "running": "cyan", "waiting": "dim", "failed": "red"}


def _counts(states: dict) -> Text:
    """``3 done, 2 running, 1 waiting, 0 failed``, coloured."""
    counts = {state: 0 for state in _COLOURS}
    for state in states.values():
        counts[state.state] += 1
    text = Text()
    for i, (state, count) in enumerate(counts.items()):
        text.append(f"{', ' if i else ''}{count} {state}", style=_COLOURS[state])
    return text


def _board(title: str, read_states, started: float) -> Group:
    """The whole batch at a glance: jobs done / running / waiting / failed, and who runs what."""
    states = read_states()
    minutes, seconds = divmod(int(time.monotonic() - started), 60)
    head = Text.assemble(f"batch {title}: ", _counts(states), f"  {minutes}:{seconds:02d}")
    running = [Text(f"  {name} on rank {state.worker.rank}", style="cyan")
               for name, state in states.items() if state.state == "running" and state.worker is not None]
    return Group(head, *running)


@click.command(short_help="Run a plan of teachers and distillations (one process, or torchrun's workers).")
@click.argument("plan_file", metavar="PLAN", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder: a run folder per job, <out>/<scene>/<teacher> and "
                   "<out>/<scene>/<teacher>-to-<student>, and the summary (default: runs/<plan name>).")
def batch(plan_file: Path, out: Path | None) -> None:
    """Train the teachers and make the distillations that the TOML file PLAN lists (see
    docs/batch.md), each job in its own run folder; jobs already finished there are skipped and
    stopped ones resume. Writes batch-results.json and batch-results.md into the output folder.

    Under torchrun each worker (one a GPU) takes the next ready job from a queue in torchrun's
    store; a worker that dies is restarted by torchrun (--max-restarts) and its job resumed."""
    from taichi_pvd.batch import load_plan, run_batch
    from taichi_pvd.batch.launch import Launch
    from taichi_pvd.batch.queue import read_states
    from taichi_pvd.batch.summary import RESULTS_TABLE

    launch = Launch.from_environment()
    launch.pin_gpu()
    plan = load_plan(plan_file)
    out_root = out if out is not None else Path("runs") / plan_file.stem
    who = f"[rank {launch.rank}] " if launch.distributed else ""
    live: list[Live] = []
    queues: list = []

    def on_event(event: str, job, detail: str) -> None:
        colour = {"done": "green", "failed": "red", "released": "yellow"}.get(event, "")
        text = Text(f"{who}{event} {job.name}" + (f": {detail}" if detail else ""), style=colour)
        if queues and not live and event in ("done", "failed"):  # rank 0 without the live board
            text = Text.assemble(text, " (", _counts(queues[0].states()), ")")
        _console.print(text, soft_wrap=True, highlight=False)

    def on_queue(queue) -> None:
        if launch.rank == 0:
            queues.append(queue)
        if launch.rank == 0 and _console.is_terminal:
            store, started = launch.connect(), time.monotonic()
            live.append(Live(get_renderable=lambda: _board(plan_file.name, lambda: read_states(store, plan.jobs),
                                                           started),
                             console=_console, refresh_per_second=2))
            live[0].start()

    try:
        rows = run_batch(plan, out_root, launch, on_event=on_event, on_queue=on_queue)
    finally:
        for display in live:
            display.stop()
    if rows is None:
        return
    failed = [row for row in rows if row["state"] == "failed"]
    done = len(rows) - len(failed)
    _console.print(Text.assemble(("batch done", "green"), f": {done} of {len(rows)} jobs done -> "
                                 f"{out_root / RESULTS_TABLE}"), soft_wrap=True)
    if failed:
        message = (f"{len(failed)} of {len(rows)} jobs failed ({', '.join(row['job'] for row in failed)}); "
                   f"see {out_root / RESULTS_TABLE}")
        if launch.distributed:  # a worker's non-zero exit would make torchrun restart the batch
            _console.print(Text(message, style="red"), soft_wrap=True)
        else:
            raise PvdError(message)
