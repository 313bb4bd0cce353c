"""Presets: whole-job settings that fit the hardware, with each architecture's own values.

A run's settings come in three layers: the library defaults (the fields of
:class:`~taichi_pvd.training.config.TrainConfig`, :class:`~taichi_pvd.distill.config.DistillConfig`
and the field configs), then a preset, then what the user passed. A preset holds the
per-architecture values (:data:`ARCHITECTURE_TRAINING`, :data:`ARCHITECTURE_DISTILLATION`, the
paper's distillation length :data:`PAPER_DISTILLATION` and, for a vm student, an upsampling
schedule scaled to the run) under its own settings: the demo scene's size, training and
distillation options, field options and the length of the orbit video.

- ``full``: the paper-sized settings (20k steps of 8192 rays, a 2^19-entry, 16-level hash table,
  a 128^3 occupancy grid and a 128^3 grid student, 30k distillation steps of 4096 rays, 8192
  into the mlp). Meant for a GPU.
- ``cpu``: the demo job within minutes on two CPU cores, still scoring well on the demo scene's
  test views (``benchmarks/results/newcomer-demo-cpu.json``).
- ``gpu``: the demo job sized for one GPU (a 128x128 scene needs far fewer steps than the
  paper's settings): a minute or so end to end once Taichi's kernels are cached.

``auto`` picks ``gpu`` on CUDA and ``cpu`` on the CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import backend
from .errors import ConfigError, OptionValueError

#: Names accepted by :func:`get_preset`.
PRESET_NAMES = ("auto", "cpu", "gpu", "full")

#: Training options of each architecture, applied in every preset under the preset's own.
ARCHITECTURE_TRAINING: dict[str, dict[str, Any]] = {
    "hash": {},
    # TensoRF's factor learning rate (its networks take ``network_lr_ratio`` of it).
    "vm": {"lr": 2e-2},
    # PVD trains its NeRF at 1e-3; 2e-3 is the cautious end of the best range on the demo scene.
    # The 8x256 network trains faster under float16 autocast on CUDA (see docs/experiments.md).
    "mlp": {"lr": 2e-3, "mixed_precision": True},
    # Adam in place of Plenoxels' RMSProp needs a high rate; a step of twice the rays costs
    # little more, its launches dominate.
    "grid": {"lr": 1e-1, "batch_rays": 16384},
}

#: The paper's distillation: 30k steps of 4096 rays, under every student's own values.
PAPER_DISTILLATION: dict[str, Any] = {"steps": 30000, "batch_rays": 4096}

#: Distillation options of each student architecture, applied in every preset under the preset's
#: own. A student learns at its own training rate.
ARCHITECTURE_DISTILLATION: dict[str, dict[str, Any]] = {
    "hash": {"lr": 1e-2},
    "vm": {"lr": 2e-2},
    # The mlp's step runs as a CUDA graph and is bound by the device: more rays a step, labels
    # drawn 32 steps at a time at twice the rendering's spacing, a fifth of the paper's per-point
    # loss weights, a parameter average and bfloat16 autocast (docs/experiments.md).
    "mlp": {"batch_rays": 8192, "label_block_steps": 32, "ema_decay": 0.99, "lr": 2e-3, "mixed_precision": True,
            "feature_weight": 4e-4, "density_weight": 4e-4, "colour_weight": 4e-4, "label_spacing_scale": 2.0},
    "grid": {"lr": 1e-1},
}

#: Length of the runs TensoRF's upsampling schedule was made for.
TENSORF_RUN_STEPS = 30_000


def vm_student_options(steps: int) -> dict[str, Any]:
    """Field options of a vm student distilled over ``steps`` steps: TensoRF's upsampling steps
    (made for 30k-step runs) scaled to the run when it is shorter, so that a short run still
    ends at ``resolution_final``; empty for longer runs."""
    from .fields.vm import TensoRFConfig

    if steps >= TENSORF_RUN_STEPS:
        return {}
    scaled = sorted({max(1, round(s * steps / TENSORF_RUN_STEPS)) for s in TensoRFConfig().upsample_steps})
    return {"upsample_steps": tuple(scaled)}


#: Field options of a student that depend on the distillation's length, by architecture.
ARCHITECTURE_STUDENT_FIELDS: dict[str, Callable[[int], dict[str, Any]]] = {"vm": vm_student_options}


@dataclass(frozen=True)
class Preset:
    """Settings of a whole job, each dict overriding the library defaults (and the
    per-architecture values) where it names an option; an empty dict adds nothing."""

    name: str
    """``cpu``, ``gpu``, ``full``, or the name of a modified preset (``cpu+overrides``)."""
    summary: str
    """One line saying what the preset is for."""
    scene_size: int = 128
    """Width and height (pixels) of the embedded demo scene's images."""
    train: dict[str, Any] = field(default_factory=dict)
    """:class:`TrainConfig` fields; ``marching`` is a dict of :class:`MarchingConfig` fields."""
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Architecture name -> field options (of its config dataclass)."""
    distill: dict[str, Any] = field(default_factory=dict)
    """:class:`DistillConfig` fields (``marching`` as a dict)."""
    video_frames: int = 120
    """Frames of the orbit video."""

    def train_options(self, model: str) -> dict[str, Any]:
        """The options of training a ``model`` field: :data:`ARCHITECTURE_TRAINING`'s, then the
        preset's own (a new dict)."""
        return merge_settings(ARCHITECTURE_TRAINING.get(model, {}), self.train)

    def distill_options(self, model: str) -> dict[str, Any]:
        """The options of distilling into a ``model`` student: :data:`PAPER_DISTILLATION`, then
        :data:`ARCHITECTURE_DISTILLATION`'s, then the preset's own (a new dict). Stage lengths
        left unset follow the paper's shares of the run (see
        :class:`~taichi_pvd.distill.config.DistillConfig`)."""
        return merge_settings(merge_settings(PAPER_DISTILLATION, ARCHITECTURE_DISTILLATION.get(model, {})),
                              self.distill)

    def field_options(self, model: str, distill_steps: int | None = None) -> dict[str, Any]:
        """The field options of architecture ``model`` (a new dict; empty: the defaults). For a
        student distilled over ``distill_steps`` steps, :data:`ARCHITECTURE_STUDENT_FIELDS`'s
        come first."""
        scaled = ARCHITECTURE_STUDENT_FIELDS.get(model)
        for_run = {} if scaled is None or distill_steps is None else scaled(distill_steps)
        return {**for_run, **copy.deepcopy(self.fields.get(model, {}))}

    def with_overrides(self, *, scene_size: int | None = None, train: dict[str, Any] | None = None,
                       fields: dict[str, dict[str, Any]] | None = None,
                       distill: dict[str, Any] | None = None, video_frames: int | None = None) -> Preset:
        """This preset with the user's values on top; ``None`` entries (options not given) are
        ignored, nested ``marching`` dicts are merged key by key. The name gains ``+overrides``
        when anything changed."""
        new_train = merge_settings(self.train, train)
        new_distill = merge_settings(self.distill, distill)
        new_fields = copy.deepcopy(self.fields)
        for model, options in (fields or {}).items():
            new_fields[model] = merge_settings(new_fields.get(model, {}), options)
        for name, value in (("scene_size", scene_size), ("video_frames", video_frames)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise OptionValueError(name, f"must be a positive integer, got {value!r}")
        changed = dataclasses.replace(
            self,
            scene_size=self.scene_size if scene_size is None else scene_size,
            train=new_train, fields=new_fields, distill=new_distill,
            video_frames=self.video_frames if video_frames is None else video_frames,
        )
        if changed == self:
            return self
        base = self.name.removesuffix("+overrides")
        return dataclasses.replace(changed, name=f"{base}+overrides")

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (recorded in the demo's ``summary.json``)."""
        return dataclasses.asdict(self)


def _show(values: dict[str, Any]) -> str:
    shown = ", ".join(f"{k}={json.dumps(v) if isinstance(v, dict) else v}" for k, v in values.items())
    return shown or "library defaults"


def merge_settings(base: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """``base`` updated with the non-``None`` values of ``overrides``; a ``marching`` dict in
    both is merged key by key. Neither input is modified."""
    merged = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "marching" and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def settings_lines(preset: Preset, *, trained: str | None = None, student: str | None = None,
                   train: dict[str, Any] | None = None, distill: dict[str, Any] | None = None,
                   fields: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """The settings of a run, as lines to print once at its start: the preset's name and
    summary; what it sets (the per-architecture values included) for training a ``trained``
    field and for distilling into a ``student`` field; then what the user changed on top:
    ``train`` and ``distill`` options and ``fields`` (architecture -> field options), ``None``
    values left out."""
    lines = [f"preset {preset.name}: {preset.summary}"]
    if trained is not None:
        lines.append(f"  training a {trained} field: {_show(preset.train_options(trained))}")
        lines.append(f"  {trained} field: {_show(preset.field_options(trained))}")
    if student is not None:
        options = preset.distill_options(student)
        steps = merge_settings(options, distill).get("steps")
        lines.append(f"  distilling into a {student} student: {_show(options)}")
        lines.append(f"  {student} student field: {_show(preset.field_options(student, distill_steps=steps))}")
    changes = [(f"{title} ", merge_settings({}, values)) for title, values in (("training", train),
                                                                              ("distillation", distill))]
    changes += [(f"{model} field ", merge_settings({}, values)) for model, values in (fields or {}).items()]
    shown = "; ".join(title + _show(values) for title, values in changes if values)
    lines.append(f"  your changes: {shown or 'none'}")
    return lines


FULL = Preset(
    name="full",
    summary="the paper-sized settings, for a GPU",
)

CPU = Preset(
    name="cpu",
    summary="smaller settings so that the whole demo job runs in minutes on a CPU",
    scene_size=128,
    train={
        "steps": 2000,
        "batch_rays": 1024,
        # A 64^3 occupancy grid is 8x cheaper to refresh than 128^3 (every cell is evaluated at
        # each refresh during the warm-up) and still skips the demo scene's empty space.
        "grid_resolution": 64,
        "grid_warmup_steps": 64,
        "val_every": 500,
        # Steps of 0.02 world units, about one pixel's footprint at 128 px.
        "marching": {"steps_across_box": 256},
    },
    fields={
        # 8 levels of 2^15 entries up to 256 cells across the box: enough for 128x128 images,
        # and the big table's random reads and Adam update dominate a CPU step.
        "hash": {"n_levels": 8, "log2_table_size": 15, "finest_resolution": 256},
        # A 64^3 student keeps Adam and the updates cheap; a distilled grid scores higher on the
        # demo scene with lighter total variation.
        "grid": {"resolution": 64, "tv_density_weight": 1e-3, "tv_sh_weight": 1e-3},
    },
    distill={
        "steps": 1000,
        "batch_rays": 1024,
        "val_every": 500,
    },
    video_frames=48,
)

GPU = Preset(
    name="gpu",
    summary="the demo job sized for one GPU: about a minute end to end once kernels are cached",
    scene_size=128,
    train={
        # The demo scene is 128x128: 1500 steps of 8192 rays see every training pixel ~12 times.
        "steps": 1500,
        "val_every": 500,
        # Steps of 0.01 world units, half a pixel's footprint at 128 px.
        "marching": {"steps_across_box": 512},
    },
    fields={
        # As in the cpu preset: lighter TV on a distilled grid scores higher on the demo scene.
        "grid": {"tv_density_weight": 1e-3, "tv_sh_weight": 1e-3},
    },
    distill={
        "steps": 1000,
        "batch_rays": 8192,
        "val_every": 500,
        "marching": {"steps_across_box": 512},
    },
    video_frames=96,
)

_BY_NAME = {"cpu": CPU, "gpu": GPU, "full": FULL}


def get_preset(name: str | Preset = "auto") -> Preset:
    """The preset called ``name``: ``cpu``, ``gpu``, ``full``, or ``auto`` (``gpu`` when the
    backend is CUDA, ``cpu`` otherwise; starts Taichi to find out); a :class:`Preset` is
    returned as it is. :class:`ConfigError` for other names."""
    if isinstance(name, Preset):
        return name
    key = name.lower()
    if key == "auto":
        key = "gpu" if backend.arch() == "cuda" else "cpu"
    if key not in _BY_NAME:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESET_NAMES)}")
    return _BY_NAME[key]


def training_preset(name: str | Preset | None, *, demo_scene: bool) -> Preset:
    """The preset that training or distillation applies under the user's options: ``name``
    when given (see :func:`get_preset`); otherwise, on the embedded demo scene (for
    distillation: a teacher trained on it), the one that fits the hardware (``auto``), and on
    any other scene ``full``."""
    if name is not None:
        return get_preset(name)
    return get_preset("auto") if demo_scene else FULL
