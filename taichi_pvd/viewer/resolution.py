"""Render sizes that keep the viewer responsive: while the camera moves, frames at a reduced
size chosen from the measured cost of recent frames so that one frame takes at most
``1 / target_fps`` seconds; when the camera stops, the full size."""

from __future__ import annotations

import math

#: Frames per second the viewer keeps while the camera moves.
TARGET_FPS = 15.0
#: The smallest side of a reduced frame, pixels.
MIN_SIDE = 16
#: Long side of still frames the viewer starts with (unless the training images are larger),
#: pixels; frames while the camera moves stay smaller, as the frame rate needs.
START_LONG_SIDE = 512


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``width`` x ``height`` scaled down (same aspect) so that its long side is at most
    ``max_side``; never below 1 pixel."""
    scale = min(1.0, max_side / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def start_resolution(width: int, height: int) -> int:
    """The long side (pixels) of still frames the viewer starts with for training images of
    ``width`` x ``height``: theirs, or :data:`START_LONG_SIDE` when that is larger."""
    return max(width, height, START_LONG_SIDE)


class AdaptiveResolution:
    """Learns the seconds a rendered pixel costs (a moving average over the frames it is told
    of) and picks the size of the next frame while the camera moves.

    Args:
        target_fps: frames per second to keep while the camera moves.
        smoothing: weight of the newest frame in the moving average, in (0, 1].
    """

    def __init__(self, target_fps: float = TARGET_FPS, smoothing: float = 0.5):
        self.target_seconds = 1.0 / target_fps
        self.smoothing = smoothing
        #: Seconds per rendered pixel (None until a frame was measured).
        self.seconds_per_pixel: float | None = None

    def record(self, pixels: int, seconds: float) -> None:
        """Take the measured time of a frame of ``pixels`` rendered pixels (all panels)."""
        cost = seconds / max(pixels, 1)
        if self.seconds_per_pixel is None:
            self.seconds_per_pixel = cost
        else:
            self.seconds_per_pixel += self.smoothing * (cost - self.seconds_per_pixel)

    def moving_size(self, width: int, height: int, panels: int = 1) -> tuple[int, int]:
        """The size (at the aspect of ``width`` x ``height``, at most that) of a frame of
        ``panels`` renderings that fits the frame time; a quarter of each side before any
        frame was measured."""
        if self.seconds_per_pixel is None:
            scale = 0.25
        else:
            affordable = self.target_seconds / (self.seconds_per_pixel * panels)
            scale = math.sqrt(affordable / max(width * height, 1))
        scale = min(1.0, max(scale, MIN_SIDE / max(min(width, height), 1)))
        return max(1, min(width, round(width * scale))), max(1, min(height, round(height * scale)))
