"""The library entry point behind ``pvd-ti train``: resolve the scene, the run folder and the
preset, then train."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from .. import backend
from ..data import demo_scene_path, load_scene
from ..data.camera_rig import CameraRig
from ..errors import NothingToResume, OptionConflict, RunFolderInUse
from ..fields import field_class, make_config, make_field
from ..memory import check_field_memory, check_loop_memory
from ..io.runs import CHECKPOINT_NAME, HISTORY_NAME, METRICS_NAME
from ..option_types import check_option_types, config_with_options
from ..presets import Preset, get_preset, merge_settings, training_preset
from .config import TrainConfig
from .interrupts import graceful_termination
from .loop import ProgressFn, ValidateFn
from .trainer import Trainer

RUN_FILES = (CHECKPOINT_NAME, METRICS_NAME, HISTORY_NAME)


def default_run_dir(scene_path: Path, model: str, demo: bool, root: Path = Path("runs")) -> Path:
    """``runs/demo-<model>`` for the demo scene, ``runs/<scene folder>-<model>`` otherwise."""
    return root / (f"demo-{model}" if demo else f"{scene_path.name}-{model}")


def prepare_run_dir(out_dir: Path, *, resume: bool, overwrite: bool) -> bool:
    """Check ``out_dir`` for an earlier run. Returns True when training should resume.

    A folder holding a run is refused unless ``resume`` (continue it) or ``overwrite``
    (delete its run files first) is given.
    """
    if resume and overwrite:
        raise OptionConflict("resume", "overwrite")
    has_run = (out_dir / CHECKPOINT_NAME).exists()
    if resume:
        if not has_run:
            raise NothingToResume(out_dir, CHECKPOINT_NAME)
        return True
    if has_run or (out_dir / METRICS_NAME).exists():
        if not overwrite:
            raise RunFolderInUse(out_dir)
        for name in RUN_FILES:
            (out_dir / name).unlink(missing_ok=True)
        for sub in ("eval", "render"):
            shutil.rmtree(out_dir / sub, ignore_errors=True)
    return False


def resolve_train_config(model: str, overrides: dict[str, Any] | None = None,
                         preset: str | Preset = "full") -> TrainConfig:
    """The training config of a ``model`` field: :class:`TrainConfig`'s defaults, then the
    preset's training options for the architecture (:meth:`Preset.train_options`), then the
    user's ``overrides`` (``None`` values are ignored; ``marching`` may be a partial dict of
    :class:`MarchingConfig` fields)."""
    field_class(model)
    values = merge_settings(get_preset(preset).train_options(model), overrides)
    return config_with_options(TrainConfig, values, "training option")


def train(*, data: str | Path | None = None, model: str = "hash", out: str | Path | None = None,
          preset: str | Preset | None = None, field_overrides: dict[str, Any] | None = None,
          train_overrides: dict[str, Any] | None = None, resume: bool = False, overwrite: bool = False,
          on_progress: ProgressFn | None = None, on_ready=None,
          on_validate: ValidateFn | None = None) -> dict[str, Any]:
    """Train a field of architecture ``model`` on the scene at ``data`` (the embedded demo
    scene when ``None``) into ``out``; returns the final metrics dict.

    Settings: the library defaults, then ``preset`` (a name or a :class:`Preset`; default
    ``auto`` on the demo scene, ``full`` elsewhere), then ``train_overrides`` and
    ``field_overrides``. ``on_ready(trainer)`` is called once everything is loaded, before the
    first step; ``on_validate(trainer)`` after every validation, its figures recorded in the
    run's history.
    """
    check_option_types(field_class(model).config_class, field_overrides or {}, f"{model} field option")
    demo = data is None
    scene_path = demo_scene_path() if demo else Path(data)
    out_dir = Path(out) if out is not None else default_run_dir(scene_path, model, demo)
    chosen = training_preset(preset, demo_scene=demo)
    config = resolve_train_config(model, train_overrides, chosen)
    backend.init()
    device = backend.device()
    check_loop_memory(config.batch_rays, device, config.grid_resolution)
    check_field_memory(make_config(model, {**chosen.field_options(model), **(field_overrides or {})}), device)
    resuming = prepare_run_dir(out_dir, resume=resume, overwrite=overwrite)
    torch.manual_seed(config.seed)
    train_scene = load_scene(scene_path, "train", downscale=config.downscale, device=device)
    val_scene = load_scene(scene_path, "val", downscale=config.downscale, background=(1.0, 1.0, 1.0), device=device)
    generator = torch.Generator().manual_seed(config.seed)
    field = make_field(model, train_scene.aabb.cpu(), {**chosen.field_options(model), **(field_overrides or {})},
                       generator=generator)
    trainer = Trainer(field, train_scene, val_scene, config, out_dir,
                      run_info={"scene": {"path": str(scene_path.resolve()), "name": train_scene.name, "demo": demo,
                                          "transparent": train_scene.alphas is not None},
                                "camera_rig": CameraRig.from_scene(train_scene).to_dict()})
    if resuming:
        trainer.resume()
    if on_ready is not None:
        on_ready(trainer)
    with graceful_termination():
        metrics = trainer.run(on_progress, on_validate)
    return {**metrics, "run_dir": str(out_dir)}
