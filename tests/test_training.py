"""The hash-grid teacher trains on the demo scene, and a checkpoint reloads to identical pixels."""

import pytest
import torch

from taichi_pvd.data import load_scene, write_demo_scene
from taichi_pvd.errors import ConfigError
from taichi_pvd.fields import make_field
from taichi_pvd.distill.api import distill
from taichi_pvd.io.checkpoint import load_checkpoint, save_checkpoint
from taichi_pvd.io.runs import SNAPSHOTS_DIR, checkpoint_path, load_run
from taichi_pvd.training.api import resolve_train_config, train
from taichi_pvd.training.loop import cosine_lr_factor
from taichi_pvd.training.trainer import Trainer

HASH = {"log2_table_size": 12, "n_levels": 6, "finest_resolution": 128}
SETTINGS = {"batch_rays": 512, "grid_resolution": 32, "grid_warmup_steps": 64, "val_every": 0,
            "checkpoint_every": 0, "marching": {"steps_across_box": 128}}


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return write_demo_scene(tmp_path_factory.mktemp("demo"), size=32, n_train=12, n_val=2, n_test=2)


@pytest.fixture(scope="module")
def demo_scene(scene_dir):
    return load_scene(scene_dir, "train"), load_scene(scene_dir, "val", background=(1.0, 1.0, 1.0))


def make_trainer(demo_scene, out_dir, steps: int) -> Trainer:
    train_scene, val_scene = demo_scene
    field = make_field("hash", train_scene.aabb, HASH, generator=torch.Generator().manual_seed(0))
    return Trainer(field, train_scene, val_scene, resolve_train_config("hash", {**SETTINGS, "steps": steps}), out_dir)


def test_hash_training_raises_validation_psnr_far_beyond_a_frozen_encoding(demo_scene, tmp_path):
    trainer = make_trainer(demo_scene, tmp_path / "full", steps=250)
    before = trainer.validate()
    after = trainer.run()["val_psnr_db"]
    # The same run with the hash table frozen (only the MLPs learn, as if the encoding's
    # gradient were broken) must end clearly lower.
    frozen = make_trainer(demo_scene, tmp_path / "frozen", steps=250)
    frozen.field.table.requires_grad_(False)
    frozen.build_optimizer()
    frozen_after = frozen.run()["val_psnr_db"]
    assert after > before + 8.0, (before, after)
    assert after > frozen_after + 4.0, (after, frozen_after)


def test_snapshots_keep_the_checkpoint_of_the_moment_their_time_was_reached(demo_scene, tmp_path):
    train_scene, val_scene = demo_scene
    field = make_field("hash", train_scene.aabb, HASH, generator=torch.Generator().manual_seed(0))
    config = resolve_train_config("hash", {**SETTINGS, "steps": 12, "snapshot_times_s": [1e-9, 1e6]})
    Trainer(field, train_scene, val_scene, config, tmp_path).run()
    early = load_checkpoint(checkpoint_path(tmp_path / SNAPSHOTS_DIR / "1e-09s"), expected_kind="run")
    assert early.meta["step"] == 1
    assert load_checkpoint(checkpoint_path(tmp_path), expected_kind="run").meta["step"] == 12
    assert not (tmp_path / SNAPSHOTS_DIR / "1e+06s").exists()
    snapshot = load_run(tmp_path / SNAPSHOTS_DIR / "1e-09s")
    assert not torch.equal(snapshot.field.table, load_run(tmp_path).field.table)


def test_an_architectures_training_defaults_sit_between_the_library_and_the_user():
    hash_config, grid_config = resolve_train_config("hash"), resolve_train_config("grid")
    assert (hash_config.batch_rays, hash_config.lr) == (8192, 1e-2)
    assert (grid_config.batch_rays, grid_config.lr) == (16384, 1e-1)
    chosen = resolve_train_config("grid", {"batch_rays": 2048, "lr": None})
    assert (chosen.batch_rays, chosen.lr) == (2048, 1e-1)
    assert resolve_train_config("mlp").mixed_precision and not hash_config.mixed_precision
    assert not resolve_train_config("mlp", {"mixed_precision": False}).mixed_precision


def test_autocast_is_ignored_on_the_cpu(demo_scene, tmp_path):
    train_scene, _ = demo_scene
    losses = []
    for mixed in (True, False):
        torch.manual_seed(0)  # the mlp's layers draw their weights from the global generator
        field = make_field("mlp", train_scene.aabb, {"frequencies": 4, "depth": 3, "width": 32, "skip_index": 1})
        config = resolve_train_config("mlp", {**SETTINGS, "steps": 5, "mixed_precision": mixed})
        trainer = Trainer(field, train_scene, None, config, tmp_path / str(mixed))
        assert not trainer.amp
        losses.append([float(trainer.optimizer_step()[0]) for _ in range(5)])
    assert losses[0] == losses[1]


def test_adam_beta2_reaches_the_optimizer_and_bad_loop_values_are_refused(demo_scene, tmp_path):
    train_scene, val_scene = demo_scene
    field = make_field("hash", train_scene.aabb, HASH, generator=torch.Generator().manual_seed(0))
    trainer = Trainer(field, train_scene, val_scene,
                      resolve_train_config("hash", {**SETTINGS, "adam_beta2": 0.999}), tmp_path)
    assert all(g["betas"] == (0.9, 0.999) for g in trainer.optimizer.param_groups)
    for bad in ({"adam_beta2": 1.0}, {"ema_decay": 1.0}, {"ema_decay": -0.5}):
        with pytest.raises(ConfigError):
            resolve_train_config("hash", bad).validate()


def test_learning_rates_prepared_for_graph_capture_follow_the_schedule_and_are_saved_as_values(demo_scene, tmp_path):
    trainer = make_trainer(demo_scene, tmp_path, steps=100)
    trainer.make_optimizer_capturable()
    rates = [g["lr"] for g in trainer.optimizer.param_groups]
    assert all(isinstance(lr, torch.Tensor) and g["capturable"] for lr, g in zip(rates, trainer.optimizer.param_groups))
    trainer.step = 50
    trainer._set_lr()
    # Updated in place (a captured step reads these very tensors), to the schedule's value.
    for lr, g in zip(rates, trainer.optimizer.param_groups):
        assert g["lr"] is lr
        assert float(lr) == pytest.approx(g["initial_lr"] * cosine_lr_factor(50, 100, trainer.config.lr_final_ratio,
                                                                      trainer.config.lr_warmup_steps))
    trainer.save()
    groups = load_checkpoint(checkpoint_path(tmp_path)).meta["optimizer_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([float(lr) for lr in rates])


def test_a_checkpoint_holding_removed_options_still_loads_resumes_and_teaches(scene_dir, tmp_path):
    """A run written by an earlier version, whose config holds options this one removed and
    whose tensors hold their state (the error map), loads, resumes and teaches a student."""
    run = tmp_path / "old"
    tiny = {**SETTINGS, "steps": 4, "grid_update_every": 2}
    train(data=scene_dir, model="hash", out=run, field_overrides=HASH, train_overrides=tiny)
    ckpt = load_checkpoint(checkpoint_path(run))
    old_config = {**ckpt.config, "train": {**ckpt.config["train"], "pixel_jitter": True, "error_guided_share": 0.5,
                                           "error_tiles": 16, "opacity_entropy_weight": 1e-3}}
    old_tensors = {**ckpt.tensors, "loop.error_map": torch.rand(12 * 16 * 16)}
    save_checkpoint(checkpoint_path(run), kind="run", config=old_config, tensors=old_tensors, meta=ckpt.meta)
    assert load_run(run).model == "hash"
    student = distill(source="hash", target="grid", teacher=run, out=tmp_path / "student",
                      student_overrides={"resolution": 16},
                      distill_overrides={"steps": 2, "batch_rays": 64, "val_every": 0, "checkpoint_every": 0,
                                         "virtual_cameras": 8, "val_views": 1, "val_size": 8})
    assert student["steps"] == 2
    resumed = train(data=scene_dir, model="hash", out=run, field_overrides=HASH,
                    train_overrides={**tiny, "steps": 6}, resume=True)
    assert resumed["steps"] == 6
    assert "loop.error_map" not in load_checkpoint(checkpoint_path(run)).tensors
