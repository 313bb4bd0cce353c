"""Image-quality evaluation of a run on a split of its scene: PSNR, SSIM and, where its weights
are already on this machine, LPIPS.

Scenes with transparent images follow the NeRF-Synthetic convention: predictions are rendered
on white and compared with the ground truth composited on white. Opaque scenes (LLFF captures)
are rendered on the black their training composited behind them. Results go to
``<run>/eval/metrics.json`` (per view and mean), per-view PNGs to ``<run>/eval/<split>/``, and
the means into the run's ``metrics.json`` (``test_psnr_db``, ``test_ssim``, ``test_lpips`` for
the test split, ``eval_<split>_...`` for another split).
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io.runs import METRICS_NAME, LoadedRun, write_json
from .io.storage import storage_errors
from .metrics import psnr, ssim
from .rendering.images import write_png
from .rendering.inference import Frame, render_views
from .rendering.view_sets import split_views
from .run_info import EVAL_METRICS

WHITE = (1.0, 1.0, 1.0)
#: torchvision's file name of the AlexNet weights LPIPS builds on (found in torch's hub cache).
_ALEXNET_WEIGHTS = "alexnet-owt-*.pth"

#: ``(prediction [H, W, 3], target [H, W, 3]) -> LPIPS distance``, both in [0, 1].
LpipsFn = Callable[[np.ndarray, np.ndarray], float]


def load_lpips(device: torch.device) -> tuple[LpipsFn | None, str]:
    """LPIPS (AlexNet) when the ``lpips`` package and the AlexNet weights are already on this
    machine; nothing is ever downloaded. Returns ``(function or None, note for the user)``."""
    if importlib.util.find_spec("lpips") is None:
        return None, "LPIPS skipped: the lpips package is not installed (pip install lpips)"
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    if not any(cache.glob(_ALEXNET_WEIGHTS)):
        return None, f"LPIPS skipped: no AlexNet weights in {cache} (they are never downloaded at run time)"
    import lpips

    model = lpips.LPIPS(net="alex", verbose=False).to(device).eval()

    def distance(pred: np.ndarray, target: np.ndarray) -> float:
        def to_input(image: np.ndarray) -> torch.Tensor:
            nchw = torch.from_numpy(np.ascontiguousarray(image)).float().permute(2, 0, 1)[None]
            return nchw.to(device) * 2.0 - 1.0

        with torch.no_grad():
            return float(model(to_input(pred), to_input(target)))

    return distance, "LPIPS (AlexNet)"


@dataclass
class ViewScore:
    """Quality of one rendered view against its ground truth."""

    index: int
    """Index of the view in its split."""
    psnr_db: float
    ssim: float
    lpips: float | None


@dataclass
class Evaluation:
    """Per-view and mean quality of a run on one split."""

    split: str
    views: list[ViewScore]
    psnr_db: float
    ssim: float
    lpips: float | None
    lpips_note: str
    width: int
    height: int
    render_seconds: float
    """Wall-clock time of rendering all views (metrics and PNG writing excluded)."""
    background: tuple[float, float, float] = WHITE
    """Colour rendered behind the scene (black for opaque scenes, see :func:`split_views`)."""
    supersample: int = 1
    """Rays per pixel side the views were rendered with (``supersample**2`` rays per pixel)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (as written to ``eval/metrics.json``)."""
        return {**asdict(self), "n_views": len(self.views), "background": list(self.background)}


def metric_prefix(split: str) -> str:
    """``test`` for the test split, ``eval_<split>`` otherwise (so the training's
    ``val_psnr_db`` is never overwritten)."""
    return "test" if split == "test" else f"eval_{split}"


@storage_errors()
def evaluate_run(run: LoadedRun, *, split: str = "test", n_views: int | None = None,
                 write_images: bool = True, supersample: int = 1, downscale: int | None = None,
                 on_view: Callable[[ViewScore], None] | None = None) -> Evaluation:
    """Render ``n_views`` views of ``split`` (evenly spaced; all when None) and score them.

    Args:
        run: the loaded run (its scene path comes from its config).
        split: ``'test'``, ``'val'`` or ``'train'``.
        n_views: number of views, or None for the whole split.
        write_images: write ``<run>/eval/<split>/NNN-pred.png`` and ``NNN-gt.png``.
        supersample: render ``k x k`` rays per pixel and average them (see
            :func:`~taichi_pvd.rendering.inference.render_views`); 1: pixel centres.
        downscale: the images' downscale factor; None: the run's own (its scene is loaded with
            the options it was trained with, :meth:`~taichi_pvd.io.runs.LoadedRun.scene_options`).
        on_view: called with each view's score as soon as it is known.

    Returns:
        The :class:`Evaluation`; also written to ``<run>/eval/metrics.json``, and its means
        merged into ``<run>/metrics.json``.
    """
    views = split_views(run.scene_path(), split, n_views, scene_options=run.scene_options(downscale=downscale))
    lpips_fn, lpips_note = load_lpips(run.grid.aabb.device)
    image_dir = run.path / "eval" / split
    scores: list[ViewScore] = []
    render_seconds = 0.0
    last = time.perf_counter()

    def score(i: int, frame: Frame) -> None:
        nonlocal render_seconds, last
        render_seconds += time.perf_counter() - last
        target = views.ground_truth[i].cpu().numpy()
        pred = np.clip(frame.rgb, 0.0, 1.0)
        index = views.view_indices[i]
        result = ViewScore(index=index, psnr_db=psnr(pred, target), ssim=ssim(pred, target),
                           lpips=None if lpips_fn is None else lpips_fn(pred, target))
        scores.append(result)
        if write_images:
            write_png(image_dir / f"{index:03d}-pred.png", pred)
            write_png(image_dir / f"{index:03d}-gt.png", target)
        if on_view is not None:
            on_view(result)
        last = time.perf_counter()

    render_views(run, views, supersample=supersample, on_frame=score)
    evaluation = Evaluation(
        split=split, views=scores,
        psnr_db=float(np.mean([s.psnr_db for s in scores])),
        ssim=float(np.mean([s.ssim for s in scores])),
        lpips=None if lpips_fn is None else float(np.mean([s.lpips for s in scores])),
        lpips_note=lpips_note, width=views.width, height=views.height,
        render_seconds=render_seconds, background=views.background, supersample=supersample,
    )
    _record(run.path, evaluation)
    return evaluation


def _record(run_dir: Path, evaluation: Evaluation) -> None:
    """Write ``eval/metrics.json`` and merge the means into the run's ``metrics.json``."""
    (run_dir / EVAL_METRICS).parent.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / EVAL_METRICS, evaluation.to_dict())
    metrics_path = run_dir / METRICS_NAME
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    prefix = metric_prefix(evaluation.split)
    metrics[f"{prefix}_psnr_db"] = evaluation.psnr_db
    metrics[f"{prefix}_ssim"] = evaluation.ssim
    metrics[f"{prefix}_views"] = len(evaluation.views)
    if evaluation.lpips is not None:
        metrics[f"{prefix}_lpips"] = evaluation.lpips
    write_json(metrics_path, metrics)
