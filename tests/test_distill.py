"""Progressive Volume Distillation on a tiny demo scene: students approach their teachers, the
stages run only what they should, and raw densities are clipped where they are compared."""

import math

import pytest
import torch

import taichi_pvd.distill.distiller as distiller_module
from taichi_pvd.data import load_scene, write_demo_scene
from taichi_pvd.data.camera_rig import CameraRig
from taichi_pvd.distill.api import resolve_distill_config
from taichi_pvd.distill.distiller import Distiller
from taichi_pvd.distill.virtual_rays import sample_virtual_rays
from taichi_pvd.errors import ConfigError
from taichi_pvd.fields import make_field
from taichi_pvd.io.runs import read_history
from taichi_pvd.metrics import psnr
from taichi_pvd.training.api import resolve_train_config
from taichi_pvd.training.trainer import Trainer

FIELDS = {
    "hash": {"log2_table_size": 12, "n_levels": 6, "finest_resolution": 128},
    "grid": {"resolution": 32},
    "mlp": {"frequencies": 6, "depth": 4, "width": 64, "skip_index": 1},
    "vm": {"density_rank": 8, "appearance_rank": 16, "resolution_init": 32, "resolution_final": 32,
           "upsample_steps": ()},
}
TRAIN = {"batch_rays": 512, "grid_resolution": 32, "grid_warmup_steps": 64, "val_every": 0, "checkpoint_every": 0,
         "marching": {"steps_across_box": 128}}
DISTILL = {"batch_rays": 512, "val_every": 0, "checkpoint_every": 0, "val_views": 2, "val_size": 24,
           "virtual_cameras": 40, "marching": {"steps_across_box": 128}}


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = write_demo_scene(tmp_path_factory.mktemp("demo"), size=32, n_train=12, n_val=2, n_test=2)
    return load_scene(root, "train")


@pytest.fixture(scope="module")
def teachers(scene, tmp_path_factory):
    """hash, grid and mlp teachers trained for a few hundred steps."""
    out = {}
    for kind, steps in (("hash", 200), ("grid", 200), ("mlp", 200)):
        field = make_field(kind, scene.aabb, FIELDS[kind], generator=torch.Generator().manual_seed(0))
        trainer = Trainer(field, scene, None, resolve_train_config(kind, {**TRAIN, "steps": steps}),
                          tmp_path_factory.mktemp(f"teacher-{kind}"))
        trainer.run()
        out[kind] = trainer
    return out


def make_distiller(teachers, scene, source, target, out_dir, **overrides) -> Distiller:
    teacher = teachers[source]
    student = make_field(target, scene.aabb, FIELDS[target], generator=torch.Generator().manual_seed(1))
    config = resolve_distill_config(target, {**DISTILL, **overrides})
    return Distiller(teacher.field, teacher.grid, student, CameraRig.from_scene(scene), config, out_dir,
                     torch.device("cpu"))


@pytest.mark.parametrize("source,target", [("hash", "grid"), ("grid", "hash"), ("mlp", "vm")])
def test_distillation_cuts_the_students_error_against_its_teacher(teachers, scene, tmp_path, source, target):
    distiller = make_distiller(teachers, scene, source, target, tmp_path, steps=300)
    before = distiller.validate()
    after = distiller.run()["student_vs_teacher_psnr_db"]
    # 10 dB = the mean squared error against the teacher's renderings falls tenfold.
    assert after > before + 10.0, (before, after)


def test_a_validation_callback_adds_its_figures_to_every_validation_record(teachers, scene, tmp_path):
    distiller = make_distiller(teachers, scene, "hash", "grid", tmp_path, steps=4, val_every=2)

    def on_validate(loop):
        image = loop.render_view(scene, 0)
        assert image.shape == (scene.height, scene.width, 3)
        return {"ground_truth_psnr_db": psnr(image, scene.images[0]), "at_step": loop.step}

    distiller.run(on_validate=on_validate)
    history = read_history(tmp_path)
    assert [record["at_step"] for record in history] == [2, 4]
    assert all(math.isfinite(record["ground_truth_psnr_db"]) for record in history)


class CallCounter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_stage_one_runs_neither_colour_head_nor_compositor(teachers, scene, tmp_path, monkeypatch):
    distiller = make_distiller(teachers, scene, "hash", "mlp", tmp_path, steps=9, stage1_steps=3, stage2_steps=3)
    compositor = CallCounter(distiller_module.composite_slots)
    monkeypatch.setattr(distiller_module, "composite_slots", compositor)
    teacher_colour = CallCounter(distiller.teacher.colour)
    student_colour = CallCounter(distiller.field.colour_from_encoding)
    monkeypatch.setattr(distiller.teacher, "colour", teacher_colour)
    monkeypatch.setattr(distiller.field, "colour_from_encoding", student_colour)
    seen = []
    for _ in range(9):
        stage = distiller.stage()
        _, _, parts = distiller.optimizer_step()
        seen.append((stage, compositor.calls, teacher_colour.calls, student_colour.calls, sorted(parts)))
    assert [s[0] for s in seen] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    # Stage 1: features only, on either side.
    assert all(s[1:4] == (0, 0, 0) and s[4] == ["feature"] for s in seen[:3])
    # Stage 2: both colours at every step (the teacher's once for the stage's block), no compositing.
    assert seen[5][1:4] == (0, 1, 3) and seen[5][4] == ["colour", "density", "feature"]
    # Stage 3: the teacher's rays composited once for the block, the student's every step.
    assert seen[-1][1:4] == (1 + 3, 2, 6) and "rgb" in seen[-1][4]


def test_under_a_time_limit_the_stages_follow_the_clock(teachers, scene, tmp_path):
    """A run of many steps that its time limit ends early still reaches every stage, at the
    paper's shares of the time (10% and 16.7%), and its label blocks start where stages begin."""
    distiller = make_distiller(teachers, scene, "hash", "mlp", tmp_path, steps=100_000, time_limit_s=10.0,
                               label_block_steps=4)
    seen = []
    for step, seconds in enumerate([0.0, 0.5, 0.9, 1.1, 1.5, 2.0, 2.6, 2.8, 9.0]):
        distiller.train_seconds = seconds
        stage = distiller.stage()
        distiller.optimizer_step()
        seen.append((stage, distiller.block_start))
        distiller.train_seconds = 0.0
        assert distiller.stage() == stage, "a stage once begun is kept"
    assert [s for s, _ in seen] == [1, 1, 1, 2, 2, 2, 2, 3, 3]
    assert distiller.stage_begins == [0, 3, 7]
    assert [b for _, b in seen] == [0, 0, 0, 3, 3, 3, 3, 7, 7]
    resumed = make_distiller(teachers, scene, "hash", "mlp", tmp_path / "resumed", steps=100_000, time_limit_s=10.0)
    resumed.load_extra_state(distiller.extra_state())
    resumed.step = distiller.step
    assert resumed.stage() == 3 and resumed.stage_begins == [0, 3, 7]


def constant_density_grid(scene, raw: float):
    field = make_field("grid", scene.aabb, {"resolution": 8})
    with torch.no_grad():
        field.grid[..., 0] = raw
    return field


@pytest.mark.parametrize("clip,expected", [(True, 0.0), (False, 10.0**2)])
def test_raw_densities_are_compared_after_clipping(teachers, scene, tmp_path, clip, expected):
    distiller = make_distiller(teachers, scene, "grid", "grid", tmp_path, steps=4, stage1_steps=0, stage2_steps=4,
                               density_clip=clip)
    distiller.teacher = constant_density_grid(scene, 20.0)
    distiller.field = constant_density_grid(scene, 10.0)
    _, _, parts = distiller.optimizer_step()
    # Both raw densities lie above the clip's upper end (7): clipped, they agree.
    assert float(parts["density"]) == pytest.approx(expected)


def test_student_sees_only_the_samples_in_front_of_the_teachers_surfaces(teachers, scene, tmp_path):
    distiller = make_distiller(teachers, scene, "grid", "grid", tmp_path, steps=4, stage1_steps=0, stage2_steps=0)
    # An opaque teacher: each ray's first sample takes all of its transmittance.
    distiller.teacher = constant_density_grid(scene, 20.0)
    distiller.field = constant_density_grid(scene, 0.0)
    seen = {}

    def recording(name, features):
        def wrapped(x):
            seen[name] = x.shape[0]
            return features(x)
        return wrapped

    distiller.teacher.features = recording("teacher", distiller.teacher.features)
    distiller.field.features = recording("student", distiller.field.features)
    _, samples_per_ray, parts = distiller.optimizer_step()
    # One teacher pass labels the block's four steps; each step takes a chunk of a quarter of it.
    assert seen["teacher"] > 4 * 2 * distiller.config.batch_rays
    assert 0 < seen["student"] <= distiller.config.batch_rays
    assert samples_per_ray == 1.0
    assert "rgb" in parts


def test_label_rays_can_be_sampled_coarser_than_the_rendering(teachers, scene, tmp_path, monkeypatch):
    labelled = []
    march = distiller_module.march

    def counting(*args, **kwargs):
        samples = march(*args, **kwargs)
        labelled.append(samples.n_samples)
        return samples

    monkeypatch.setattr(distiller_module, "march", counting)
    for scale in (1.0, 2.0):
        distiller = make_distiller(teachers, scene, "hash", "mlp", tmp_path / f"spacing-{scale}", steps=4,
                                   stage1_steps=0, stage2_steps=0, label_spacing_scale=scale)
        distiller.optimizer_step()
        # Validation renders at the rendering's spacing whatever the labels'.
        assert distiller.config.marching.steps_across_box == DISTILL["marching"]["steps_across_box"]
    # Twice the spacing: half the samples marched for the teacher's labels on the block's (same)
    # rays.
    assert labelled[1] == pytest.approx(labelled[0] / 2, rel=0.1)
    with pytest.raises(ConfigError, match="label_spacing_scale"):
        resolve_distill_config("mlp", {"label_spacing_scale": 0.0}).validate()


def test_rays_come_from_cameras_drawn_afresh_for_each_label_block(teachers, scene, tmp_path, monkeypatch):
    distiller = make_distiller(teachers, scene, "hash", "mlp", tmp_path, steps=4, stage1_steps=0, stage2_steps=0,
                               label_block_steps=2)
    used = []

    def recording(cameras, *args):
        used.append(cameras)
        return sample_virtual_rays(cameras, *args)

    monkeypatch.setattr(distiller_module, "sample_virtual_rays", recording)
    for _ in range(4):
        distiller.optimizer_step()
    assert len(used) == 2 and all(c.shape == (distiller.config.virtual_cameras, 3, 4) for c in used)
    assert not torch.equal(used[0], used[1])


def test_the_teachers_colour_head_is_copied_only_where_the_heads_match(teachers, scene, tmp_path):
    distiller = make_distiller(teachers, scene, "hash", "mlp", tmp_path / "mlp", steps=2, init_head_from_teacher=True)
    teacher_head = teachers["hash"].field.head.state_dict()
    student_head = distiller.field.head.state_dict()
    assert teacher_head.keys() == student_head.keys()
    assert all(torch.equal(teacher_head[k], student_head[k]) for k in teacher_head)
    # Copied values, not shared tensors: the student's training leaves the teacher alone.
    assert all(teacher_head[k].data_ptr() != student_head[k].data_ptr() for k in teacher_head)
    with pytest.raises(ConfigError, match="init_head_from_teacher"):
        make_distiller(teachers, scene, "hash", "grid", tmp_path / "grid", steps=2, init_head_from_teacher=True)


def test_a_student_architecture_brings_its_distillation_defaults_and_options_override_them():
    mlp = resolve_distill_config("mlp", {})
    assert (mlp.batch_rays, mlp.label_block_steps, mlp.ema_decay, mlp.lr) == (8192, 32, 0.99, 2e-3)
    assert (mlp.label_spacing_scale, resolve_distill_config("hash", {}).label_spacing_scale) == (2.0, 1.0)
    assert (mlp.feature_weight, mlp.density_weight, mlp.colour_weight) == (4e-4, 4e-4, 4e-4)
    assert mlp.mixed_precision and not resolve_distill_config("mlp", {"mixed_precision": False}).mixed_precision
    assert resolve_distill_config("mlp", {"lr": 1e-3, "density_weight": 2e-3}).lr == 1e-3
    assert resolve_distill_config("mlp", {"density_weight": 2e-3}).density_weight == 2e-3
    assert resolve_distill_config("mlp", {"batch_rays": 1024, "ema_decay": None}).batch_rays == 1024
    assert resolve_distill_config("mlp", {"ema_decay": None}).ema_decay == 0.99
    hash_student = resolve_distill_config("hash", {})
    assert (hash_student.batch_rays, hash_student.ema_decay) == (4096, 0.0)
    assert (hash_student.feature_weight, hash_student.lr) == (2e-3, 1e-2)
    assert not hash_student.mixed_precision


def test_a_teacher_whose_occupancy_grid_is_still_bare_gets_a_hint(teachers, scene, tmp_path):
    assert make_distiller(teachers, scene, "hash", "grid", tmp_path / "trained", steps=2).hints() == []
    distiller = make_distiller(teachers, scene, "hash", "grid", tmp_path / "bare", steps=2)
    distiller.grid.mark_all_occupied()
    (hint,) = distiller.hints()
    assert "100%" in hint.finding and "train the teacher longer" in hint.finding
    assert (hint.option, hint.kind, hint.value) == ("batch_rays", "distillation", None)
    assert str(hint).endswith("lower the distillation option batch_rays")
