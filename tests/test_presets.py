"""Settings in three layers (library defaults, the preset with its per-architecture values, the
user's values): what each architecture resolves to under the presets, the loop options shared by
training and distillation, and the lines printed at the start of a run."""

from __future__ import annotations

import dataclasses

import pytest

from taichi_pvd.distill.api import resolve_distill_config
from taichi_pvd.distill.config import DistillConfig
from taichi_pvd.errors import ConfigError
from taichi_pvd.fields import make_config
from taichi_pvd.fields.vm import TensoRFConfig
from taichi_pvd.presets import CPU, FULL, GPU, settings_lines, vm_student_options
from taichi_pvd.training.api import resolve_train_config
from taichi_pvd.training.config import TrainConfig
from taichi_pvd.training.loop_config import REMOVED_OPTIONS, LoopConfig

MODELS = ("hash", "vm", "mlp", "grid")

#: The loop options that training and distillation resolve to alike under the full preset.
LOOP_FULL = {
    "lr_final_ratio": 0.03, "lr_warmup_steps": 0, "adam_eps": 1e-15, "adam_beta2": 0.99, "ema_decay": 0.0,
    "val_every": 1000, "val_views": 4, "checkpoint_every": 2000, "time_limit_s": 0.0, "snapshot_times_s": (),
    "mixed_precision": False, "seed": 0,
    "marching": {"steps_across_box": 1024, "cone_angle": 0.0, "max_samples_per_ray": 1024,
                 "transmittance_threshold": 0.0001},
}
#: Every training option of the full preset's hash field, as resolved before the options moved
#: into the presets.
TRAIN_FULL_HASH = {
    **LOOP_FULL, "steps": 20000, "batch_rays": 8192, "lr": 0.01, "grid_resolution": 128, "grid_update_every": 16,
    "grid_warmup_steps": 256, "grid_decay": 0.95, "random_background": True, "downscale": 1, "holdout_every": 8,
    "scene_type": None,
}
#: Every distillation option of the full preset into a hash student, as resolved before.
DISTILL_FULL_HASH = {
    **LOOP_FULL, "steps": 30000, "batch_rays": 4096, "lr": 0.01, "stage1_steps": None, "stage2_steps": None,
    "feature_weight": 0.002, "density_weight": 0.002, "colour_weight": 0.002, "rgb_weight": 1.0,
    "density_clip_min": -2.0, "density_clip_max": 7.0, "feature_loss": True, "density_clip": True,
    "blockwise": True, "label_spacing_scale": 1.0, "label_block_steps": 8, "cuda_graphs": True,
    "init_head_from_teacher": False, "virtual_cameras": 300, "elevation_min_deg": 0.0, "elevation_max_deg": 80.0,
    "random_background": True, "val_size": 100,
}
CPU_TRAIN = {"steps": 2000, "batch_rays": 1024, "grid_resolution": 64, "grid_warmup_steps": 64, "val_every": 500,
             "marching": {**TRAIN_FULL_HASH["marching"], "steps_across_box": 256}}
CPU_DISTILL = {"steps": 1000, "batch_rays": 1024, "val_every": 500}
MLP_DISTILL = {"lr": 0.002, "ema_decay": 0.99, "feature_weight": 0.0004, "density_weight": 0.0004,
               "colour_weight": 0.0004, "label_spacing_scale": 2.0, "label_block_steps": 32, "mixed_precision": True}
#: (preset, architecture) -> the resolved training options that differ from TRAIN_FULL_HASH.
TRAIN_EXPECTED = {
    ("full", "hash"): {},
    ("full", "vm"): {"lr": 0.02},
    ("full", "mlp"): {"lr": 0.002, "mixed_precision": True},
    ("full", "grid"): {"lr": 0.1, "batch_rays": 16384},
    ("cpu", "hash"): CPU_TRAIN,
    ("cpu", "vm"): {**CPU_TRAIN, "lr": 0.02},
    ("cpu", "mlp"): {**CPU_TRAIN, "lr": 0.002, "mixed_precision": True},
    ("cpu", "grid"): {**CPU_TRAIN, "lr": 0.1},
}
#: (preset, student architecture) -> the resolved distillation options that differ from
#: DISTILL_FULL_HASH.
DISTILL_EXPECTED = {
    ("full", "hash"): {},
    ("full", "vm"): {"lr": 0.02},
    ("full", "mlp"): {**MLP_DISTILL, "batch_rays": 8192},
    ("full", "grid"): {"lr": 0.1},
    ("cpu", "hash"): CPU_DISTILL,
    ("cpu", "vm"): {**CPU_DISTILL, "lr": 0.02},
    ("cpu", "mlp"): {**CPU_DISTILL, **MLP_DISTILL},
    ("cpu", "grid"): {**CPU_DISTILL, "lr": 0.1},
}
#: Every field option at the library defaults.
FIELD_DEFAULTS = {
    "hash": {"n_levels": 16, "features_per_level": 2, "log2_table_size": 19, "base_resolution": 16,
             "finest_resolution": 2048, "hidden": 64, "colour_hidden": 64, "mlp_weight_decay": 1e-06},
    "vm": {"density_rank": 16, "appearance_rank": 48, "resolution_init": 128, "resolution_final": 300,
           "upsample_steps": (2000, 3000, 4000, 5500, 7000), "density_shift": -2.0, "init_scale": 0.1,
           "l1_weight": 0.0001, "network_lr_ratio": 0.05, "colour_hidden": 64},
    "mlp": {"frequencies": 10, "depth": 8, "width": 256, "skip_index": 4, "colour_hidden": 64},
    "grid": {"resolution": 128, "init_raw_density": -2.0, "tv_samples": 32768, "tv_density_weight": 5e-05,
             "tv_sh_weight": 5e-05, "l1_density_weight": 1e-05},
}
#: (preset, architecture) -> field options that differ from FIELD_DEFAULTS, trained and distilled.
CPU_HASH_FIELD = {"n_levels": 8, "log2_table_size": 15, "finest_resolution": 256}
CPU_GRID_FIELD = {"resolution": 64, "tv_density_weight": 0.001, "tv_sh_weight": 0.001}
FIELD_EXPECTED = {
    ("cpu", "hash"): (CPU_HASH_FIELD, CPU_HASH_FIELD),
    ("cpu", "vm"): ({}, {"upsample_steps": (67, 100, 133, 183, 233)}),
    ("cpu", "grid"): (CPU_GRID_FIELD, CPU_GRID_FIELD),
}
PRESETS = {"cpu": CPU, "full": FULL}
CASES = [(preset, model) for preset in PRESETS for model in MODELS]


@pytest.mark.parametrize("preset, model", CASES)
def test_each_architecture_trains_with_the_values_it_had_under_the_preset(preset, model):
    resolved = dataclasses.asdict(resolve_train_config(model, None, PRESETS[preset]))
    assert resolved == {**TRAIN_FULL_HASH, **TRAIN_EXPECTED[preset, model]}


@pytest.mark.parametrize("preset, model", CASES)
def test_each_student_architecture_distils_with_the_values_it_had_under_the_preset(preset, model):
    resolved = dataclasses.asdict(resolve_distill_config(model, None, PRESETS[preset]))
    assert resolved == {**DISTILL_FULL_HASH, **DISTILL_EXPECTED[preset, model]}


@pytest.mark.parametrize("preset, model", CASES)
def test_each_field_is_built_with_the_options_it_had_under_the_preset(preset, model):
    chosen = PRESETS[preset]
    trained, distilled = FIELD_EXPECTED.get((preset, model), ({}, {}))
    steps = resolve_distill_config(model, None, chosen).steps
    assert dataclasses.asdict(make_config(model, chosen.field_options(model))) == {**FIELD_DEFAULTS[model], **trained}
    student = make_config(model, chosen.field_options(model, distill_steps=steps))
    assert dataclasses.asdict(student) == {**FIELD_DEFAULTS[model], **distilled}


def test_the_users_values_go_on_top_of_the_preset_which_goes_on_top_of_the_library():
    # The grid's 16384 rays (its per-architecture value) give way to the cpu preset's 1024, and
    # those to the user's; a partial marching dict changes only what it names.
    assert resolve_train_config("grid", None, FULL).batch_rays == 16384
    assert resolve_train_config("grid", None, CPU).batch_rays == 1024
    chosen = resolve_train_config("grid", {"batch_rays": 2048, "lr": None, "marching": {"cone_angle": 0.01}}, CPU)
    assert (chosen.batch_rays, chosen.lr) == (2048, 0.1)
    assert (chosen.marching.steps_across_box, chosen.marching.cone_angle) == (256, 0.01)
    assert resolve_distill_config("mlp", {"batch_rays": 512}, GPU).batch_rays == 512
    assert resolve_distill_config("mlp", None, GPU).batch_rays == 8192
    assert resolve_distill_config("hash", None, "gpu").steps == 1000


def test_a_vm_students_upsampling_is_scaled_to_a_short_distillation():
    assert vm_student_options(30_000) == {}
    assert vm_student_options(3_000) == {"upsample_steps": (200, 300, 400, 550, 700)}
    short = vm_student_options(20)["upsample_steps"]
    assert list(short) == sorted(set(short)) and short[0] >= 1 and short[-1] < 20
    TensoRFConfig(upsample_steps=short)  # a valid schedule
    # The user's field options win over the scaled schedule; training keeps TensoRF's.
    assert CPU.with_overrides(fields={"vm": {"upsample_steps": [5]}}).field_options("vm", 100) == {"upsample_steps": [5]}
    assert FULL.field_options("vm") == {} and FULL.field_options("hash", distill_steps=100) == {}


def test_the_settings_lines_show_the_preset_and_what_the_user_changed():
    lines = settings_lines(CPU, trained="grid", train={"steps": 50, "lr": None}, fields={"grid": {"resolution": 32}})
    assert lines[0] == f"preset cpu: {CPU.summary}"
    assert "training a grid field: lr=0.1, batch_rays=1024, steps=2000" in lines[1]
    assert "grid field: resolution=64" in lines[2]
    assert lines[-1] == "  your changes: training steps=50; grid field resolution=32"
    student = settings_lines(FULL, student="vm", distill={"steps": 3000})
    assert "distilling into a vm student: steps=30000, batch_rays=4096, lr=0.02" in student[1]
    # The vm student's upsampling follows the run's length, the user's steps included.
    assert "upsample_steps=(200, 300, 400, 550, 700)" in student[2]
    assert settings_lines(FULL, trained="hash")[-1] == "  your changes: none"


def test_training_and_distillation_share_the_loop_options_without_declaring_them_again():
    loop = {f.name for f in dataclasses.fields(LoopConfig)}
    assert {"steps", "batch_rays", "lr", "ema_decay", "seed", "marching", "snapshot_times_s"} <= loop
    for config in (TrainConfig, DistillConfig):
        assert issubclass(config, LoopConfig)
        assert not loop & set(config.__dict__.get("__annotations__", {}))
    with pytest.raises(ConfigError, match="ema_decay"):
        DistillConfig(ema_decay=1.0).validate()
    with pytest.raises(ConfigError, match="grid_decay"):
        TrainConfig(grid_decay=1.0).validate()


def test_a_stored_config_drops_removed_options_and_refuses_unknown_ones():
    stored = {**dataclasses.asdict(TrainConfig(steps=7)), "pixel_jitter": True, "error_guided_share": 0.5,
              "error_tiles": 16, "opacity_entropy_weight": 0.0}
    assert TrainConfig.from_dict(stored) == TrainConfig(steps=7)
    assert DistillConfig.from_dict({"skip_occluded": True, "virtual_cameras_per_block": True}) == DistillConfig()
    assert {"pixel_jitter", "error_guided_share", "skip_occluded"} <= REMOVED_OPTIONS
    with pytest.raises(ConfigError, match="unknown distillation option"):
        DistillConfig.from_dict({"bogus": 1})
    with pytest.raises(ConfigError, match="unknown training option.*pixel_jitter"):
        resolve_train_config("hash", {"pixel_jitter": True})
