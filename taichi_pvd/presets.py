"""Presets: whole-job settings that fit the hardware.

A preset names everything the demo job (``pvd-ti demo``) and ``pvd-ti train`` on the demo scene
need: the demo scene's size, the training settings (:class:`~taichi_pvd.training.config.TrainConfig`
fields), the field options of each architecture, the distillation settings
(:class:`~taichi_pvd.distill.config.DistillConfig` fields) and the length of the orbit video.

- ``full``: the library defaults (the paper-sized settings: 20k steps of 8192 rays, a 2^19-entry,
  16-level hash table, a 128^3 occupancy grid and a 128^3 grid student, 30k distillation steps
  of 4096 rays, 8192 into the mlp). Meant for a GPU.
- ``cpu``: chosen so that the whole demo job ends within minutes on two CPU cores and still
  scores well on the demo scene's test views (measured figures: ``benchmarks/results/
  newcomer-demo-cpu.json``). Where the time goes on the CPU and why each value was picked is
  written beside each setting below.

- ``gpu``: the demo job sized for one GPU (a 128x128 scene needs far fewer steps than the
  paper's settings): a minute or so end to end once Taichi's kernels are cached.

``auto`` picks ``gpu`` on CUDA and ``cpu`` on the CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from . import backend
from .errors import ConfigError

#: Names accepted by :func:`get_preset`.
PRESET_NAMES = ("auto", "cpu", "gpu", "full")


@dataclass(frozen=True)
class Preset:
    """Settings of a whole job. Every dict holds overrides of the library defaults; an empty
    dict means "the defaults"."""

    name: str
    """``cpu``, ``full``, or the name of a modified preset (``cpu+overrides``)."""
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

    def field_options(self, model: str) -> dict[str, Any]:
        """The field options of architecture ``model`` (a copy; empty: the defaults)."""
        return copy.deepcopy(self.fields.get(model, {}))

    def train_options(self) -> dict[str, Any]:
        """The training overrides (a copy)."""
        return copy.deepcopy(self.train)

    def distill_options(self) -> dict[str, Any]:
        """The distillation overrides (a copy). Stage lengths left unset follow the paper's
        shares of the run (see :class:`~taichi_pvd.distill.config.DistillConfig`)."""
        return copy.deepcopy(self.distill)

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
                raise ConfigError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
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

    def describe(self) -> list[str]:
        """The whole preset as a few human-readable lines (printed by ``pvd-ti demo``)."""
        lines = [f"preset {self.name}: {self.summary}",
                 f"  demo scene {self.scene_size}x{self.scene_size}; orbit video {self.video_frames} frames",
                 f"  training: {_show(self.train)}"]
        lines += [f"  {model} field: {_show(options)}" for model, options in self.fields.items()]
        lines.append(f"  distillation: {_show(self.distill_options())}")
        return lines

    def describe_training(self, model: str) -> list[str]:
        """The parts of the preset that training a ``model`` field uses, as lines of text."""
        return [f"preset {self.name}: {self.summary}",
                f"  training: {_show(self.train)}",
                f"  {model} field: {_show(self.fields.get(model, {}))}"]

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


FULL = Preset(
    name="full",
    summary="the library defaults (paper-sized settings, for a GPU)",
)

CPU = Preset(
    name="cpu",
    summary="smaller settings so that the whole demo job runs in minutes on a CPU",
    scene_size=128,
    train={
        # A step costs ~20 ms on two idle cores at these sizes (40-50 ms on busy ones); 2000
        # steps reach ~28 dB on the test views.
        "steps": 2000,
        "batch_rays": 1024,
        # A 64^3 occupancy grid is 8x cheaper to refresh than 128^3 (every cell is evaluated at
        # each refresh during the warm-up) and still skips the demo scene's empty space.
        "grid_resolution": 64,
        "grid_warmup_steps": 64,
        "val_every": 500,
        # Steps of 0.02 world units (about one pixel's footprint at 128 px) instead of 0.005:
        # 6.6 instead of 26.6 samples per ray once the occupancy grid has settled.
        "marching": {"steps_across_box": 256},
    },
    fields={
        # 8 levels of 2^15 entries up to 256 cells across the box: 0.44M parameters instead of
        # 12.2M, enough for 128x128 images; a step took 47 ms instead of 242 ms on 2 busy cores
        # (the big table's random reads and its Adam update dominate).
        "hash": {"n_levels": 8, "log2_table_size": 15, "finest_resolution": 256},
        # A 64^3 student: 7M parameters (Adam and the updates stay cheap on the CPU). Distilled
        # from the cpu-preset teacher, TV weights of 1e-3 scored 26.8 dB on the test views
        # against 24.9 dB with 1e-2 (trained from scratch the two are even).
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
        # Steps of 0.01 world units (half a pixel's footprint at 128 px): half the samples of
        # the library's 1024 steps across the box, no visible loss at this image size.
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


def get_preset(name: str = "auto") -> Preset:
    """The preset called ``name``: ``cpu``, ``gpu``, ``full``, or ``auto`` (``gpu`` when the
    backend is CUDA, ``cpu`` otherwise; starts Taichi to find out). :class:`ConfigError` for
    other names."""
    key = name.lower()
    if key == "auto":
        key = "gpu" if backend.arch() == "cuda" else "cpu"
    if key not in _BY_NAME:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESET_NAMES)}")
    return _BY_NAME[key]


def training_preset(name: str | None, *, demo_scene: bool) -> Preset:
    """The preset that ``pvd-ti train`` applies under the user's options: ``name`` when given;
    otherwise, on the embedded demo scene, the one that fits the hardware (``auto``), and on
    any other scene ``full`` (the library defaults)."""
    if name is not None:
        return get_preset(name)
    return get_preset("auto") if demo_scene else FULL
