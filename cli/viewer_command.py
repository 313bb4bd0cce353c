"""``pvd-ti view``: the web viewer of one run, or of two compared; and ``--view`` of ``pvd-ti
train`` / ``pvd-ti distill``, the same page while the run learns."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

_console = Console(stderr=True)

#: ``--view`` of the commands that learn.
VIEW_OPTION = click.option(
    "--view", is_flag=True,
    help="Serve the web viewer while the run learns (distill: teacher | student); rendering takes at most "
         "~5% of the time. Needs pip install -e \".[viewer]\".")


def _announce(session) -> None:
    _console.print(f"viewer at [bold]{session.url}[/] (open it in a browser)")


@click.command(short_help="Look at a run (or two, compared) in the browser.")
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.option("--compare", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="RUN2",
              help="A second run shown from the same camera (split or side by side, or their difference).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port of the page (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on (0.0.0.0: reachable from other machines).")
def view(run, compare, port, host) -> None:
    """Serve a web page showing RUN rendered live from the camera the user moves (drag to turn,
    right-drag to pan, scroll to zoom). While the camera moves, frames are rendered smaller to
    keep 15 frames a second; they sharpen when it stops. The panel switches RGB / depth /
    |difference|, shows the training cameras, sets the resolution and saves the view as PNG
    (into RUN, with its camera as JSON). Stop with Ctrl-C."""
    from taichi_pvd.viewer.session import import_viser

    import_viser()
    from taichi_pvd import backend
    from taichi_pvd.io.runs import load_run
    from taichi_pvd.viewer.session import ViewerSession
    from taichi_pvd.viewer.sources import run_source, scene_cameras

    backend.init()
    device = backend.device()
    runs = [load_run(run, device)] + ([load_run(compare, device)] if compare is not None else [])
    sources = [run_source(r) for r in runs]
    session = ViewerSession(sources, host=host, port=port, save_dir=run,
                            cameras=scene_cameras(runs[0].config.get("scene") or {}), log=_console.print)
    _announce(session)
    try:
        session.serve_forever()
    finally:
        session.close()


def attach_live_viewer(loop, teacher_run: Path | None = None) -> None:
    """Serve the viewer on port 8080 (the next free one when taken) for a learning ``loop``
    (a trainer; or, given ``teacher_run``, a distiller of that teacher), rendering between its
    steps; the server stops when the command ends."""
    from taichi_pvd.viewer.session import ViewerSession, import_viser
    from taichi_pvd.viewer.sources import distillation_sources, scene_cameras, training_sources

    import_viser()
    sources = training_sources(loop) if teacher_run is None else distillation_sources(loop, teacher_run)
    session = ViewerSession(sources, save_dir=loop.out_dir, live=True,
                            cameras=scene_cameras(loop.run_info.get("scene") or {}), log=_console.print)
    loop.between_steps = session.between_steps
    click.get_current_context().call_on_close(session.close)
    _announce(session)
