"""The scene contraction of unbounded scenes, the contracted marcher against its brute-force
reference, and the contracted occupancy grid."""

import pytest
import torch

from taichi_pvd import backend
from taichi_pvd.data.contracted_space import contracted_aabb
from taichi_pvd.errors import ConfigError
from taichi_pvd.kernels.contraction import contract, radial_stretch
from taichi_pvd.kernels.marching import march_rays, march_rays_reference
from taichi_pvd.rendering.occupancy import OccupancyGrid, pack_bitfield
from tests.marching_checks import assert_same_samples_within_tolerance

backend.init("cpu")


def _random_points(n: int, scale: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, 3, generator=generator, dtype=torch.float64)


def test_contraction_is_the_identity_inside_the_unit_cube():
    x = 2.0 * torch.rand(1000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 1.0
    x[0] = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)  # a corner of the cube
    assert torch.equal(contract(x), x)


def test_contraction_maps_everything_into_the_cube_of_half_size_two():
    x = torch.cat([_random_points(2000, 50.0, 1), torch.tensor([[1e30, -3.0, 2.0], [0.0, 0.0, -1e12]],
                                                               dtype=torch.float64)])
    m = x.abs().amax(-1)
    q = contract(x)
    assert bool((q.abs().amax(-1) <= 2.0).all())
    assert bool((q[:2000].abs().amax(-1) < 2.0).all())  # reached only in the limit
    outside = m > 1
    torch.testing.assert_close(q.abs().amax(-1)[outside], 2.0 - 1.0 / m[outside])
    # Each point stays on its ray from the origin.
    torch.testing.assert_close(q / q.norm(dim=-1, keepdim=True), x / x.norm(dim=-1, keepdim=True))


def test_contraction_is_monotone_along_rays_from_the_origin_and_continuous_at_the_cube():
    direction = torch.nn.functional.normalize(_random_points(50, 1.0, 2), dim=-1)
    radii = torch.linspace(0.01, 1000.0, 20001, dtype=torch.float64)
    q = contract(radii[None, :, None] * direction[:, None, :]).abs().amax(-1)
    assert bool((q[:, 1:] > q[:, :-1]).all())
    # Continuity: crossing the cube's surface moves the contracted point by about the step.
    on_cube = direction / direction.abs().amax(-1, keepdim=True)
    for eps in (1e-3, 1e-6, 1e-9):
        jump = (contract(on_cube * (1 + eps)) - contract(on_cube * (1 - eps))).norm(dim=-1)
        assert bool((jump <= 3 * eps * on_cube.norm(dim=-1)).all())


def test_radial_stretch_is_the_derivative_of_world_distance_by_contracted_distance():
    direction = torch.nn.functional.normalize(_random_points(20, 1.0, 3), dim=-1)
    direction = direction / direction.abs().amax(-1, keepdim=True)  # |direction|_inf = 1
    for r in (0.5, 1.5, 4.0, 30.0):
        h = 1e-6 * r
        ds = (contract(direction * (r + h)) - contract(direction * (r - h))).abs().amax(-1)
        expected = torch.full((20,), 1.0 if r <= 1 else r * r, dtype=torch.float64)
        torch.testing.assert_close(radial_stretch(contract(direction * r)), expected)
        torch.testing.assert_close(2 * h / ds, expected, rtol=1e-5, atol=0)


def _contracted_grid(resolution: int, occupied: float, seed: int) -> OccupancyGrid:
    grid = OccupancyGrid(contracted_aabb(), resolution=resolution, contracted=True)
    mask = torch.rand(resolution**3, generator=torch.Generator().manual_seed(seed)) < occupied
    grid.bitfield.copy_(pack_bitfield(mask))
    return grid


def _rays_from_inside(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    origins = 1.8 * (torch.rand(n, 3, generator=generator) - 0.5)
    directions = torch.randn(n, 3, generator=generator)
    directions[:20, 2] = 0.0
    directions[20:23] = torch.eye(3)
    return origins, directions / directions.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("resolution, occupied, cone_angle, max_samples",
                         [(16, 0.3, 1.0 / 32, 1024), (32, 0.1, 0.0, 60), (6, 0.5, 1.0 / 256, 1024)])
def test_contracted_marcher_matches_the_brute_force_reference(resolution, occupied, cone_angle, max_samples):
    grid = _contracted_grid(resolution, occupied, seed=resolution)
    origins, directions = _rays_from_inside(300, seed=resolution + 1)
    n = origins.shape[0]
    generator = torch.Generator().manual_seed(5)
    kwargs = dict(near=0.02 + 0.1 * torch.rand(n, generator=generator), far=1e4, step_size=0.01,
                  cone_angle=cone_angle, max_samples_per_ray=max_samples, jitter=torch.rand(n, generator=generator))
    samples = march_rays(origins, directions, grid, **kwargs)
    reference = march_rays_reference(origins, directions, grid, **kwargs)
    assert torch.equal(samples.ray_counts, reference.ray_counts)
    assert torch.equal(samples.ray_indices, reference.ray_indices)
    torch.testing.assert_close(samples.t, reference.t, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(samples.dt, reference.dt, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(samples.positions, reference.positions, rtol=0.0, atol=1e-6)
    # Samples reach far out in world distance while their positions stay in the contracted box.
    assert float(samples.t.max()) > 100.0 and float(samples.positions.abs().max()) < 2.0
    ray = samples.ray_indices.long()
    world = origins[ray].double() + samples.t.double()[:, None] * directions[ray].double()
    torch.testing.assert_close(samples.positions, contract(world).float(), rtol=0.0, atol=1e-4)


@pytest.mark.parametrize("resolution, occupied, cone_angle", [(16, 0.3, 1.0 / 32), (32, 0.1, 0.0)])
def test_float32_contracted_marcher_keeps_the_float64_samples_within_tolerance(resolution, occupied, cone_angle):
    grid = _contracted_grid(resolution, occupied, seed=resolution)
    origins, directions = _rays_from_inside(300, seed=resolution + 1)
    n = origins.shape[0]
    generator = torch.Generator().manual_seed(5)
    kwargs = dict(near=0.02 + 0.1 * torch.rand(n, generator=generator), far=1e4, step_size=0.01,
                  cone_angle=cone_angle, jitter=torch.rand(n, generator=generator))
    samples = march_rays(origins, directions, grid, precision="float32", **kwargs)
    reference = march_rays_reference(origins, directions, grid, **kwargs)
    assert int(reference.ray_counts.max()) < 1024 and float(reference.t.max()) > 100.0
    assert_same_samples_within_tolerance(samples, reference, grid, origins=origins, far=1e4, cone_angle=cone_angle)


def test_contracted_steps_cover_the_unbounded_shell_in_a_bounded_number_of_steps():
    grid = OccupancyGrid(contracted_aabb(), resolution=16, contracted=True)  # every cell occupied
    origins, directions = _rays_from_inside(50, seed=6)
    samples = march_rays(origins, directions, grid, near=0.0, far=1e6, step_size=0.02)
    # Inside the unit cube (at most ~3.5 long for these rays) steps of 0.02; outside, about 0.02
    # of contracted length each across the shell of thickness 1: a few hundred samples per ray,
    # although far is a million units away.
    assert int(samples.ray_counts.max()) < 3.5 / 0.02 + 3 * 1.0 / 0.02
    assert float(samples.t.max()) > 1e5
    outside = samples.positions.abs().amax(-1) > 1.0
    step_in_contracted_space = (samples.dt[outside] / radial_stretch(samples.positions[outside]))
    assert 0.005 < float(step_in_contracted_space.median()) < 0.05
    torch.testing.assert_close(samples.dt[~outside], torch.full((int((~outside).sum()),), 0.02))


def test_rays_through_an_empty_contracted_grid_find_its_outermost_shell():
    # Only the outermost shell of cells is occupied: every ray ends up there, far away.
    r = 16
    grid = OccupancyGrid(contracted_aabb(), resolution=r, contracted=True)
    index = torch.arange(r)
    shell = (index == 0) | (index == r - 1)
    mask = shell[:, None, None] | shell[None, :, None] | shell[None, None, :]
    grid.bitfield.copy_(pack_bitfield(mask.reshape(-1)))
    origins, directions = _rays_from_inside(100, seed=7)
    samples = march_rays(origins, directions, grid, near=0.05, far=1e4, step_size=0.01, cone_angle=1.0 / 64)
    assert bool((samples.ray_counts > 0).all())
    assert bool((samples.positions.abs().amax(-1) >= 2.0 - 4.0 / r - 1e-6).all())
    # The shell starts at |x|_inf = 1 / (4 / r) = 4 in world units; origins are within 0.9 of 0.
    assert float(samples.t.min()) > 3.0


def test_contracted_grid_needs_the_contracted_box():
    with pytest.raises(ConfigError, match="contracted"):
        OccupancyGrid(torch.tensor([[-1.0] * 3, [1.0] * 3]), resolution=8, contracted=True)


def test_contracted_occupancy_scales_density_by_the_cells_stretch():
    grid = OccupancyGrid(contracted_aabb(), resolution=16, contracted=True)
    # A field of uniform density 0.2 (1 / world unit): thin inside the cube, but far out one
    # minimal contracted step spans many world units, so the outer cells are worth sampling.
    grid.update(lambda x: torch.full((x.shape[0],), 0.2), step=0, threshold=1.0)
    centres = grid.cell_centres()
    outer = centres.abs().amax(-1)
    occupied = grid.occupied_mask()
    assert not bool(occupied[outer < 1].any())
    assert bool(occupied[outer > 1.9].all())
    torch.testing.assert_close(grid.cell_stretch[outer < 1], torch.ones(int((outer < 1).sum())))
    # A flat field keeps every cell (threshold: the mean density).
    grid.update(lambda x: torch.full((x.shape[0],), 0.2), step=0)
    assert grid.occupancy_fraction() == 1.0
    # Copying between a contracted and a bounded grid is refused.
    bounded = OccupancyGrid(contracted_aabb(), resolution=16)
    with pytest.raises(ConfigError, match="contracted"):
        bounded.copy_from(grid)
