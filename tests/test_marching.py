"""The skipping ray marcher keeps exactly the samples of brute-force stepping."""

import math

import pytest
import torch

from taichi_pvd import backend
from taichi_pvd.errors import ConfigError
from taichi_pvd.kernels.marching import PackedSamples, default_precision, march_rays, march_rays_reference
from taichi_pvd.rendering.occupancy import OccupancyGrid, pack_bitfield
from tests.marching_checks import assert_same_samples_within_tolerance

backend.init("cpu")

BOX = [[-1.0, -0.5, -1.5], [1.0, 1.5, 0.5]]
MISSING_RAY = 0


def _random_grid(resolution: int = 16, occupied: float = 0.4, seed: int = 0) -> OccupancyGrid:
    grid = OccupancyGrid(torch.tensor(BOX), resolution=resolution)
    gen = torch.Generator().manual_seed(seed)
    grid.bitfield.copy_(pack_bitfield(torch.rand(resolution**3, generator=gen) < occupied))
    return grid


def _random_rays(n: int = 300, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins inside and around the box, some directions with zero components; ray
    ``MISSING_RAY`` starts beside the box and points away from it."""
    gen = torch.Generator().manual_seed(seed)
    origins = torch.tensor(BOX).mean(0) + 3.5 * (torch.rand(n, 3, generator=gen) - 0.5)
    directions = torch.randn(n, 3, generator=gen)
    directions[1:30, 1] = 0.0
    directions[20:40, 2] = 0.0
    directions[40:45] = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0],
                                      [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    origins[MISSING_RAY] = torch.tensor([3.0, 0.5, -0.5])
    directions[MISSING_RAY] = torch.tensor([1.0, 0.2, 0.0])
    return origins, directions / directions.norm(dim=1, keepdim=True)


def _assert_same_samples(actual: PackedSamples, expected: PackedSamples) -> None:
    assert torch.equal(actual.ray_counts, expected.ray_counts)
    assert torch.equal(actual.ray_starts, expected.ray_starts)
    assert torch.equal(actual.ray_indices, expected.ray_indices)
    torch.testing.assert_close(actual.t, expected.t, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(actual.dt, expected.dt, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(actual.positions, expected.positions, rtol=0.0, atol=1e-6)
    assert torch.equal(actual.directions, expected.directions)


def _march_both(origins, directions, grid, **kwargs) -> tuple[PackedSamples, PackedSamples]:
    return (march_rays(origins, directions, grid, **kwargs),
            march_rays_reference(origins, directions, grid, **kwargs))


def test_matches_brute_force_reference_with_near_far_and_jitter():
    grid = _random_grid()
    origins, directions = _random_rays()
    gen = torch.Generator().manual_seed(2)
    n = origins.shape[0]
    near = 0.5 * torch.rand(n, generator=gen)
    far = 1.0 + 3.0 * torch.rand(n, generator=gen)
    jitter = torch.rand(n, generator=gen)
    samples, reference = _march_both(origins, directions, grid, near=near, far=far,
                                     step_size=0.011, jitter=jitter)
    _assert_same_samples(samples, reference)
    assert samples.n_samples > 1000 and int((samples.ray_counts > 0).sum()) > 50
    assert int(samples.ray_counts[MISSING_RAY]) == 0


def test_matches_brute_force_reference_with_cone_stepping_and_sample_cap():
    grid = _random_grid(occupied=0.6, seed=3)
    origins, directions = _random_rays(seed=4)
    jitter = torch.rand(origins.shape[0], generator=torch.Generator().manual_seed(5))
    samples, reference = _march_both(origins, directions, grid, near=0.1, far=6.0,
                                     step_size=0.004, cone_angle=1.0 / 64,
                                     max_samples_per_ray=40, jitter=jitter)
    _assert_same_samples(samples, reference)
    assert samples.dt.max() > 0.004 * 1.5
    assert int(samples.ray_counts.max()) == 40


def test_lattice_points_exactly_on_cell_faces_match_reference():
    # Cells of 0.125, steps of 1/32 from t = 1: every fourth sample sits on a cell face.
    grid = OccupancyGrid(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=16)
    occupied = torch.rand(16**3, generator=torch.Generator().manual_seed(6)) < 0.3
    grid.bitfield.copy_(pack_bitfield(occupied))
    origins = torch.tensor([[-2.0, 0.0, 0.25], [0.0, 2.0, -0.5], [0.375, -0.125, -2.0],
                            [2.0, 0.5, 0.5]])
    directions = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0],
                               [-1.0, 0.0, 0.0]])
    samples, reference = _march_both(origins, directions, grid, near=0.0, far=10.0,
                                     step_size=1.0 / 32)
    _assert_same_samples(samples, reference)
    assert samples.n_samples > 0


@pytest.mark.parametrize("cone_angle", [0.0, 1.0 / 64])
def test_float32_marching_keeps_the_float64_samples_within_tolerance(cone_angle):
    grid = _random_grid()
    origins, directions = _random_rays(n=400, seed=9)
    gen = torch.Generator().manual_seed(10)
    n = origins.shape[0]
    far = 1.0 + 3.0 * torch.rand(n, generator=gen)
    kwargs = dict(near=0.3 * torch.rand(n, generator=gen), far=far, step_size=0.007, cone_angle=cone_angle,
                  jitter=torch.rand(n, generator=gen))
    samples = march_rays(origins, directions, grid, precision="float32", **kwargs)
    reference = march_rays_reference(origins, directions, grid, **kwargs)
    assert reference.n_samples > 2000
    assert_same_samples_within_tolerance(samples, reference, grid, origins=origins, far=far, cone_angle=cone_angle)


@pytest.mark.parametrize("cell", [0.125, 0.2], ids=["binary-cells", "decimal-cells"])
def test_float32_marching_on_rays_grazing_cell_faces_and_ending_on_box_faces(cell):
    # A box of 16 cells a side from -8 cells. Rays along the axes and inside face planes (a
    # constant coordinate on a cell face), steps of a quarter cell from the box face (every
    # fourth sample on a cell face), far exactly at the box face a ray leaves through, or at a
    # lattice point on it. Binary cells put those points exactly on the faces in float32 too;
    # decimal ones leave each precision to round them to either side (about one sample in ten
    # here changes sides, each within rounding of its face).
    grid = OccupancyGrid(torch.tensor([[-8 * cell] * 3, [8 * cell] * 3]), resolution=16)
    grid.bitfield.copy_(pack_bitfield(torch.rand(16**3, generator=torch.Generator().manual_seed(11)) < 0.5))
    in_cells = torch.tensor([[-16.0, 0.0, 2.0], [0.0, 16.0, -4.0], [3.0, -1.0, -16.0], [16.0, 4.0, 4.0],
                             [-16.0, -8.0, 1.0], [-16.0, 6.0, -16.0], [1.0, -16.0, -16.0], [-16.0, -16.0, 8.0]])
    directions = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0],
                               [1.0, 0.0, 0.0], [0.6, 0.0, 0.8], [0.0, 0.8, 0.6], [0.6, 0.8, 0.0]])
    far = cell * torch.tensor([24.0, 24.0, 24.0, 80.0, 23.75, 80.0, 80.0, 80.0])
    origins = cell * in_cells
    kwargs = dict(near=0.0, far=far, step_size=cell / 4)
    samples = march_rays(origins, directions, grid, precision="float32", **kwargs)
    reference = march_rays_reference(origins, directions, grid, **kwargs)
    assert bool((reference.ray_counts > 0).all())
    assert_same_samples_within_tolerance(samples, reference, grid, origins=origins, far=far,
                                         max_unmatched_fraction=0.25)


def test_fully_occupied_grid_samples_the_whole_clipped_segment():
    grid = OccupancyGrid(torch.tensor(BOX), resolution=8)
    origins = torch.tensor([[-3.0, 0.5, -0.5], [0.0, 0.5, -0.5]])
    directions = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    near = torch.tensor([0.0, 0.3])
    far = torch.tensor([3.5, 10.0])
    samples = march_rays(origins, directions, grid, near=near, far=far, step_size=0.1)
    # Ray 0 enters the box at t = 2 and is cut by far at 3.5; ray 1 starts inside at near = 0.3
    # and leaves at t = 1.
    assert samples.ray_counts.tolist() == [15, 7]
    torch.testing.assert_close(samples.t[:15], 2.0 + 0.1 * torch.arange(15.0))
    torch.testing.assert_close(samples.t[15:], 0.3 + 0.1 * torch.arange(7.0))
    torch.testing.assert_close(samples.positions[:, 0],
                               origins[samples.ray_indices.long(), 0] + samples.t)


def test_samples_lie_only_in_the_single_occupied_cell():
    grid = OccupancyGrid(torch.tensor(BOX), resolution=8)
    mask = torch.zeros(8, 8, 8, dtype=torch.bool)
    mask[5, 2, 6] = True
    grid.bitfield.copy_(pack_bitfield(mask.reshape(-1)))
    cell_lo = grid.aabb[0] + torch.tensor([5.0, 2.0, 6.0]) * grid.cell_size
    centre = cell_lo + 0.5 * grid.cell_size
    gen = torch.Generator().manual_seed(7)
    directions = torch.randn(50, 3, generator=gen)
    directions /= directions.norm(dim=1, keepdim=True)
    origins = centre - 2.0 * directions
    samples = march_rays(origins, directions, grid, near=0.0, far=5.0, step_size=0.01)
    assert bool((samples.ray_counts > 0).all())
    assert bool((samples.positions >= cell_lo - 1e-6).all())
    assert bool((samples.positions <= cell_lo + grid.cell_size + 1e-6).all())


def test_ray_starts_are_the_exclusive_cumsum_of_counts_and_index_their_rays():
    grid = _random_grid()
    origins, directions = _random_rays(n=100, seed=8)
    samples = march_rays(origins, directions, grid, near=0.0, far=10.0, step_size=0.02)
    counts = samples.ray_counts.long()
    assert torch.equal(samples.ray_starts.long(), torch.cumsum(counts, 0) - counts)
    assert torch.equal(samples.ray_indices.long(),
                       torch.repeat_interleave(torch.arange(100), counts))
    assert bool((samples.dt == 0.02).all())
    t_per_ray = torch.split(samples.t, counts.tolist())
    assert all(bool((t[1:] > t[:-1]).all()) for t in t_per_ray)


def test_empty_grid_and_no_rays_give_no_samples():
    grid = OccupancyGrid(torch.tensor(BOX), resolution=8)
    grid.bitfield.zero_()
    origins, directions = _random_rays(n=50)
    samples = march_rays(origins, directions, grid, near=0.0, far=10.0, step_size=0.01)
    assert samples.n_samples == 0 and samples.ray_counts.tolist() == [0] * 50
    none = march_rays(torch.zeros(0, 3), torch.zeros(0, 3), grid, near=0.0, far=1.0, step_size=0.1)
    assert none.n_samples == 0 and none.ray_starts.shape == (0,)


def test_default_step_matches_instant_ngp_for_the_box():
    grid = OccupancyGrid(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=8)
    assert grid.min_step_size == pytest.approx(math.sqrt(3.0) * 2.0 / 1024)


@pytest.mark.parametrize("kwargs, match", [
    ({"step_size": 0.0}, "step_size"),
    ({"step_size": 0.1, "cone_angle": -1.0}, "cone_angle"),
    ({"step_size": 0.1, "max_samples_per_ray": 0}, "max_samples_per_ray"),
    ({"step_size": 0.1, "precision": "float16"}, "precision"),
])
def test_invalid_options_are_rejected(kwargs, match):
    grid = OccupancyGrid(torch.tensor(BOX), resolution=8)
    with pytest.raises(ConfigError, match=match):
        march_rays(torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]]), grid, near=0.0,
                   far=1.0, **kwargs)


@pytest.mark.parametrize("capability, expected", [((9, 0), "float64"), ((8, 0), "float64"), ((8, 9), "float32"),
                                                  ((12, 0), "float32"), ((10, 3), "float32")])
def test_cuda_cards_march_in_float64_only_where_it_runs_at_half_rate(monkeypatch, capability, expected):
    # H100-class cards run float64 at half rate (float32 marching was the slower one there);
    # GeForce cards (8.9, 12.0) and B300 (10.3) at a small fraction of it.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert default_precision(torch.device("cuda")) == expected
    assert default_precision(torch.device("cpu")) == "float64"
