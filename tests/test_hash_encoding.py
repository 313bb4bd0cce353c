"""Hash encoding: layout numbers, Taichi kernel vs float64 torch reference, Instant-NGP indexing."""

import pytest
import torch

from taichi_pvd.errors import ConfigError
from taichi_pvd.kernels import hash_encoding
from taichi_pvd.kernels.hash_encoding import (
    hash_encode,
    hash_encode_reference,
    hash_grid_layout,
    init_hash_table,
)
from tests.launch_limits import assert_row_blocks, record_launch_rows

# Growth factor 3: scales 4, 14, 44; resolutions 5, 15, 45.
SMALL = dict(
    n_levels=3, features_per_level=2, log2_table_size=12, base_resolution=5, finest_resolution=45
)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b).norm() / b.norm()).item()


def boundary_and_random_points(layout, n_random: int, generator: torch.Generator) -> torch.Tensor:
    """Random points plus 0, 1, and points on vertices and cell faces of every level."""
    special = [torch.zeros(1, 3), torch.ones(1, 3), torch.tensor([[0.0, 1.0, 0.5]])]
    for scale in layout.scales:
        k = torch.randint(0, int(scale) + 1, (8, 3), generator=generator).float()
        special.append((k - 0.5).clamp(min=0) / scale)  # pos = x * scale + 0.5 is an integer
        special.append(k / scale)
    x = torch.cat([torch.rand(n_random, 3, generator=generator), *special])
    return x.clamp(0.0, 1.0)


def test_small_layout_numbers_by_hand():
    layout = hash_grid_layout(**SMALL)
    assert layout.scales == pytest.approx((4.0, 14.0, 44.0))
    assert layout.resolutions == (5, 15, 45)
    # 5^3 = 125 -> 128 (multiple of 8); 15^3 = 3375 -> 3376; 45^3 = 91125 -> capped at 2^12.
    assert layout.table_sizes == (128, 3376, 4096)
    assert layout.offsets == (0, 128, 3504)
    assert layout.dense == (True, True, False)
    assert layout.total_entries == 7600
    assert layout.output_dim == 6


def test_default_layout_matches_instant_ngp():
    layout = hash_grid_layout()
    assert layout.output_dim == 32
    assert layout.resolutions[0] == 16 and layout.resolutions[-1] == 2048
    assert layout.scales[0] == 15.0 and layout.scales[-1] == 2047.0
    assert layout.table_sizes[0] == 16**3 and layout.table_sizes[-1] == 2**19
    assert layout.dense == (True,) * 5 + (False,) * 11
    assert layout.total_entries == sum(layout.table_sizes)
    assert layout.offsets[-1] + layout.table_sizes[-1] == layout.total_entries


@pytest.mark.parametrize(
    "bad",
    [
        dict(n_levels=0),
        dict(features_per_level=0),
        dict(log2_table_size=2),
        dict(base_resolution=1),
        dict(base_resolution=64, finest_resolution=32),
    ],
)
def test_layout_rejects_bad_configuration(bad):
    with pytest.raises(ConfigError):
        hash_grid_layout(**bad)


def test_init_hash_table_is_small_uniform_and_seeded():
    layout = hash_grid_layout(**SMALL)
    a = init_hash_table(layout, torch.Generator().manual_seed(3))
    b = init_hash_table(layout, torch.Generator().manual_seed(3))
    assert a.shape == (7600, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert a.abs().max() <= 1e-4 and a.std() > 4e-5


def matches_float64_reference(layout, n_random: int, seed: int) -> torch.Tensor:
    """Encode boundary and random points with a random table of ``layout``, forward and
    backward, and check both against the float64 reference; returns the points [N, 3]."""
    gen = torch.Generator().manual_seed(seed)
    x = boundary_and_random_points(layout, n_random, gen)
    table = torch.randn(layout.total_entries, layout.features_per_level, generator=gen).requires_grad_()
    out = hash_encode(x, table, layout)
    upstream = torch.randn(out.shape, generator=gen)
    out.backward(upstream)

    table64 = table.detach().double().requires_grad_()
    ref = hash_encode_reference(x.double(), table64, layout)
    ref.backward(upstream.double())

    assert out.shape == (x.shape[0], layout.output_dim) and out.dtype == torch.float32
    assert rel_err(out, ref) < 1e-3
    assert rel_err(table.grad, table64.grad) < 1e-3
    return x


@pytest.mark.parametrize("features_per_level", [2, 4, 8])
def test_forward_and_backward_match_float64_reference(features_per_level):
    matches_float64_reference(hash_grid_layout(**{**SMALL, "features_per_level": features_per_level}), 2000, seed=0)


def ray_ordered_points(n_rays: int, samples_per_ray: int, generator: torch.Generator) -> torch.Tensor:
    """[n_rays * samples_per_ray, 3] points in [0, 1]^3 packed as a marcher packs them:
    consecutive points 1/200 apart along each ray, so that neighbours share coarse cells."""
    starts = 0.2 + 0.6 * torch.rand(n_rays, 1, 3, generator=generator)
    directions = torch.nn.functional.normalize(torch.randn(n_rays, 1, 3, generator=generator), dim=-1)
    steps = torch.arange(samples_per_ray, dtype=torch.float32)[None, :, None] / 200
    return (starts + steps * directions).reshape(-1, 3).clamp(0, 1).contiguous()


@pytest.mark.parametrize("run", [1, 3, 8, 16])
def test_runs_of_points_a_thread_match_float64_reference(monkeypatch, run):
    # Runs share a cell's corner reads (forward) and its summed gradient (backward) between
    # neighbours; a run ending mid-ray, a last partial run and cell changes inside a run all occur.
    monkeypatch.setitem(hash_encoding.POINTS_A_THREAD, "forward", run)
    monkeypatch.setitem(hash_encoding.POINTS_A_THREAD, "backward", run)
    layout = hash_grid_layout(**SMALL)
    gen = torch.Generator().manual_seed(run)
    x = torch.cat([ray_ordered_points(37, 23, gen), boundary_and_random_points(layout, 50, gen)])
    table = torch.randn(layout.total_entries, layout.features_per_level, generator=gen).requires_grad_()
    out = hash_encode(x, table, layout)
    upstream = torch.randn(out.shape, generator=gen)
    out.backward(upstream)
    table64 = table.detach().double().requires_grad_()
    hash_encode_reference(x.double(), table64, layout).backward(upstream.double())
    assert rel_err(out, hash_encode_reference(x.double(), table.detach().double(), layout)) < 1e-5
    assert rel_err(table.grad, table64.grad) < 1e-5


def test_many_samples_launch_in_row_blocks_within_taichi_int32_indexing(monkeypatch):
    layout = hash_grid_layout(**SMALL)
    rows_per_launch = 100
    launched = record_launch_rows(monkeypatch, hash_encoding, ("_hash_encode_forward", "_hash_encode_backward"),
                                  max_values=rows_per_launch * layout.output_dim)
    x = matches_float64_reference(layout, 1000, seed=3)
    assert_row_blocks(launched, x.shape[0], rows_per_launch)


@pytest.mark.parametrize("log2_table_size, dense", [(7, True), (6, False)])
def test_vertex_rows_follow_instant_ngp_indexing(log2_table_size, dense):
    # One level of scale 4 (resolution 5, 125 vertices): dense in 128 rows, hashed in 64.
    layout = hash_grid_layout(1, 2, log2_table_size, 5, 5)
    assert layout.dense == (dense,)
    size = layout.table_sizes[0]
    table = torch.stack([torch.arange(size, dtype=torch.float32), torch.zeros(size)], dim=1)
    # x * 4 + 0.5 = (1, 2, 3) exactly: the point sits on vertex (1, 2, 3) with weight 1.
    x = torch.tensor([[0.125, 0.375, 0.625]])
    if dense:
        row = (1 + 2 * 5 + 3 * 25) % size
    else:
        row = ((1 * 1) ^ (2 * 2654435761) ^ (3 * 805459861)) % 2**32 % size
    assert hash_encode(x, table, layout)[0, 0].item() == row


def test_points_outside_the_unit_cube_are_clamped():
    layout = hash_grid_layout(**SMALL)
    table = init_hash_table(layout, torch.Generator().manual_seed(1))
    x = torch.tensor([[-0.5, 1.5, 0.3], [2.0, -1.0, 1.0]])
    assert torch.equal(hash_encode(x, table, layout), hash_encode(x.clamp(0, 1), table, layout))


def test_positions_get_no_gradient_and_empty_input_works():
    layout = hash_grid_layout(**SMALL)
    table = init_hash_table(layout).requires_grad_()
    x = torch.rand(10, 3, requires_grad=True)
    hash_encode(x, table, layout).sum().backward()
    assert x.grad is None and table.grad is not None
    empty = hash_encode(torch.zeros(0, 3), table, layout)
    assert empty.shape == (0, 6)
    empty.sum().backward()


def test_bad_inputs_raise_clear_errors():
    layout = hash_grid_layout(**SMALL)
    table = init_hash_table(layout)
    x = torch.rand(4, 3)
    with pytest.raises(TypeError, match="float32"):
        hash_encode(x.double(), table, layout)
    with pytest.raises(TypeError, match="float32"):
        hash_encode(x, table.double(), layout)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        hash_encode(torch.rand(4, 2), table, layout)
    with pytest.raises(ValueError, match="shape"):
        hash_encode(x, table[:-1], layout)
    with pytest.raises(ValueError, match="contiguous"):
        hash_encode(x, torch.rand(2, layout.total_entries).t(), layout)
