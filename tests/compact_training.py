"""Compact options of the vm, mlp and grid fields, a short training run on a scene folder and a
short distillation into a grid, shared by the tests of the scene formats (forward-facing,
unbounded)."""

from __future__ import annotations

from pathlib import Path

import torch

from taichi_pvd.data import load_scene
from taichi_pvd.distill.api import distill
from taichi_pvd.fields import make_field
from taichi_pvd.training.api import resolve_train_config
from taichi_pvd.training.trainer import Trainer

#: Options that make each field small enough to train in seconds on the CPU.
COMPACT_FIELDS = {
    "vm": {"density_rank": 8, "appearance_rank": 16, "resolution_init": 32, "resolution_final": 32,
           "upsample_steps": ()},
    "mlp": {"frequencies": 6, "depth": 4, "width": 64, "skip_index": 1},
    "grid": {"resolution": 32},
}


def train_briefly(scene_dir: Path, kind: str, out_dir: Path, steps: int = 80) -> tuple[Trainer, float, float]:
    """Train a compact ``kind`` field for ``steps`` steps of 256 rays on the scene in
    ``scene_dir``. Returns the trainer and its validation PSNR (dB) before and after."""
    train_scene, val_scene = load_scene(scene_dir, "train"), load_scene(scene_dir, "val")
    field = make_field(kind, train_scene.aabb, COMPACT_FIELDS[kind], generator=torch.Generator().manual_seed(0))
    config = resolve_train_config(kind, {"steps": steps, "batch_rays": 256, "grid_resolution": 32, "val_every": 0,
                                         "checkpoint_every": 0, "marching": {"steps_across_box": 128}})
    trainer = Trainer(field, train_scene, val_scene, config, out_dir)
    before = trainer.validate()
    return trainer, before, trainer.run()["val_psnr_db"]


def distil_into_grid_briefly(teacher_dir: Path, out_dir: Path, steps: int, batch_rays: int) -> tuple[float, float]:
    """Distil the hash run in ``teacher_dir`` into a 32^3 grid for ``steps`` steps. Returns the
    student-vs-teacher PSNR (dB) on fixed virtual views before and after."""
    seen: dict[str, float] = {}

    def before_distilling(distiller) -> None:
        seen["before"] = distiller.validate()

    result = distill(source="hash", target="grid", teacher=teacher_dir, out=out_dir,
                     on_ready=before_distilling, student_overrides={"resolution": 32},
                     distill_overrides={"steps": steps, "batch_rays": batch_rays, "val_every": 0,
                                        "checkpoint_every": 0, "val_views": 2, "val_size": 24,
                                        "virtual_cameras": 40})
    return seen["before"], result["student_vs_teacher_psnr_db"]
