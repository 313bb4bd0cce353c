"""Turning rendered arrays into pictures: 8-bit conversion, PNG/GIF/MP4 writing, depth colouring,
error heat-maps and captioned side-by-side panels.

Everything here works on numpy arrays on the host: colour images ``[H, W, 3]`` float in
``[0, 1]`` (or uint8), depth and opacity maps ``[H, W]`` float. Text is drawn with Pillow's
built-in font (Pillow comes with imageio), so no font files are needed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import ConfigError, OptionValueError

#: Viridis at 11 evenly spaced points (low -> high), interpolated linearly.
_VIRIDIS = np.array([
    [0.267, 0.005, 0.329], [0.283, 0.141, 0.458], [0.254, 0.265, 0.530],
    [0.207, 0.372, 0.553], [0.164, 0.471, 0.558], [0.128, 0.567, 0.551],
    [0.135, 0.659, 0.518], [0.267, 0.749, 0.441], [0.478, 0.821, 0.318],
    [0.741, 0.873, 0.150], [0.993, 0.906, 0.144],
])
#: A black -> red -> yellow -> white ramp for errors (small errors dark).
_HOT = np.array([[0.0, 0.0, 0.0], [0.7, 0.0, 0.0], [1.0, 0.55, 0.0], [1.0, 1.0, 0.3], [1.0, 1.0, 1.0]])


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A float image in ``[0, 1]`` (values outside are clipped) as uint8 ``[0, 255]``, same
    shape; uint8 input is returned unchanged."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def apply_colormap(values: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Map ``values`` (any shape, float, clipped to ``[0, 1]``) through a piecewise-linear ramp
    of ``colours`` [K, 3] (evenly spaced anchors). Returns ``values.shape + (3,)`` float32."""
    x = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0) * (len(colours) - 1)
    lo = np.minimum(np.floor(x).astype(np.int64), len(colours) - 2)
    frac = (x - lo)[..., None]
    return ((1.0 - frac) * colours[lo] + frac * colours[lo + 1]).astype(np.float32)


def colour_depth(depth: np.ndarray, opacity: np.ndarray, near: float, far: float, *,
                 log_scale: bool = False) -> np.ndarray:
    """Colour a depth map for viewing.

    Args:
        depth: [H, W] opacity-weighted distance along each ray (world units), as composited.
        opacity: [H, W] accumulated opacity in [0, 1].
        near, far: the scene's distance range; ``near`` maps to the bright (yellow) end of
            viridis, ``far`` to the dark (purple) end.
        log_scale: colour ``log(depth)`` between ``log(near)`` and ``log(far)`` (``near > 0``),
            for unbounded scenes whose depths span orders of magnitude; linear otherwise.

    Returns:
        [H, W, 3] float32 in [0, 1]: the colour of the surface depth ``depth / opacity``,
        faded to black where the ray hit nothing (weighted by ``opacity``).
    """
    if not far > near or (log_scale and not near > 0):
        raise ConfigError(f"depth range needs far > near (> 0 on a log scale), got near={near}, far={far}")
    opacity = np.clip(np.asarray(opacity, dtype=np.float64), 0.0, 1.0)
    surface = np.asarray(depth, dtype=np.float64) / np.maximum(opacity, 1e-6)
    if log_scale:
        normalised = 1.0 - np.log(np.maximum(surface, near) / near) / np.log(far / near)
    else:
        normalised = 1.0 - (surface - near) / (far - near)
    return (apply_colormap(normalised, _VIRIDIS) * opacity[..., None]).astype(np.float32)


def error_heatmap(pred: np.ndarray, target: np.ndarray, scale: float = 0.25) -> np.ndarray:
    """Per-pixel error of ``pred`` against ``target`` (both [H, W, 3] in [0, 1]) as a heat-map.

    The mean absolute error over the colour channels is divided by ``scale`` (errors of
    ``scale`` and above saturate to white) and coloured black -> red -> yellow -> white.
    Returns [H, W, 3] float32.
    """
    err = np.abs(np.asarray(pred, np.float64) - np.asarray(target, np.float64)).mean(axis=-1)
    return apply_colormap(err / scale, _HOT)


def error_comparison(pred_a: np.ndarray, pred_b: np.ndarray, target: np.ndarray,
                     scale: float = 0.25) -> np.ndarray:
    """Errors of two renderings of the same view against ``target`` in one picture.

    Red shows where ``pred_a`` is wrong, cyan where ``pred_b`` is; white where both are, black
    where both match. Each mean absolute error (over channels) saturates at ``scale``.
    Inputs [H, W, 3] in [0, 1]; returns [H, W, 3] float32.
    """
    target = np.asarray(target, np.float64)
    err_a = np.clip(np.abs(np.asarray(pred_a, np.float64) - target).mean(-1) / scale, 0.0, 1.0)
    err_b = np.clip(np.abs(np.asarray(pred_b, np.float64) - target).mean(-1) / scale, 0.0, 1.0)
    return np.stack([err_a, err_b, err_b], axis=-1).astype(np.float32)


def caption(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` ([H, W, 3], float or uint8) with ``text`` written near its top-left corner,
    white on a dark box that keeps a third of the font size clear of the top and left edges;
    same size, returned as uint8. Text wider than the image is cut."""
    pil = Image.fromarray(to_uint8(image))
    size = max(8, min(24, pil.height // 16))
    margin, pad = size // 3, max(1, size // 6)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(pil)
    origin = (margin + pad, margin + pad)
    _, top, right, bottom = draw.textbbox(origin, text, font=font)
    # The glyphs' box starts below the origin by the font's internal leading: move it up to it.
    origin = (origin[0], origin[1] - (top - origin[1]))
    bottom -= top - (margin + pad)
    draw.rectangle((margin, margin, min(right + pad, pil.width - 1), bottom + pad), fill=(0, 0, 0))
    draw.text(origin, text, fill=(255, 255, 255), font=font)
    return np.asarray(pil)


def side_by_side(panels: Sequence[np.ndarray], captions: Sequence[str] | None = None) -> np.ndarray:
    """Panels of equal height ([H, W_i, 3], float or uint8) placed left to right, each captioned
    when ``captions`` is given. Returns uint8 [H, sum W_i, 3]."""
    if not panels:
        raise ValueError("side_by_side needs at least one panel")
    heights = {p.shape[0] for p in panels}
    if len(heights) != 1:
        raise ValueError(f"panels differ in height: {sorted(heights)}")
    if captions is not None:
        if len(captions) != len(panels):
            raise ValueError(f"{len(panels)} panels but {len(captions)} captions")
        return np.concatenate([caption(p, c) for p, c in zip(panels, captions)], axis=1)
    return np.concatenate([to_uint8(p) for p in panels], axis=1)


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write ``image`` ([H, W, 3] float in [0, 1] or uint8) as an 8-bit PNG; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)
    return path


def mp4_available() -> bool:
    """Whether imageio can encode MP4 here (the ``imageio-ffmpeg`` package is installed)."""
    return importlib.util.find_spec("imageio_ffmpeg") is not None


def write_video(path_stem: str | Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Write ``frames`` (each [H, W, 3], float in [0, 1] or uint8, all one size) as a video.

    ``<path_stem>.mp4`` (H.264 through imageio-ffmpeg) when :func:`mp4_available`, else an
    endlessly looping ``<path_stem>.gif``. Returns the path written.
    """
    if not frames:
        raise ValueError("a video needs at least one frame")
    if not fps > 0:
        raise OptionValueError("fps", f"must be positive, got {fps}")
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    images = [to_uint8(f) for f in frames]
    if mp4_available():
        import imageio.v2 as imageio

        path = stem.with_suffix(".mp4")
        # macro_block_size=2: H.264 in yuv420p needs even sizes, nothing more.
        with imageio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=2) as writer:
            for image in images:
                writer.append_data(image)
        return path
    path = stem.with_suffix(".gif")
    pil = [Image.fromarray(image) for image in images]
    pil[0].save(path, save_all=True, append_images=pil[1:], duration=max(round(1000.0 / fps), 20), loop=0)
    return path


class PathWriter:
    """Writes the frames of a rendered camera path: ``frames/NNNN.png`` (colour),
    ``depth/NNNN.png`` (coloured depth), and ``video`` / ``depth`` videos (see
    :func:`write_video`) into ``out_dir``.

    Each frame shows the renderings of one or more runs side by side (captioned with ``names``
    when there are several); with a ground-truth image a last panel shows the error heat-map:
    :func:`error_heatmap` for one run, :func:`error_comparison` for two.

    Args:
        out_dir: folder to write into (created; earlier ``NNNN.png`` frames in it are removed).
        names: one caption per run.
        near, far: the scene's distance range, for depth colouring (world units).
        fps: frames per second of the videos.
        log_depth: colour depth on a log scale (unbounded scenes, see :func:`colour_depth`).
    """

    def __init__(self, out_dir: str | Path, names: Sequence[str], near: float, far: float, fps: float, *,
                 log_depth: bool = False):
        if not fps > 0:
            raise OptionValueError("fps", f"must be positive, got {fps}")
        self.out_dir = Path(out_dir)
        self.names = list(names)
        self.near, self.far, self.fps = near, far, fps
        self.log_depth = log_depth
        self.colour: list[np.ndarray] = []
        self.depth: list[np.ndarray] = []
        for sub in ("frames", "depth"):
            (self.out_dir / sub).mkdir(parents=True, exist_ok=True)
            for old in (self.out_dir / sub).glob("[0-9][0-9][0-9][0-9].png"):
                old.unlink()

    def _colour_panels(self, rgbs: Sequence[np.ndarray], ground_truth: np.ndarray | None) -> np.ndarray:
        panels, captions = list(rgbs), list(self.names)
        if ground_truth is not None:
            if len(rgbs) == 1:
                panels.append(error_heatmap(rgbs[0], ground_truth))
                captions.append("|error| vs ground truth")
            else:
                panels.append(error_comparison(rgbs[0], rgbs[1], ground_truth))
                captions.append(f"error: red {self.names[0]}, cyan {self.names[1]}")
        return side_by_side(panels, captions if len(panels) > 1 else None)

    def add(self, rgbs: Sequence[np.ndarray], depths: Sequence[np.ndarray], opacities: Sequence[np.ndarray],
            ground_truth: np.ndarray | None = None) -> np.ndarray:
        """Add one frame: per run its colour [H, W, 3], depth [H, W] and opacity [H, W]
        (at most two runs when ``ground_truth`` [H, W, 3] is given). Writes the PNGs and
        returns the composed colour frame (uint8)."""
        if not len(rgbs) == len(depths) == len(opacities) == len(self.names):
            raise ValueError(f"expected one rendering per run ({len(self.names)})")
        if ground_truth is not None and len(rgbs) > 2:
            raise ValueError("an error panel compares at most two runs")
        colour = self._colour_panels(rgbs, ground_truth)
        depth_panels = [colour_depth(d, o, self.near, self.far, log_scale=self.log_depth)
                        for d, o in zip(depths, opacities)]
        depth = side_by_side(depth_panels, self.names if len(depth_panels) > 1 else None)
        index = len(self.colour)
        write_png(self.out_dir / "frames" / f"{index:04d}.png", colour)
        write_png(self.out_dir / "depth" / f"{index:04d}.png", depth)
        self.colour.append(colour)
        self.depth.append(depth)
        return colour

    def finish(self) -> tuple[Path, Path]:
        """Write the colour and depth videos; returns their paths."""
        return (write_video(self.out_dir / "video", self.colour, self.fps),
                write_video(self.out_dir / "depth", self.depth, self.fps))
