"""Steps per second of a distillation with and without a viewer client connected (the cost of
``pvd-ti distill --view``), and the frames the client got.

The client is :class:`benchmarks.orbiting_client.OrbitingClient`, a websocket client in a
process of its own, no browser: it sends a camera every 50 ms along an orbit around the scene (a
user dragging the camera the whole time: the most frames the viewer ever wants) and drains what
the server sends. To the server it is a client with a camera; the distillation renders for it
between steps through :meth:`~taichi_pvd.viewer.session.ViewerSession.between_steps`, the path
``--view`` uses.

Usage::

    python benchmarks/viewer_overhead.py [--teacher RUN_DIR] [--to grid] [--steps 2000] [--batch-rays N] [--preset cpu]

Without ``--teacher`` a demo-scene hash teacher is trained first (``--teacher-steps``). A short
distillation first compiles the kernels; then one without and one with the client, same steps.
Records ``viewer_overhead-<scene>-<card>.json``: steps per second of both, their ratio, frames
sent and the share of wall time spent rendering.
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
from taichi_pvd.distill.api import distill  # noqa: E402
from taichi_pvd.training.api import train  # noqa: E402
from taichi_pvd.viewer.session import ViewerSession  # noqa: E402
from taichi_pvd.viewer.sources import distillation_sources  # noqa: E402


def _distil(teacher: Path, out: Path, target: str, steps: int, batch_rays: int | None, with_client: bool,
            preset: str | None = None) -> dict:
    """One distillation; returns its steps per second (wall time from the first step to the end
    of the last, the final validation and checkpoint left out) and, with a client, the viewer's
    figures."""
    seen: dict = {}

    def on_progress(progress) -> None:
        if progress.phase != "train" and "end" not in seen:
            seen["end"] = time.perf_counter()

    def on_ready(loop) -> None:
        if with_client:
            session = ViewerSession(distillation_sources(loop, teacher), port=_free_port(), save_dir=out,
                                    live=True, log=lambda _: None)
            client = OrbitingClient(session.url, loop.rig)
            client.start(registered=lambda: bool(session._clients))
            session.started = time.perf_counter()
            loop.between_steps = session.between_steps
            seen.update(session=session, client=client)
        seen["start"] = time.perf_counter()

    overrides = {"steps": steps, "val_every": 0, "checkpoint_every": 0,
                 **({"batch_rays": batch_rays} if batch_rays else {})}
    metrics = distill(source="hash", target=target, teacher=teacher, out=out, overwrite=True, preset=preset,
                      distill_overrides=overrides, on_ready=on_ready, on_progress=on_progress)
    wall = seen["end"] - seen["start"]
    result = {"steps": metrics["steps"], "wall_seconds": wall, "steps_per_second": metrics["steps"] / wall}
    if with_client:
        session, client = seen["session"], seen["client"]
        client.close()
        session.close()
        result.update(frames_sent=session.frames_sent, render_seconds=session.render_seconds,
                      render_share=session.render_seconds / wall, client_messages=client.received)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", type=Path, default=None, help="hash teacher run (default: train a demo one)")
    parser.add_argument("--teacher-steps", type=int, default=300)
    parser.add_argument("--to", dest="target", default="grid")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-rays", type=int, default=None)
    parser.add_argument("--preset", default=None, help="distillation preset, e.g. cpu as `pvd-ti demo` runs it on a CPU "
                        "(default: the library's for the teacher)")
    parser.add_argument("--scene", default=None, help="scene name in the result file (default: demo or the teacher folder)")
    args = parser.parse_args()
    backend.init()
    work = Path(tempfile.mkdtemp(prefix="viewer-overhead-"))
    teacher = args.teacher
    if teacher is None:
        teacher = work / "teacher"
        train(model="hash", out=teacher, train_overrides={"steps": args.teacher_steps, "val_every": 0,
                                                         "checkpoint_every": 0})
    run = {"target": args.target, "batch_rays": args.batch_rays, "preset": args.preset}
    _distil(teacher, work / "warm-up", steps=20, with_client=True, **run)
    without = _distil(teacher, work / "without", steps=args.steps, with_client=False, **run)
    with_viewer = _distil(teacher, work / "with", steps=args.steps, with_client=True, **run)
    ratio = with_viewer["steps_per_second"] / without["steps_per_second"]
    figures = {"teacher": "hash", "student": args.target, "steps": args.steps,
               "steps_per_second_without_viewer": without["steps_per_second"],
               "steps_per_second_with_viewer": with_viewer["steps_per_second"],
               "with_over_without": ratio, "frames_sent": with_viewer["frames_sent"],
               "render_share_of_wall_time": with_viewer["render_share"],
               "client_messages_received": with_viewer["client_messages"]}
    scene = args.scene or ("demo" if args.teacher is None else args.teacher.resolve().name)
    path = write_result("viewer_overhead", scene, figures)
    print(f"steps/s without viewer {without['steps_per_second']:.2f}, with a moving client "
          f"{with_viewer['steps_per_second']:.2f} ({(1 - ratio) * 100:.1f}% fewer), "
          f"{with_viewer['frames_sent']} frames -> {path}")


if __name__ == "__main__":
    main()
