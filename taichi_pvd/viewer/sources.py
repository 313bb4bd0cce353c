"""What the viewer shows: :class:`ViewSource`, a field with what rendering it needs and its
caption (architecture and PSNR), made from a run folder (:func:`run_source`) or from a learning
loop (:func:`training_sources`, :func:`distillation_sources`), and :func:`render_frame`, one
camera rendered the way ``pvd-ti render`` renders (:func:`~taichi_pvd.rendering.inference.render_views`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import load_scene
from ..data.camera_rig import CameraRig
from ..data.demo import demo_scene_path
from ..errors import PvdError
from ..fields import RadianceField
from ..io.runs import METRICS_NAME, LoadedRun
from ..rendering.inference import Frame, render_views
from ..rendering.occupancy import OccupancyGrid
from ..rendering.volume import MarchingConfig
from .cameras import ViewCamera


@dataclass
class ViewSource:
    """A field the viewer renders, with its caption."""

    field: RadianceField
    grid: OccupancyGrid
    """The occupancy grid it is marched through, on the field's device."""
    marching: MarchingConfig
    rig: CameraRig
    """The run's camera rig (scene rays, near/far, the initial view)."""
    background: tuple[float, float, float]
    """Colour behind the scene (see :meth:`~taichi_pvd.io.runs.LoadedRun.render_background`)."""
    label: str
    """Architecture and role, e.g. ``'hash (teacher)'``."""
    psnr: Callable[[], str]
    """Its current PSNR as caption text (``'31.20 dB test'``; empty when none is known)."""

    def marching_config(self) -> MarchingConfig:
        return self.marching

    def camera_rig(self) -> CameraRig:
        return self.rig

    def caption(self) -> str:
        """``label`` and PSNR, e.g. ``'hash (teacher) 31.20 dB test'``."""
        figure = self.psnr()
        return f"{self.label} {figure}" if figure else self.label


def recorded_psnr(run_dir: Path) -> str:
    """A run's best-known PSNR from its ``metrics.json``: test (``pvd-ti eval``), else a
    distilled run's PSNR against its teacher, else validation; empty when none."""
    path = Path(run_dir) / METRICS_NAME
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    for key, name in (("test_psnr_db", "test"), ("student_vs_teacher_psnr_db", "vs teacher"), ("val_psnr_db", "val")):
        if isinstance(metrics.get(key), (int, float)):
            return f"{metrics[key]:.2f} dB {name}"
    return ""


def run_source(run: LoadedRun, role: str | None = None) -> ViewSource:
    """A loaded run folder as a source, captioned with its architecture (and ``role``)."""
    label = run.model + (f" ({role})" if role else "")
    return ViewSource(run.field, run.grid, run.marching_config(), run.camera_rig(), run.render_background(),
                      label, lambda: recorded_psnr(run.path))


def _live_psnr(loop, name: str) -> Callable[[], str]:
    return lambda: "" if loop.last_val_psnr is None else f"{loop.last_val_psnr:.2f} dB {name}"


def training_sources(trainer) -> list[ViewSource]:
    """The field a :class:`~taichi_pvd.training.trainer.Trainer` is learning, as it learns."""
    rig = CameraRig(**trainer.run_info["camera_rig"])
    background = (1.0, 1.0, 1.0) if trainer.scene.alphas is not None else (0.0, 0.0, 0.0)
    return [ViewSource(trainer.field, trainer.grid, trainer.config.marching, rig, background,
                       f"{trainer.field.kind} (training)", _live_psnr(trainer, "val"))]


def distillation_sources(distiller, teacher_run: Path | None = None) -> list[ViewSource]:
    """Teacher and student of a :class:`~taichi_pvd.distill.distiller.Distiller` (marched through
    the grid they share), the student as it learns; the teacher captioned with the PSNR recorded
    in ``teacher_run``."""
    background = (0.0, 0.0, 0.0) if (distiller.run_info.get("scene") or {}).get("transparent") is False \
        else (1.0, 1.0, 1.0)
    teacher_psnr = (lambda: recorded_psnr(teacher_run)) if teacher_run is not None else (lambda: "")
    marching = distiller.config.marching
    return [ViewSource(distiller.teacher, distiller.grid, marching, distiller.rig, background,
                       f"{distiller.teacher.kind} (teacher)", teacher_psnr),
            ViewSource(distiller.field, distiller.grid, marching, distiller.rig, background,
                       f"{distiller.field.kind} (student)", _live_psnr(distiller, "vs teacher"))]


def render_frame(source: ViewSource, camera: ViewCamera, width: int, height: int) -> Frame:
    """``source`` seen by ``camera`` in a ``width`` x ``height`` image, rendered as ``pvd-ti
    render`` renders a camera of its paths (same rays, marching and background)."""
    views = camera.view_set(width, height, source.rig.near, source.rig.far, source.background)
    with torch.no_grad():
        return render_views(source, views)[0]


def scene_cameras(scene: dict) -> torch.Tensor | None:
    """[N, 3, 4] camera-to-world matrices (OpenGL) of the training split of the scene a run's
    config describes (``config["scene"]``: its ``path``, or ``demo``); None when it is not on
    this machine or cannot be read."""
    try:
        if scene.get("path") and Path(scene["path"]).exists():
            folder = Path(scene["path"])
        elif scene.get("demo"):
            folder = demo_scene_path()
        else:
            return None
        return load_scene(folder, "train").c2w.detach().cpu()
    except (PvdError, OSError):
        return None
