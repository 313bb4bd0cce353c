"""The library entry point behind ``pvd-ti train``: resolve the scene, the run folder and the
preset, then train."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import backend
from ..data import demo_scene_path, load_scene
from ..data.demo import is_embedded_demo_scene
from ..data.camera_rig import CameraRig
from ..fields import field_class, make_config, make_field
from ..io.run_folder import RunFolder, check_resume_matches, claim_run_folder, scene_fingerprint
from ..io.storage import storage_errors
from ..memory import check_field_memory, check_loop_memory
from ..option_types import check_option_types, config_with_options
from ..presets import Preset, get_preset, merge_settings, training_preset
from .config import TrainConfig
from .interrupts import graceful_termination, raise_if_stop_requested
from .loop import OptimizationLoop, ProgressFn, ValidateFn
from .trainer import Trainer

def default_run_dir(scene_path: Path, model: str, demo: bool, root: Path = Path("runs")) -> Path:
    """``runs/demo-<model>`` for the demo scene, ``runs/<scene folder>-<model>`` otherwise."""
    return root / (f"demo-{model}" if demo else f"{scene_path.name}-{model}")


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
          force: bool = False, on_progress: ProgressFn | None = None, on_ready=None,
          on_validate: ValidateFn | None = None) -> dict[str, Any]:
    """Train a field of architecture ``model`` on the scene at ``data`` (the embedded demo
    scene when ``None``) into ``out``; returns the final metrics dict.

    Settings: the library defaults, then ``preset`` (a name or a :class:`Preset`; default
    ``auto`` on the demo scene, ``full`` elsewhere), then ``train_overrides`` and
    ``field_overrides``. ``on_ready(trainer)`` is called once everything is loaded, before the
    first step; ``on_validate(trainer)`` after every validation, its figures recorded in the
    run's history.

    The run folder is claimed as :func:`~taichi_pvd.io.run_folder.claim_run_folder` says: with
    ``overwrite`` an earlier run there is replaced only once the new run has written its first
    checkpoint. ``resume`` continues the run there, on the scene it recorded (same content);
    ``force`` continues it on another scene.
    """
    check_option_types(field_class(model).config_class, field_overrides or {}, f"{model} field option")
    demo = data is None or is_embedded_demo_scene(data)
    scene_path = demo_scene_path() if demo else Path(data)
    out_dir = Path(out) if out is not None else default_run_dir(scene_path, model, demo)
    chosen = training_preset(preset, demo_scene=demo)
    config = resolve_train_config(model, train_overrides, chosen)
    with graceful_termination(), storage_errors(), \
            claim_run_folder(out_dir, resume=resume, overwrite=overwrite) as folder:
        backend.init()
        raise_if_stop_requested()
        device = backend.device()
        field_options = {**chosen.field_options(model), **(field_overrides or {})}
        check_loop_memory(config.batch_rays, device, config.grid_resolution)
        check_field_memory(make_config(model, field_options), device)
        torch.manual_seed(config.seed)
        options = {"downscale": config.downscale, "holdout_every": config.holdout_every}
        train_scene = load_scene(scene_path, "train", **options, scene_type=config.scene_type, device=device)
        options["scene_type"] = train_scene.scene_type.name
        val_scene = load_scene(scene_path, "val", **options, background=(1.0, 1.0, 1.0), device=device)
        raise_if_stop_requested()
        generator = torch.Generator().manual_seed(config.seed)
        field = make_field(model, train_scene.aabb.cpu(), field_options, generator=generator)
        scene = {"path": str(scene_path.resolve()), "name": train_scene.name, "demo": demo,
                 "transparent": train_scene.alphas is not None, "fingerprint": scene_fingerprint(scene_path),
                 "options": options, "type_reason": train_scene.scene_type.reason,
                 "split": train_scene.split_summary.to_dict(),
                 "lens": None if train_scene.lens is None else train_scene.lens.model}
        trainer = Trainer(field, train_scene, val_scene, config, out_dir,
                          run_info={"scene": scene, "camera_rig": CameraRig.from_scene(train_scene).to_dict()})
        metrics = run_in_folder(trainer, folder, {"scene": scene}, force=force, on_ready=on_ready,
                                on_progress=on_progress, on_validate=on_validate)
    return {**metrics, "run_dir": str(out_dir)}


def run_in_folder(loop: OptimizationLoop, folder: RunFolder, facts: dict[str, Any], *, force: bool,
                  on_ready=None, on_progress: ProgressFn | None = None,
                  on_validate: ValidateFn | None = None) -> dict[str, Any]:
    """Run ``loop`` in the run folder it claimed: resume it first when ``folder`` holds the run
    to continue (``facts``, e.g. the scene's, must match what that run recorded unless
    ``force``), call ``on_ready(loop)``, replace an earlier run, then optimise. Returns the
    final metrics."""
    if folder.resuming:
        loop.resume(check=lambda recorded: check_resume_matches(loop.out_dir, recorded, facts, force=force))
    if on_ready is not None:
        on_ready(loop)
    folder.replace_earlier_run()
    loop.on_checkpoint = folder.on_checkpoint
    return loop.run(on_progress, on_validate)
