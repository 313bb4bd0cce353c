"""The viewer's GUI panel (viser widgets): what to show, how two runs share the canvas, the
training cameras, the render resolution, saving the view, and a status line."""

from __future__ import annotations

from collections.abc import Callable

from .compositing import LAYOUTS, MODES

#: Bounds of the render-resolution slider (long side of a still frame, pixels).
MIN_RESOLUTION, MAX_RESOLUTION = 64, 2048


class Controls:
    """The widgets of ``server``'s panel.

    Args:
        server: the ``viser.ViserServer``.
        runs: how many runs are shown (1 or 2; with 2 come the difference mode, the layout and
            the split slider).
        resolution: initial long side of still frames, pixels.
        has_cameras: whether there are training cameras to show.
        on_change: called (no arguments) when a setting that changes the picture changes.
        on_cameras: called with the new state of the training-cameras toggle.
        on_save: called with the client that pressed "save PNG" and the path typed (may be
            empty).
    """

    def __init__(self, server, runs: int, resolution: int, has_cameras: bool, on_change: Callable[[], None],
                 on_cameras: Callable[[bool], None], on_save: Callable[[object, str], None]):
        gui = server.gui
        modes = MODES if runs == 2 else MODES[:2]
        self.mode = gui.add_dropdown("view", modes, initial_value=modes[0])
        self.layout = gui.add_dropdown("layout", LAYOUTS, initial_value=LAYOUTS[0], visible=runs == 2)
        self.split = gui.add_slider("split", 0.0, 1.0, 0.01, 0.5, visible=runs == 2)
        self.resolution = gui.add_slider("resolution (px)", MIN_RESOLUTION, MAX_RESOLUTION, 16,
                                         int(min(max(resolution, MIN_RESOLUTION), MAX_RESOLUTION)))
        self.cameras = gui.add_checkbox("training cameras", False, disabled=not has_cameras)
        self.save_path = gui.add_text("save to", "", hint="PNG path; empty: a new file in the run folder")
        self.save = gui.add_button("save PNG")
        self.status = gui.add_markdown("")
        for widget in (self.mode, self.layout, self.split, self.resolution):
            widget.on_update(lambda _: on_change())
        self.cameras.on_update(lambda _: on_cameras(self.cameras.value))
        self.save.on_click(lambda event: on_save(event.client, self.save_path.value.strip()))

    def settings(self) -> tuple[str, str, float, int]:
        """``(mode, layout, split, resolution)`` as set now."""
        return self.mode.value, self.layout.value, float(self.split.value), int(self.resolution.value)

    def show_status(self, text: str) -> None:
        """Put ``text`` (Markdown) in the status line."""
        self.status.content = text
