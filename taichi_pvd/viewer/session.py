"""The viewer's server: a viser page per connected browser, frames rendered on demand.

:class:`ViewerSession` keeps each client's camera; :meth:`ViewerSession.render_pending` renders
one frame for a client whose picture is out of date (reduced size while its camera moves, full
size once it has been still for :data:`STILL_AFTER_S`), in the calling thread, the one that owns
the fields and the Taichi runtime. ``pvd-ti view`` calls it in a loop
(:meth:`ViewerSession.serve_forever`); a learning run calls :meth:`ViewerSession.between_steps`
after each step, which renders only while the time spent rendering stays under
:data:`LIVE_RENDER_SHARE` of the wall time since the session started.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ViewerUnavailable
from ..rendering.images import write_png
from .cameras import ViewCamera, vertical_fov
from .compositing import compose, panel_images, upscale
from .controls import Controls
from .resolution import AdaptiveResolution, fit_size, start_resolution
from .sources import ViewSource, render_frame

#: Seconds without a camera update after which a client's camera counts as still.
STILL_AFTER_S = 0.2
#: Largest share of wall time a learning run spends rendering for the viewer.
LIVE_RENDER_SHARE = 0.05


def import_viser():
    """The ``viser`` module; :class:`ViewerUnavailable` when it is not installed."""
    try:
        import viser
    except ImportError:
        raise ViewerUnavailable() from None
    return viser


@dataclass
class _Client:
    """What the session knows of one browser."""

    handle: object
    camera: ViewCamera
    canvas: tuple[int, int]
    """Canvas ``(width, height)`` in browser pixels."""
    moved_at: float
    shown: tuple | None = None
    """The state (camera, canvas, settings, field version) the picture on its page shows."""
    shown_full: bool = False


class ViewerSession:
    """A viser server showing ``sources`` (one run, or two compared from the same camera).

    Args:
        sources: one or two :class:`ViewSource`; the first one's rig sets the initial view.
        host, port: where to serve (``port`` 0: any free port).
        save_dir: folder of the PNGs "save PNG" writes when no path is typed.
        cameras: [N, 3, 4] training camera-to-world matrices (OpenGL) drawn as frusta, or None.
        live: whether the fields are learning (every :meth:`between_steps` makes the picture out
            of date).
        log: called with a line for the terminal (the URL, saved files).
    """

    def __init__(self, sources: Sequence[ViewSource], *, host: str = "127.0.0.1", port: int = 8080,
                 save_dir: Path, cameras: torch.Tensor | None = None, live: bool = False,
                 log: Callable[[str], None] = print):
        if not 1 <= len(sources) <= 2:
            raise ValueError(f"the viewer shows one or two runs, got {len(sources)}")
        viser = import_viser()
        self.sources = list(sources)
        self.save_dir = Path(save_dir)
        self.live = live
        self.log = log
        self.rig = self.sources[0].rig
        self.adaptive = AdaptiveResolution()
        self.started = time.perf_counter()
        #: Seconds spent rendering and sending frames, and how many were sent.
        self.render_seconds = 0.0
        self.frames_sent = 0
        #: The last picture sent (uint8 [H, W, 3]) and the camera and size it shows.
        self.last_frame: tuple[np.ndarray, ViewCamera, tuple[int, int]] | None = None
        self._field_version = 0
        self._settings_version = 0
        self._saves: list[tuple[object, str]] = []
        self._clients: dict[int, _Client] = {}
        self._lock = threading.Lock()
        self.server = viser.ViserServer(host=host, port=port, label="taichi-pvd", verbose=False)
        self._set_scene(cameras)
        self.controls = Controls(self.server, len(self.sources), start_resolution(self.rig.width, self.rig.height),
                                 cameras is not None, self._settings_changed, self._show_cameras, self._request_save)
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)

    @property
    def url(self) -> str:
        """The page's address."""
        host = self.server.get_host()
        return f"http://{'localhost' if host in ('0.0.0.0', '::', '') else host}:{self.server.get_port()}"

    # -- the scene and the clients ------------------------------------------------------------------

    def _set_scene(self, cameras: torch.Tensor | None) -> None:
        rig = self.rig
        fov = vertical_fov(rig.fy, rig.height)
        up = np.asarray(rig.up, dtype=np.float64)
        self.server.scene.set_up_direction(tuple(up))
        start = self._initial_position()
        initial = self.server.initial_camera
        initial.position, initial.look_at, initial.up, initial.fov = start, tuple(rig.centre), tuple(up), fov
        self._frusta = []
        if cameras is None:
            return
        for i, c2w in enumerate(cameras.numpy().astype(np.float64)):
            wxyz, position = ViewCamera(tuple(map(tuple, c2w)), fov).viser_pose()
            self._frusta.append(self.server.scene.add_camera_frustum(
                f"/training_cameras/{i}", fov=fov, aspect=rig.width / rig.height, scale=0.08 * rig.radius,
                thickness=0.004 * rig.radius, wxyz=wxyz, position=position, visible=False))

    def _initial_position(self) -> tuple[float, float, float]:
        """A point at the rig's radius, 30 degrees above its centre's horizon."""
        from ..data import orbit_path

        c2w = orbit_path(1, self.rig.radius, 30.0, self.rig.centre, self.rig.up)[0]
        return tuple(float(v) for v in c2w[:, 3])

    def _connect(self, client) -> None:
        client.camera.on_update(self._camera_moved)
        self._camera_moved(client.camera)

    def _disconnect(self, client) -> None:
        with self._lock:
            self._clients.pop(client.client_id, None)

    def _camera_moved(self, camera) -> None:
        client = camera.client
        view = ViewCamera.from_viser(camera.wxyz, camera.position, camera.fov)
        canvas = (max(1, int(camera.image_width)), max(1, int(camera.image_height)))
        with self._lock:
            known = self._clients.get(client.client_id)
            if known is None:
                self._clients[client.client_id] = _Client(client, view, canvas, time.perf_counter())
            elif (known.camera, known.canvas) != (view, canvas):
                known.camera, known.canvas, known.moved_at = view, canvas, time.perf_counter()

    def _settings_changed(self) -> None:
        with self._lock:
            self._settings_version += 1

    def _show_cameras(self, visible: bool) -> None:
        for frustum in self._frusta:
            frustum.visible = visible

    def _request_save(self, client, path: str) -> None:
        with self._lock:
            self._saves.append((client, path))

    # -- rendering ----------------------------------------------------------------------------------

    def picture(self, camera: ViewCamera, canvas: tuple[int, int], full: bool) -> np.ndarray:
        """The canvas picture (uint8) of ``camera`` for a ``canvas`` ``(width, height)``, at the
        still size (``full``) or the reduced size that keeps the frame rate."""
        mode, layout, split, resolution = self.controls.settings()
        width, height = fit_size(*canvas, resolution)
        side_by_side = len(self.sources) == 2 and layout == "side by side" and mode != "|difference|"
        if side_by_side:
            width = max(1, width // 2)
        if not full:
            width, height = self.adaptive.moving_size(width, height, len(self.sources))
        start = time.perf_counter()
        frames = [render_frame(source, camera, width, height) for source in self.sources]
        self.adaptive.record(width * height * len(frames), time.perf_counter() - start)
        images = panel_images(frames, mode, self.rig.near, self.rig.far, log_depth=self.rig.contraction is not None)
        if full:
            display = (canvas[0] // 2 if side_by_side else canvas[0], canvas[1])
            images = [upscale(image, *display) for image in images]
        if mode == "|difference|":
            captions = [f"|{self.sources[0].label} - {self.sources[1].label}|"]
        else:
            captions = [source.caption() for source in self.sources]
        return compose(images, captions, layout, split)

    def render_pending(self) -> bool:
        """Render and send one frame where one is due: a requested save first, else a client
        whose picture is out of date. Returns whether anything was rendered."""
        start = time.perf_counter()
        with self._lock:
            save = self._saves.pop(0) if self._saves else None
            due = None if save is not None else self._due_client(start)
            if due is not None:
                client, full = due
                camera, canvas = client.camera, client.canvas
                state = (camera, canvas, self._settings_version, self._field_version)
        if save is not None:
            self._save(*save)
        elif due is not None:
            image = self.picture(camera, canvas, full)
            client.handle.scene.set_background_image(image, format="png" if full else "jpeg", jpeg_quality=85)
            self.last_frame = (image, camera, canvas)
            self.frames_sent += 1
            with self._lock:
                client.shown, client.shown_full = state, full
            elapsed = time.perf_counter() - start
            if full:
                self.controls.show_status(f"{image.shape[1]}x{image.shape[0]}, {elapsed * 1000:.0f} ms a frame")
        else:
            return False
        self.render_seconds += time.perf_counter() - start
        return True

    def _due_client(self, now: float) -> tuple[_Client, bool] | None:
        """The client whose picture is out of date longest, and whether it gets a full frame."""
        for client in sorted(self._clients.values(), key=lambda c: c.moved_at):
            state = (client.camera, client.canvas, self._settings_version, self._field_version)
            moving = now - client.moved_at < STILL_AFTER_S
            if client.shown != state:
                return client, not moving
            if not client.shown_full and not moving:
                return client, True
        return None

    def _save(self, client, path: str) -> None:
        with self._lock:
            known = self._clients.get(client.client_id)
        if known is None:
            return
        image = self.picture(known.camera, known.canvas, full=True)
        target = Path(path) if path else self._next_save_path()
        write_png(target, image)
        camera = known.camera.to_dict(*fit_size(*known.canvas, self.controls.settings()[3]))
        target.with_suffix(".json").write_text(json.dumps({"camera": camera, "canvas": list(known.canvas)}, indent=2))
        self.controls.show_status(f"saved to `{target}`")
        client.add_notification("saved", f"{target}", auto_close_seconds=5.0)
        self.log(f"saved {target} (camera in {target.with_suffix('.json').name})")

    def _next_save_path(self) -> Path:
        existing = {p.name for p in self.save_dir.glob("view-*.png")} if self.save_dir.is_dir() else set()
        n = 0
        while f"view-{n:03d}.png" in existing:
            n += 1
        return self.save_dir / f"view-{n:03d}.png"

    # -- running ------------------------------------------------------------------------------------

    def serve_forever(self, idle_s: float = 0.01) -> None:
        """Render frames as clients need them until interrupted (Ctrl-C)."""
        while True:
            if not self.render_pending():
                time.sleep(idle_s)

    def between_steps(self) -> None:
        """Called by a learning run between its steps: the fields changed; render one due frame
        when the time spent rendering is below :data:`LIVE_RENDER_SHARE` of the wall time."""
        self._field_version += 1
        if self.render_seconds <= LIVE_RENDER_SHARE * (time.perf_counter() - self.started):
            self.render_pending()

    def close(self) -> None:
        """Stop the server."""
        self.server.stop()
