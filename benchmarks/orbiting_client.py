"""A viser client without a browser, for the viewer benchmarks: a process of its own (as a
browser is), sending a camera every ``period_s`` seconds along an orbit of the scene's rig and
draining the frames the server sends.

It connects with viser's websocket subprotocol and sends ``ViewerCameraMessage`` (msgpack, as
the page sends it) with a ``width`` x ``height`` canvas: to the server, a user dragging the camera
the whole time, the most frames the viewer ever wants.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable


def _camera_message(rig, size: tuple[int, int], angle: float) -> bytes:
    """The msgpack camera message of the orbit at ``angle`` (radians) for a ``size`` canvas."""
    import msgspec
    import torch

    from taichi_pvd.data.camera_paths import look_at
    from taichi_pvd.viewer.cameras import ViewCamera, vertical_fov

    up = torch.tensor(rig.up, dtype=torch.float64)
    centre = torch.tensor(rig.centre, dtype=torch.float64)
    side = torch.linalg.cross(up, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    if side.norm() < 1e-3:
        side = torch.linalg.cross(up, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    side = side / side.norm()
    other = torch.linalg.cross(up, side)
    eye = centre + rig.radius * (0.87 * (math.cos(angle) * side + math.sin(angle) * other) + 0.5 * up)
    c2w = look_at(eye, centre, up)
    fov = vertical_fov(rig.fy * size[1] / rig.height * rig.width / size[0], size[1])
    wxyz, position = ViewCamera(tuple(map(tuple, c2w.tolist())), fov).viser_pose()
    return msgspec.msgpack.encode({
        "type": "ViewerCameraMessage", "wxyz": wxyz.tolist(), "position": position.tolist(), "fov": fov,
        "near": 0.01, "far": 1000.0, "image_height": size[1], "image_width": size[0],
        "look_at": centre.tolist(), "up_direction": up.tolist()})


def _orbit(url: str, rig, size: tuple[int, int], period_s: float, stop, received) -> None:
    """The client process: send, drain, repeat until ``stop`` is set; counts into ``received``."""
    import torch
    from websockets.sync.client import connect

    from taichi_pvd.viewer.session import import_viser

    torch.set_num_threads(1)
    viser = import_viser()
    with connect(url.replace("http", "ws"), subprotocols=[f"viser-v{viser.__version__}"], max_size=None) as ws:
        angle = 0.0
        while not stop.is_set():
            ws.send(_camera_message(rig, size, angle))
            angle += 0.05
            deadline = time.perf_counter() + period_s
            while (left := deadline - time.perf_counter()) > 0:
                try:
                    ws.recv(timeout=left)
                    with received.get_lock():
                        received.value += 1
                except TimeoutError:
                    break


class OrbitingClient:
    """The orbiting client process for the viewer at ``url`` (``http://host:port``), its orbit
    taken from ``rig`` (:class:`~taichi_pvd.data.camera_rig.CameraRig`)."""

    def __init__(self, url: str, rig, width: int = 1280, height: int = 720, period_s: float = 0.05):
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._received = context.Value("q", 0)
        self._process = context.Process(target=_orbit, args=(url, rig, (width, height), period_s, self._stop,
                                                              self._received), daemon=True)

    @property
    def received(self) -> int:
        """Messages received from the server so far."""
        return self._received.value

    def start(self, registered: Callable[[], bool], timeout_s: float = 60.0) -> None:
        """Start the process and wait until ``registered()`` says the server knows the client
        (the process imports torch first: a few seconds); RuntimeError after ``timeout_s``."""
        self._process.start()
        deadline = time.perf_counter() + timeout_s
        while not registered():
            if time.perf_counter() > deadline:
                self.close()
                raise RuntimeError("the websocket client did not register with the viewer")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the process and wait for it."""
        self._stop.set()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
