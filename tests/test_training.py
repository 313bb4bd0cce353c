"""The hash-grid teacher trains on the demo scene, and a checkpoint reloads to identical pixels."""

import math

import pytest
import torch

from taichi_pvd.data import load_scene, write_demo_scene
from taichi_pvd.data.error_map import UNSEEN_ERROR
from taichi_pvd.errors import ConfigError
from taichi_pvd.fields import make_field
from taichi_pvd.io.checkpoint import load_checkpoint
from taichi_pvd.io.runs import SNAPSHOTS_DIR, checkpoint_path, load_run
from taichi_pvd.rendering.volume import render_rays_chunked
from taichi_pvd.data import image_rays
from taichi_pvd.training.api import resolve_train_config
from taichi_pvd.training.loop import cosine_lr_factor
from taichi_pvd.training.trainer import Trainer, opacity_entropy

HASH = {"log2_table_size": 12, "n_levels": 6, "finest_resolution": 128}
SETTINGS = {"batch_rays": 512, "grid_resolution": 32, "grid_warmup_steps": 64, "val_every": 0,
            "checkpoint_every": 0, "marching": {"steps_across_box": 128}}


@pytest.fixture(scope="module")
def demo_scene(tmp_path_factory):
    root = write_demo_scene(tmp_path_factory.mktemp("demo"), size=32, n_train=12, n_val=2, n_test=2)
    return load_scene(root, "train"), load_scene(root, "val", background=(1.0, 1.0, 1.0))


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


def test_error_guided_training_raises_validation_psnr_and_maps_every_tile(demo_scene, tmp_path):
    train_scene, val_scene = demo_scene
    field = make_field("hash", train_scene.aabb, HASH, generator=torch.Generator().manual_seed(0))
    config = resolve_train_config("hash", {**SETTINGS, "steps": 250, "error_guided_share": 0.5, "error_tiles": 4})
    trainer = Trainer(field, train_scene, val_scene, config, tmp_path)
    before = trainer.validate()
    after = trainer.run()["val_psnr_db"]
    assert after > before + 8.0, (before, after)
    errors = trainer.error_map.errors
    assert errors.shape == (len(train_scene) * 4 * 4,)
    # Every tile was visited (none keeps the unseen value) and holds a squared colour error.
    assert bool((errors < UNSEEN_ERROR).all()) and bool((errors >= 0).all())


def test_checkpoint_round_trip_renders_identical_pixels(demo_scene, tmp_path):
    trainer = make_trainer(demo_scene, tmp_path, steps=20)
    trainer.run()
    run = load_run(tmp_path)
    val_scene = demo_scene[1]
    origins, directions = image_rays(val_scene, 0)
    white = torch.ones(3)

    def render(field, grid):
        return render_rays_chunked(lambda x, d: field(x, d), grid, origins, directions, near=val_scene.near,
                                   far=val_scene.far, background=white, config=trainer.config.marching)[0]

    assert torch.equal(render(trainer.field, trainer.grid), render(run.field, run.grid))
    assert torch.equal(trainer.grid.bitfield, run.grid.bitfield)


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


def test_opacity_entropy_is_zero_for_clear_and_opaque_rays_and_pushes_others_to_either():
    o = torch.tensor([0.0, 1.0, math.exp(-1.0)], dtype=torch.float64)
    assert opacity_entropy(o[:2]).item() == pytest.approx(0.0, abs=1e-8)
    assert opacity_entropy(o[2:]).item() == pytest.approx(math.exp(-1.0))
    faint, dense = torch.tensor([0.1], requires_grad=True), torch.tensor([0.9], requires_grad=True)
    opacity_entropy(faint).backward()
    opacity_entropy(dense).backward()
    assert faint.grad.item() > 0 > dense.grad.item()  # descent clears faint rays and fills dense ones


def _mean_opacity_entropy_after_training(demo_scene, out_dir, **options) -> float:
    train_scene, val_scene = demo_scene
    field = make_field("hash", train_scene.aabb, HASH, generator=torch.Generator().manual_seed(0))
    config = resolve_train_config("hash", {**SETTINGS, "steps": 60, **options})
    trainer = Trainer(field, train_scene, val_scene, config, out_dir)
    trainer.run()
    origins, directions = image_rays(train_scene, 0)
    with torch.no_grad():
        _, _, opacity = render_rays_chunked(trainer.field_fn, trainer.grid, origins, directions,
                                            near=train_scene.near, far=train_scene.far,
                                            background=torch.ones(3), config=config.marching)
    return opacity_entropy(opacity).item()


def test_the_opacity_entropy_weight_makes_rendered_rays_more_decided(demo_scene, tmp_path):
    plain = _mean_opacity_entropy_after_training(demo_scene, tmp_path / "plain")
    decided = _mean_opacity_entropy_after_training(demo_scene, tmp_path / "decided", opacity_entropy_weight=0.1)
    assert decided < 0.7 * plain


def test_adam_beta2_reaches_the_optimizer_and_bad_loop_values_are_refused(demo_scene, tmp_path):
    train_scene, val_scene = demo_scene
    field = make_field("hash", train_scene.aabb, HASH, generator=torch.Generator().manual_seed(0))
    trainer = Trainer(field, train_scene, val_scene,
                      resolve_train_config("hash", {**SETTINGS, "adam_beta2": 0.999}), tmp_path)
    assert all(g["betas"] == (0.9, 0.999) for g in trainer.optimizer.param_groups)
    for bad in ({"adam_beta2": 1.0}, {"opacity_entropy_weight": -1e-3}, {"ema_decay": 1.0}, {"ema_decay": -0.5}):
        with pytest.raises(ConfigError):
            resolve_train_config("hash", bad).validate()


@pytest.mark.parametrize("jitter", [False, True])
def test_pixel_jitter_moves_training_rays_off_the_pixel_centres(demo_scene, tmp_path, jitter):
    train_scene, _ = demo_scene
    field = make_field("hash", train_scene.aabb, HASH, generator=torch.Generator().manual_seed(0))
    config = resolve_train_config("hash", {**SETTINGS, "steps": 1, "pixel_jitter": jitter})
    fraction = Trainer(field, train_scene, None, config, tmp_path).sampler.sample().pixel % 1.0
    assert bool((fraction != 0.5).any()) == jitter


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
        assert float(lr) == pytest.approx(g["initial_lr"] * cosine_lr_factor(50, 100, trainer.settings.lr_final_ratio,
                                                                      trainer.settings.lr_warmup_steps))
    trainer.save()
    groups = load_checkpoint(checkpoint_path(tmp_path)).meta["optimizer_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([float(lr) for lr in rates])
