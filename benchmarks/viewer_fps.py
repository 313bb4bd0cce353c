"""Frames a second of ``pvd-ti view`` while the camera moves, and the size it renders them at.

The client is :class:`benchmarks.orbiting_client.OrbitingClient` (a websocket client speaking
viser's protocol in a process of its own, no browser): it sends a new camera every 50 ms, so the
page never stops moving and the viewer renders every frame at its reduced, frame-rate-keeping
size (at most 20 frames a second: one per camera the client sends). After a warm-up (kernels
compiled, the cost of a pixel learnt) the frames sent over ``--seconds`` are counted.

Usage::

    python benchmarks/viewer_fps.py RUN [RUN2] [--seconds 20] [--canvas 1280x720] [--scene NAME]

Records ``viewer_fps-<scene>-<card>.json``: frames a second while moving, the moving frame size
(pixels of each panel), the canvas and the still frames' long side.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result  # noqa: E402
from benchmarks.orbiting_client import OrbitingClient  # noqa: E402
from benchmarks.viewer_screenshot import _free_port  # noqa: E402
from taichi_pvd import backend  # noqa: E402
from taichi_pvd.io.runs import load_run  # noqa: E402
from taichi_pvd.viewer.resolution import fit_size  # noqa: E402
from taichi_pvd.viewer.session import ViewerSession  # noqa: E402
from taichi_pvd.viewer.sources import run_source  # noqa: E402


def _serve_for(session: ViewerSession, seconds: float) -> tuple[int, float]:
    """Render due frames for ``seconds``; returns the frames sent and the time taken."""
    start, sent = time.perf_counter(), session.frames_sent
    while (elapsed := time.perf_counter() - start) < seconds:
        if not session.render_pending():
            time.sleep(0.002)
    return session.frames_sent - sent, elapsed


def measure(runs: list[Path], seconds: float, warm_up: float, canvas: tuple[int, int]) -> dict:
    """Serve ``runs`` (one, or two side by side / split) to an orbiting client with a ``canvas``
    (width, height) page; the frames a second while it moves and the moving frame size."""
    device = backend.device()
    sources = [run_source(load_run(run, device), role) for run, role in
               zip(runs, ("teacher", "student") if len(runs) == 2 else (None,))]
    session = ViewerSession(sources, port=_free_port(), save_dir=Path(tempfile.mkdtemp(prefix="viewer-fps-")),
                            log=lambda _: None)
    client = OrbitingClient(session.url, session.rig, width=canvas[0], height=canvas[1])
    client.start(registered=lambda: bool(session._clients))
    try:
        _serve_for(session, warm_up)
        frames, elapsed = _serve_for(session, seconds)
    finally:
        client.close()
        session.close()
    still_side = session.controls.settings()[3]
    width, height = fit_size(*canvas, still_side)
    moving = session.adaptive.moving_size(width, height, len(sources))
    return {"run_folders": [str(r) for r in runs], "canvas": list(canvas), "still_long_side": still_side,
            "seconds": elapsed, "frames_moving": frames, "frames_per_second_moving": frames / elapsed,
            "moving_frame_size": list(moving), "panels": len(sources),
            "seconds_per_megapixel": session.adaptive.seconds_per_pixel * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="one run, or two shown together (teacher, student)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warm-up", type=float, default=8.0, help="seconds served before counting")
    parser.add_argument("--canvas", default="1280x720", help="the page's canvas, WIDTHxHEIGHT pixels")
    parser.add_argument("--scene", default=None, help="scene name in the result file (default: the first run's folder)")
    args = parser.parse_args()
    if not 1 <= len(args.runs) <= 2:
        parser.error("give one run or two")
    backend.init()
    canvas = tuple(int(v) for v in args.canvas.split("x"))
    figures = measure(args.runs, args.seconds, args.warm_up, canvas)
    path = write_result("viewer_fps", args.scene or args.runs[0].resolve().name, figures)
    w, h = figures["moving_frame_size"]
    print(f"{figures['frames_per_second_moving']:.1f} frames a second while moving, {figures['panels']} panel(s) "
          f"of {w}x{h}; stills {figures['still_long_side']} px on the long side -> {path}")


if __name__ == "__main__":
    main()
