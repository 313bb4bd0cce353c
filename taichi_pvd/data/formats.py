"""Reading a scene folder in any supported format: :func:`load_scene` picks the loader.

- A folder holding ``poses_bounds.npy`` is a forward-facing LLFF capture
  (:mod:`taichi_pvd.data.llff`).
- Anything else is read as ``transforms*.json`` (NeRF-Synthetic / Blender, Instant-NGP,
  nerfstudio; :mod:`taichi_pvd.data.transforms`), bounded or unbounded.

Every scene carries its type and why (:mod:`taichi_pvd.data.scene_type`) and how it was split
(:mod:`taichi_pvd.data.splits`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from taichi_pvd.data.llff import is_llff_scene, load_llff
from taichi_pvd.data.scene import Scene
from taichi_pvd.data.scene_type import check_scene_type
from taichi_pvd.data.splits import DEFAULT_HOLDOUT_EVERY, check_holdout_every
from taichi_pvd.data.transforms import load_transforms
from taichi_pvd.errors import ConfigError

SPLITS = ("train", "val", "test")


def load_scene(
    path: str | os.PathLike[str],
    split: str = "train",
    *,
    downscale: int = 1,
    holdout_every: int = DEFAULT_HOLDOUT_EVERY,
    scene_type: str | None = None,
    background: tuple[float, float, float] | None = None,
    device: torch.device | str = "cpu",
) -> Scene:
    """Read one split of a scene into memory.

    Args:
        path: the scene folder, or a ``transforms*.json`` file. A folder holding
            ``poses_bounds.npy`` is read by :func:`~taichi_pvd.data.llff.load_llff`
            (``background`` does not apply), anything else by
            :func:`~taichi_pvd.data.transforms.load_transforms`.
        split: ``'train'``, ``'val'`` or ``'test'``.
        downscale: integer factor; each output pixel is the mean of a ``downscale`` x
            ``downscale`` block.
        holdout_every: a scene without split files holds out every ``holdout_every``-th frame
            as its test (and val) split; 0: none, every split is every frame
            (:mod:`taichi_pvd.data.splits`).
        scene_type: ``'bounded'``, ``'unbounded'`` or ``'forward-facing'`` to override the rule
            of :mod:`taichi_pvd.data.scene_type`; None follows it.
        background: ``(r, g, b)`` in [0, 1] to composite RGBA images onto, giving
            ``alphas=None``; ``None`` keeps the alpha channel (see :class:`Scene`).
        device: where the tensors go.

    Returns:
        The :class:`Scene`. Raises :class:`ConfigError` for a bad ``split``, ``downscale``,
        ``holdout_every``, ``scene_type`` or ``background``, and the loader's
        :class:`SceneError` for a folder it cannot read (or cannot read as ``scene_type``).
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if isinstance(downscale, bool) or not isinstance(downscale, int) or downscale < 1:
        raise ConfigError(f"downscale must be a positive integer, got {downscale!r}")
    background = _check_background(background)
    holdout_every = check_holdout_every(holdout_every)
    scene_type = check_scene_type(scene_type)
    if Path(path).is_dir() and is_llff_scene(path):
        return load_llff(path, split, downscale=downscale, holdout_every=holdout_every, scene_type=scene_type,
                         device=device)
    return load_transforms(path, split, downscale=downscale, holdout_every=holdout_every, scene_type=scene_type,
                           background=background, device=device)


def _check_background(background: Any) -> tuple[float, float, float] | None:
    if background is None:
        return None
    try:
        values = tuple(float(v) for v in background)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(0.0 <= v <= 1.0 for v in values):
        raise ConfigError(
            f"background must be three numbers in [0, 1] (r, g, b), got {background!r}"
        )
    return values  # type: ignore[return-value]
