"""Pictures of the viewer: what each run shows (RGB, coloured depth, or the per-pixel
|difference| of two runs) and how two runs share the canvas (a split the user drags, or side by
side), each part captioned. Host numpy arrays throughout; outputs are uint8 [H, W, 3]."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..rendering.images import caption, colour_depth, error_heatmap, to_uint8
from ..rendering.inference import Frame

#: What the canvas shows: colour, coloured depth, or the difference of two runs.
MODES = ("RGB", "depth", "|difference|")
#: How two runs share the canvas.
LAYOUTS = ("split", "side by side")


def panel_images(frames: Sequence[Frame], mode: str, near: float, far: float, *,
                 log_depth: bool = False) -> list[np.ndarray]:
    """One picture [H, W, 3] float per frame for ``mode`` ``'RGB'`` or ``'depth'`` (coloured
    over ``near``..``far``, see :func:`colour_depth`); for ``'|difference|'`` a single
    heat-map of the mean absolute colour difference of the two frames (saturating at 0.25)."""
    if mode == "RGB":
        return [f.rgb for f in frames]
    if mode == "depth":
        return [colour_depth(f.depth, f.opacity, near, far, log_scale=log_depth) for f in frames]
    if mode == "|difference|":
        if len(frames) != 2:
            raise ValueError("the difference needs two runs")
        return [error_heatmap(frames[0].rgb, frames[1].rgb)]
    raise ValueError(f"unknown mode {mode!r}: expected one of {MODES}")


def upscale(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` (float in [0, 1] or uint8 [h, w, 3]) resized bilinearly to ``width`` x
    ``height`` when that is larger (captions then stay small on the page); uint8."""
    if width <= image.shape[1] and height <= image.shape[0]:
        return to_uint8(image)
    return np.asarray(Image.fromarray(to_uint8(image)).resize((width, height), Image.BILINEAR))


def split_columns(width: int, split: float) -> int:
    """The column where a split at ``split`` (fraction of the width, 0..1) starts showing the
    second run."""
    return int(round(min(max(split, 0.0), 1.0) * width))


def compose(images: Sequence[np.ndarray], captions: Sequence[str], layout: str = "split",
            split: float = 0.5) -> np.ndarray:
    """The canvas picture of one or two runs' images (uint8 [H, W, 3]).

    One image: itself, captioned. Two, ``'side by side'``: left to right (each its own
    camera's picture); ``'split'``: both of the canvas size, the first left of column
    :func:`split_columns` and the second right of it, each part captioned at its top-left.
    """
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if len(images) == 1:
        return caption(images[0], captions[0])
    if layout == "side by side":
        return np.concatenate([caption(i, c) for i, c in zip(images, captions)], axis=1)
    if layout != "split":
        raise ValueError(f"unknown layout {layout!r}: expected one of {LAYOUTS}")
    first, second = images
    column = split_columns(first.shape[1], split)
    parts = [caption(first[:, :column], captions[0]) if column > 0 else None,
             caption(second[:, column:], captions[1]) if column < second.shape[1] else None]
    return np.concatenate([to_uint8(p) for p in parts if p is not None], axis=1)
