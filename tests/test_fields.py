"""The vm, mlp and grid fields: the two-level interface, gradients, regularisers, the vm upsampling
schedule and reloading, the mlp's architecture, the grid's SH colour layout."""

from __future__ import annotations

import math

import pytest
import torch

from taichi_pvd.errors import CheckpointError, ConfigError
from taichi_pvd.fields import make_config, make_field
from taichi_pvd.fields.base import RAW_DENSITY_MAX, density_from_raw
from taichi_pvd.fields.mlp import encoding_dim, positional_encoding
from taichi_pvd.fields.vm import upsample_resolutions
from taichi_pvd.kernels.grid_interpolation import grid_interpolate_reference
from taichi_pvd.kernels.sh_encoding import sh_encode_reference
from taichi_pvd.kernels.vm_interpolation import vm_interpolate_reference

AABB = torch.tensor([[-1.0, -2.0, -1.5], [1.0, 2.0, 1.5]])

#: Small configs (fast on the CPU) of each architecture.
SMALL = {
    "vm": {"density_rank": 4, "appearance_rank": 6, "resolution_init": 8, "resolution_final": 16,
           "upsample_steps": (3, 7)},
    "mlp": {"frequencies": 4, "depth": 4, "width": 32, "skip_index": 1},
    "grid": {"resolution": 8, "tv_samples": 64},
}


def small_field(kind: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return make_field(kind, AABB, {**SMALL[kind], **overrides}, generator=torch.Generator().manual_seed(seed))


def random_inputs(n: int = 200, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = AABB[0] + torch.rand(n, 3, generator=g) * (AABB[1] - AABB[0])
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    return x, d


def unit(x: torch.Tensor) -> torch.Tensor:
    return ((x - AABB[0]) / (AABB[1] - AABB[0])).double()


def randomise_grid(field, seed: int = 2) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        field.grid.copy_(torch.randn(field.grid.shape, generator=g))


# -- the common interface -------------------------------------------------------------------------

@pytest.mark.parametrize("kind,dim", [("vm", 16), ("mlp", 16), ("grid", 28)])
def test_features_have_the_architecture_width_and_colour_lies_in_unit_range(kind, dim):
    field = small_field(kind)
    if kind == "grid":
        randomise_grid(field)
    x, d = random_inputs()
    feats = field.features(x)
    rgb = field.colour(feats, d)
    assert feats.shape == (200, dim) and feats.dtype == torch.float32
    assert rgb.shape == (200, 3) and rgb.dtype == torch.float32
    assert bool(((rgb >= 0) & (rgb <= 1)).all())
    assert float(rgb.detach().std()) > 0


@pytest.mark.parametrize("kind", ["vm", "mlp", "grid"])
def test_forward_density_is_exp_of_feature_column_zero(kind):
    field = small_field(kind)
    x, d = random_inputs()
    sigma, rgb = field(x, d)
    feats = field.features(x)
    torch.testing.assert_close(sigma, torch.exp(feats[:, 0]))
    torch.testing.assert_close(rgb, field.colour(feats, d))
    torch.testing.assert_close(field.density(x), sigma)


@pytest.mark.parametrize("kind", ["vm", "mlp", "grid"])
def test_gradient_reaches_every_parameter_group(kind):
    field = small_field(kind)
    if kind == "grid":
        randomise_grid(field)
    x, d = random_inputs()
    sigma, rgb = field(x, d)
    target = torch.rand(rgb.shape, generator=torch.Generator().manual_seed(3))
    loss = ((rgb - target) ** 2).mean() + (sigma * 1e-3).mean() + field.regularization()
    loss.backward()
    groups = field.param_groups(1e-2)
    grouped = [p for g in groups for p in g["params"]]
    assert sorted(map(id, grouped)) == sorted(map(id, field.parameters()))
    for group in groups:
        for p in group["params"]:
            assert p.grad is not None
            assert bool(torch.isfinite(p.grad).all())
            assert float(p.grad.abs().max()) > 0


@pytest.mark.parametrize("kind", ["vm", "mlp", "grid"])
def test_state_dict_reloads_into_a_fresh_field(kind):
    field = small_field(kind, seed=0)
    other = small_field(kind, seed=5)
    x, d = random_inputs()
    other.load_tensors(field.state_dict())
    torch.testing.assert_close(other.features(x), field.features(x))


# -- vm -------------------------------------------------------------------------------------------

def test_vm_raw_density_is_the_sum_of_density_products_plus_shift():
    field = small_field("vm", density_shift=-3.0)
    x, _ = random_inputs()
    products = vm_interpolate_reference(unit(x), field.density_planes.double(), field.density_lines.double())
    expected = products.sum(dim=1) - 3.0
    torch.testing.assert_close(field.features(x)[:, 0].double(), expected, rtol=1e-5, atol=1e-5)


def test_vm_geometry_features_are_a_bias_free_basis_of_appearance_products():
    field = small_field("vm")
    x, _ = random_inputs()
    products = vm_interpolate_reference(unit(x), field.appearance_planes.double(), field.appearance_lines.double())
    expected = products @ field.basis.weight.double().T
    assert field.basis.bias is None
    torch.testing.assert_close(field.features(x)[:, 1:].double(), expected, rtol=1e-5, atol=1e-5)


def test_vm_upsample_resolutions_grow_geometrically_to_the_final_resolution():
    config = make_config("vm", {"resolution_init": 128, "resolution_final": 300})
    assert upsample_resolutions(config) == [152, 180, 213, 253, 300]


def test_vm_update_schedule_replaces_parameters_exactly_at_the_schedule_steps():
    field = small_field("vm", upsample_steps=(3, 7), resolution_init=8, resolution_final=18)
    replaced = [step for step in range(12) if field.update_schedule(step)]
    assert replaced == [3, 7]
    assert field.resolution == 18
    assert field.density_planes.shape == (3, 18, 18, 4) and field.appearance_lines.shape == (3, 18, 6)
    assert not field.update_schedule(7)


def test_vm_upsampling_keeps_the_function_where_new_grid_points_land_on_old_ones():
    field = small_field("vm", resolution_init=5, resolution_final=9, upsample_steps=(10,))
    x, d = random_inputs(300)
    before_f, before_rgb = field.features(x), field.colour(field.features(x), d)
    assert field.update_schedule(10) and field.resolution == 9
    after_f = field.features(x)
    torch.testing.assert_close(after_f, before_f, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(field.colour(after_f, d), before_rgb, rtol=1e-4, atol=1e-5)


def test_vm_upsampling_a_smooth_field_keeps_it_approximately():
    field = small_field("vm", resolution_init=12, resolution_final=17, upsample_steps=(1,))
    with torch.no_grad():
        t = torch.linspace(0, 1, 12)
        smooth = torch.sin(3 * t)[:, None] * torch.cos(2 * t)[None, :]
        field.density_planes.copy_(smooth[None, :, :, None].expand_as(field.density_planes))
        field.density_lines.copy_(torch.cos(2 * t)[None, :, None].expand_as(field.density_lines))
    x, _ = random_inputs(300)
    before = field.features(x)[:, 0].detach()
    assert field.update_schedule(1)
    after = field.features(x)[:, 0].detach()
    assert float((after - before).abs().max()) < 0.02 * float((before - field.config.density_shift).abs().max())


def test_vm_load_tensors_resizes_a_fresh_field_to_an_upsampled_checkpoint():
    field = small_field("vm")
    for step in range(8):
        field.update_schedule(step)
    fresh = small_field("vm", seed=9)
    assert fresh.resolution == 8 and field.resolution == 16
    fresh.load_tensors(field.state_dict())
    assert fresh.resolution == 16
    x, d = random_inputs()
    torch.testing.assert_close(fresh.features(x), field.features(x))
    assert not fresh.update_schedule(7)


def test_vm_load_tensors_refuses_another_rank():
    field = small_field("vm")
    other = small_field("vm", density_rank=5)
    with pytest.raises(CheckpointError, match="density_planes"):
        other.load_tensors(field.state_dict())


def test_vm_regularization_is_l1_of_density_factors_and_differentiable():
    field = small_field("vm", l1_weight=0.5)
    expected = 0.5 * (field.density_planes.abs().mean() + field.density_lines.abs().mean())
    reg = field.regularization()
    torch.testing.assert_close(reg, expected)
    reg.backward()
    assert float(field.density_planes.grad.abs().sum()) > 0 and field.appearance_planes.grad is None


@pytest.mark.parametrize("kind,name", [("vm", "density_shift"), ("vm", "l1_weight"), ("grid", "init_raw_density"),
                                       ("grid", "tv_sh_weight")])
def test_whole_numbers_given_for_real_options_are_accepted_as_floats(kind, name):
    field = make_field(kind, AABB, {**SMALL[kind], name: -3 if "density" in name else 0})
    value = getattr(field.config, name)
    assert isinstance(value, float) and value in (-3.0, 0.0)


def test_vm_networks_train_at_the_configured_fraction_of_the_factor_rate():
    field = small_field("vm", network_lr_ratio=0.05)
    factors, nets = field.param_groups(2e-2)
    assert factors["lr"] == 2e-2 and nets["lr"] == pytest.approx(1e-3)
    assert len(factors["params"]) == 4


def test_vm_config_takes_schedule_steps_from_json_lists_and_rejects_unordered_ones():
    assert make_config("vm", {"upsample_steps": [5, 9]}).upsample_steps == (5, 9)
    with pytest.raises(ConfigError, match="upsample_steps"):
        make_config("vm", {"upsample_steps": [9, 5]})
    with pytest.raises(ConfigError, match="resolution"):
        make_config("vm", {"resolution_init": 64, "resolution_final": 32})


# -- mlp ------------------------------------------------------------------------------------------

def test_positional_encoding_matches_nerf_layout_on_the_centred_cube():
    u = torch.tensor([[0.0, 0.5, 1.0], [0.25, 0.75, 0.6]], dtype=torch.float64)
    enc = positional_encoding(u, 3)
    p = 2 * u - 1
    expected = [p]
    for k in range(3):
        expected += [torch.sin(2**k * p), torch.cos(2**k * p)]
    assert enc.shape == (2, encoding_dim(3)) == (2, 21)
    torch.testing.assert_close(enc, torch.cat(expected, dim=1))


def test_mlp_default_architecture_is_nerf_8x256_with_one_skip():
    field = make_field("mlp", AABB)
    enc, w = 63, 256
    assert encoding_dim(10) == enc
    widths = [layer.in_features for layer in field.layers]
    assert widths == [enc, w, w, w, w, w + enc, w, w]
    trunk = (enc * w + w) + 6 * (w * w + w) + ((w + enc) * w + w) + (w * 16 + 16)
    head = ((16 + 15) * 64 + 64) + (64 * 64 + 64) + (64 * 3 + 3)
    assert field.num_parameters() == trunk + head


def test_mlp_skip_feeds_the_encoding_past_the_skip_layer():
    field = small_field("mlp")
    x, _ = random_inputs(50)
    layer = field.layers[field.config.skip_index + 1]
    with torch.no_grad():
        layer.weight[:, : field.config.width].zero_()
        for later in field.layers[: field.config.skip_index + 1]:
            later.weight.zero_()
            later.bias.zero_()
    # every layer before the skip outputs zero: only the concatenated encoding can vary the output
    feats = field.features(x).detach()
    assert float(feats.std(dim=0).max()) > 1e-4


def test_mlp_config_rejects_a_skip_outside_the_trunk():
    with pytest.raises(ConfigError, match="skip_index"):
        make_config("mlp", {"depth": 4, "skip_index": 3})
    with pytest.raises(ConfigError, match=r"skip_index must be in \[0, depth - 1\)"):
        make_config("mlp", {"depth": 4, "skip_index": -1})
    with pytest.raises(ConfigError, match="depth must be at least 2"):
        make_config("mlp", {"depth": 1, "skip_index": 0})


def test_mlp_skip_after_the_first_layer_is_allowed():
    field = make_field("mlp", AABB, {"frequencies": 2, "depth": 2, "width": 8, "skip_index": 0})
    assert field.layers[1].in_features == 8 + 3 + 6 * 2


# -- grid -----------------------------------------------------------------------------------------

def test_grid_features_interpolate_all_channels_trilinearly():
    field = small_field("grid")
    randomise_grid(field)
    x, _ = random_inputs()
    expected = grid_interpolate_reference(unit(x), field.grid.double())
    torch.testing.assert_close(field.features(x).double(), expected, rtol=1e-5, atol=1e-5)


def test_grid_colour_reads_nine_coefficients_per_colour_in_colour_major_order():
    field = small_field("grid")
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(30, 28, generator=g)
    _, d = random_inputs(30)
    sh = sh_encode_reference(d.double(), 3)
    coeffs = feats[:, 1:].double().reshape(30, 3, 9)
    expected = torch.sigmoid(torch.einsum("nck,nk->nc", coeffs, sh))
    torch.testing.assert_close(field.colour(feats, d).double(), expected, rtol=1e-5, atol=1e-6)
    only_green_dc = torch.zeros(1, 28)
    only_green_dc[0, 1 + 9] = 2.0
    rgb = field.colour(only_green_dc, d[:1])
    c0 = 0.5 / math.sqrt(math.pi)
    torch.testing.assert_close(rgb[0], torch.tensor([0.5, 1 / (1 + math.exp(-2 * c0)), 0.5]))


def test_grid_total_variation_is_zero_for_a_constant_grid_and_positive_otherwise():
    field = small_field("grid", l1_density_weight=0.0, tv_density_weight=1.0, tv_sh_weight=1.0)
    with torch.no_grad():
        field.grid.fill_(0.7)
    assert float(field.regularization().detach()) == 0.0
    randomise_grid(field)
    assert float(field.regularization().detach()) > 0.0


def test_grid_total_variation_matches_the_full_grid_mean_when_every_voxel_is_drawn():
    field = small_field("grid", l1_density_weight=0.0, tv_density_weight=1.0, tv_sh_weight=0.0,
                        tv_samples=20000)
    randomise_grid(field)
    g = field.grid.detach().double()[..., 0]
    full = ((g[1:, :-1, :-1] - g[:-1, :-1, :-1]) ** 2 + (g[:-1, 1:, :-1] - g[:-1, :-1, :-1]) ** 2
            + (g[:-1, :-1, 1:] - g[:-1, :-1, :-1]) ** 2).mean()
    assert float(field.regularization().detach()) == pytest.approx(float(full), rel=0.1)


def test_grid_l1_is_the_mean_density_and_the_regulariser_is_differentiable():
    field = small_field("grid", l1_density_weight=0.5, tv_density_weight=1.0, tv_sh_weight=1.0)
    with torch.no_grad():
        field.grid.fill_(0.0)
        field.grid[..., 0] = -1.0
    torch.testing.assert_close(field.regularization(), torch.tensor(0.5 * math.exp(-1.0)))
    randomise_grid(field)
    field.regularization().backward()
    grad = field.grid.grad
    assert bool(torch.isfinite(grad).all())
    assert float(grad[..., 0].abs().sum()) > 0 and float(grad[..., 1:].abs().sum()) > 0


def test_grid_initial_density_is_the_configured_raw_value():
    field = small_field("grid", init_raw_density=-1.5)
    x, _ = random_inputs()
    torch.testing.assert_close(field.density(x), density_from_raw(torch.full((200,), -1.5)))
    assert float(field.grid.detach()[..., 1:].abs().max()) == 0.0


def test_grid_config_rejects_a_single_voxel():
    with pytest.raises(ConfigError, match="resolution"):
        make_config("grid", {"resolution": 1})


# -- training -------------------------------------------------------------------------------------

#: Reduced configs and training settings for the few-second training runs below.
TRAIN_FIELDS = {
    "vm": {"density_rank": 8, "appearance_rank": 16, "resolution_init": 24, "resolution_final": 48,
           "upsample_steps": (60, 120)},
    "mlp": {"frequencies": 6, "depth": 4, "width": 64, "skip_index": 1},
    "grid": {"resolution": 32},
}
TRAIN_SETTINGS = {"steps": 200, "batch_rays": 256, "grid_resolution": 32, "grid_warmup_steps": 64,
                  "val_every": 0, "checkpoint_every": 0, "marching": {"steps_across_box": 128}}


@pytest.fixture(scope="module")
def demo_scene(tmp_path_factory):
    from taichi_pvd.data import load_scene, write_demo_scene

    root = write_demo_scene(tmp_path_factory.mktemp("demo"), size=32, n_train=12, n_val=2, n_test=2)
    return load_scene(root, "train"), load_scene(root, "val", background=(1.0, 1.0, 1.0))


def make_trainer(kind: str, demo_scene, out_dir, *, seed: int = 0, steps: int = TRAIN_SETTINGS["steps"],
                 **field_overrides):
    from taichi_pvd.training.api import resolve_train_config
    from taichi_pvd.training.trainer import Trainer

    train_scene, val_scene = demo_scene
    config = resolve_train_config(kind, {**TRAIN_SETTINGS, "steps": steps})
    field = small_field(kind, seed=seed, **{**TRAIN_FIELDS[kind], **field_overrides})
    return Trainer(field, train_scene, val_scene, config, out_dir)


@pytest.mark.parametrize("kind", ["vm", "mlp", "grid"])
def test_training_raises_validation_psnr(kind, demo_scene, tmp_path):
    trainer = make_trainer(kind, demo_scene, tmp_path)
    before = trainer.validate()
    metrics = trainer.run()
    assert metrics["steps"] == TRAIN_SETTINGS["steps"]
    assert metrics["val_psnr_db"] > before + 3.0, (before, metrics["val_psnr_db"])


def test_vm_training_upsamples_and_resumes_at_the_final_resolution(demo_scene, tmp_path):
    trainer = make_trainer("vm", demo_scene, tmp_path, steps=6, upsample_steps=(2, 4))
    trainer.run()
    assert trainer.field.resolution == 48
    resumed = make_trainer("vm", demo_scene, tmp_path, seed=3, steps=6, upsample_steps=(2, 4))
    assert resumed.field.resolution == 24
    resumed.resume()
    assert resumed.field.resolution == 48 and resumed.step == 6
    x, d = random_inputs()
    torch.testing.assert_close(resumed.field.features(x), trainer.field.features(x))


def test_bucket_rows_pads_little_and_repeats_shapes():
    from taichi_pvd.fields.row_buckets import bucket_rows

    assert bucket_rows(0) == 0
    for n in [1, 255, 256, 257, 4097, 100_003, 262_144, 1_000_001]:
        m = bucket_rows(n)
        assert 0 <= m - n < max(256, n // 32 + 1), (n, m)
        assert bucket_rows(m) == m
    # Sample counts spread over one doubling fall into a few dozen shapes.
    assert len({bucket_rows(n) for n in range(200_000, 400_000)}) <= 64


def test_bucketed_sequential_matches_plain_sequential():
    from taichi_pvd.fields.row_buckets import BucketedSequential

    torch.manual_seed(0)
    layers = [torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2)]
    plain, bucketed = torch.nn.Sequential(*layers), BucketedSequential(*layers)
    assert plain.state_dict().keys() == bucketed.state_dict().keys()
    x = torch.randn(300, 5, requires_grad=True)
    out = bucketed(x)
    assert out.shape == (300, 2)
    torch.testing.assert_close(out, plain(x))
    (g_bucketed,) = torch.autograd.grad(out.square().sum(), x)
    (g_plain,) = torch.autograd.grad(plain(x).square().sum(), x)
    torch.testing.assert_close(g_bucketed, g_plain)


def test_the_hash_field_suggests_a_finest_level_for_small_images():
    aabb = torch.tensor([[-1.5] * 3, [1.5] * 3])
    field = make_field("hash", aabb, {"log2_table_size": 10, "n_levels": 2})
    (hint,) = field.hints_for_images(400, 400)
    assert (hint.option, hint.kind, hint.value) == ("finest_resolution", "field", 512)
    assert str(hint).endswith("try the field option finest_resolution=512")
    assert field.hints_for_images(800, 800) == []
    assert make_field("hash", aabb, {"log2_table_size": 10, "n_levels": 2,
                                      "finest_resolution": 512}).hints_for_images(400, 400) == []
    assert make_field("mlp", aabb, {"width": 8, "depth": 2, "skip_index": 0}).hints_for_images(400, 400) == []


def test_density_from_raw_saturates_instead_of_overflowing():
    """A raw density Adam has pushed far past any opaque value (a grid student at a high rate)
    gives a finite sigma and a zero gradient, not inf and then NaN in compositing."""
    raw = torch.tensor([-3.0, 10.0, 20.0, 100.0, 1e4], requires_grad=True)
    sigma = density_from_raw(raw)
    assert torch.isfinite(sigma).all()
    torch.testing.assert_close(sigma[:3], torch.exp(raw[:3].detach()))
    torch.testing.assert_close(sigma[3:], torch.exp(torch.tensor([RAW_DENSITY_MAX] * 2)))
    sigma.sum().backward()
    expected = torch.exp(torch.tensor([-3.0, 10.0, 15.0, 0.0, 0.0])) * torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0])
    torch.testing.assert_close(raw.grad, expected)
