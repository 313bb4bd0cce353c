"""Occupancy grid: update rule, bitfield layout, state-dict round trip."""

import io
import math

import pytest
import torch

from taichi_pvd import backend
from taichi_pvd.errors import ConfigError, TrainingDiverged
from taichi_pvd.rendering.occupancy import MEAN_FRACTION, OccupancyGrid, pack_bitfield, unpack_bitfield

backend.init("cpu")

R = 16
UNIT_BOX = [[-1.0] * 3, [1.0] * 3]


def _half_space_density(x: torch.Tensor) -> torch.Tensor:
    """Dense (sigma 100) where x > 0, empty elsewhere: cells ix >= R/2 are full."""
    return 100.0 * (x[:, 0] > 0).float()


def _updated_grid(seed: int = 0) -> OccupancyGrid:
    grid = OccupancyGrid(torch.tensor(UNIT_BOX), resolution=R)
    grid.update(_half_space_density, step=0, generator=torch.Generator().manual_seed(seed))
    return grid


def test_new_grid_is_fully_occupied():
    grid = OccupancyGrid(torch.tensor(UNIT_BOX), resolution=R)
    assert grid.occupancy_fraction() == 1.0
    assert grid.bitfield.shape == (R**3 // 8,) and grid.bitfield.dtype == torch.uint8


def test_warmup_update_marks_dense_cells_occupied_and_leaves_empty_ones_empty():
    grid = _updated_grid()
    occupied = grid.occupied_mask().reshape(R, R, R)
    assert bool(occupied[R // 2:].all()) and not bool(occupied[: R // 2].any())
    assert grid.occupancy_fraction() == 0.5
    density = grid.density.reshape(R, R, R)
    assert bool((density[R // 2:] == 100.0).all()) and bool((density[: R // 2] == 0.0).all())


def test_default_threshold_is_instant_ngp_optical_thickness_capped_by_the_mean():
    grid = _updated_grid()
    # 0.9 x mean density 50 exceeds 0.01 / (sqrt(3) * 2 / 1024) = 2.96, so the latter is used.
    ngp = 0.01 * 1024 / (2 * math.sqrt(3))
    assert float(grid.bitfield_threshold) == pytest.approx(ngp)
    grid.update(lambda x: torch.full((x.shape[0],), 1.0), step=0, decay=0.5)
    # Now every cell holds 1 or 50 and the mean, 25.5, still exceeds the optical-thickness value.
    assert float(grid.bitfield_threshold) == pytest.approx(ngp)
    grid.update(lambda x: torch.zeros(x.shape[0]), step=0, decay=0.01, threshold=0.4)
    assert float(grid.bitfield_threshold) == pytest.approx(0.4)
    assert grid.occupancy_fraction() == 0.5


def test_a_flat_field_keeps_every_cell():
    """A freshly initialised model has the same density everywhere: the mean is the threshold,
    and no cell may be dropped by rounding."""
    grid = OccupancyGrid(torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]), resolution=16)
    grid.update(lambda x: torch.full((x.shape[0],), 0.953) + 1e-7 * torch.randn(x.shape[0]), step=0)
    assert grid.occupancy_fraction() == 1.0


def test_a_nearly_flat_field_with_a_few_dense_cells_keeps_its_cells():
    """Early in training most cells sit a few percent below a mean that a few denser cells raise
    (seen on forward-facing scenes in NDC): they stay occupied, so they still get samples."""
    grid = OccupancyGrid(torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]), resolution=16)
    grid.update(lambda x: torch.where(x[:, 0] > 0.8, 1.8, 0.95) + 0.01 * torch.rand(x.shape[0]), step=0)
    assert float(grid.bitfield_threshold) == pytest.approx(MEAN_FRACTION * float(grid.density.mean()))
    assert grid.occupancy_fraction() == 1.0


def test_a_contracted_grid_takes_its_mean_over_the_unit_cube():
    """A freshly initialised field (the same density everywhere) keeps every cell of a
    contracted grid: the shell's stretched densities do not raise the threshold above the
    field. Once the unit cube's air thins out, it is culled while the far shell stays."""
    grid = OccupancyGrid(torch.tensor([[-2.0] * 3, [2.0] * 3]), resolution=16, contracted=True)
    grid.update(lambda x: torch.full((x.shape[0],), 1.0), step=0)
    assert float(grid.bitfield_threshold) == pytest.approx(MEAN_FRACTION)
    assert grid.occupancy_fraction() == 1.0
    inner = grid.cell_centres().abs().amax(dim=1) < 1.0

    def thin_air_dense_centre(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x.abs().amax(dim=1) < 0.25, 50.0, torch.where(x.abs().amax(dim=1) < 1.0, 0.01, 1.0))

    grid.update(thin_air_dense_centre, step=0, decay=0.01)
    centre = grid.cell_centres().abs().amax(dim=1) < 0.25
    occupied = grid.occupied_mask()
    assert bool(occupied[centre].all()) and not bool(occupied[inner & ~centre].any())
    assert bool(occupied[~inner].all())


def test_update_after_warmup_decays_only_sampled_cells_and_favours_occupied_ones():
    grid = _updated_grid()
    before = grid.density.clone()
    queried = []

    def recording_zero_density(x: torch.Tensor) -> torch.Tensor:
        queried.append(x)
        return torch.zeros(x.shape[0])

    grid.update(recording_zero_density, step=1000, warmup_steps=256,
                generator=torch.Generator().manual_seed(1))
    points = torch.cat(queried)
    assert points.shape == (R**3 // 2, 3)
    assert bool((points >= -1.0).all()) and bool((points <= 1.0).all())
    # R^3/4 uniform points hit the occupied half about half the time, R^3/4 always do.
    in_occupied = int((points[:, 0] > 0).sum())
    assert in_occupied > 0.7 * points.shape[0]
    decayed = grid.density != before
    assert torch.equal(grid.density[decayed], before[decayed] * 0.95)
    assert 0 < int(decayed.sum()) < R**3 // 2


def test_cell_centres_follow_the_x_major_layout():
    grid = OccupancyGrid(torch.tensor([[0.0, 0.0, 0.0], [2.0, 4.0, 8.0]]), resolution=4)
    centres = grid.cell_centres()
    ix, iy, iz = 1, 2, 3
    torch.testing.assert_close(centres[(ix * 4 + iy) * 4 + iz], torch.tensor([0.75, 2.5, 7.0]))
    assert centres.shape == (64, 3)


def test_bitfield_packs_cell_c_into_bit_c_mod_8_of_byte_c_div_8():
    mask = torch.zeros(64, dtype=torch.bool)
    mask[[0, 9, 63]] = True
    packed = pack_bitfield(mask)
    assert packed.tolist() == [1, 2, 0, 0, 0, 0, 0, 128]
    random_mask = torch.rand(R**3, generator=torch.Generator().manual_seed(2)) < 0.3
    assert torch.equal(unpack_bitfield(pack_bitfield(random_mask)), random_mask)


def test_state_dict_round_trip_rebuilds_the_bitfield():
    grid = _updated_grid()
    state = grid.state_dict()
    assert "bitfield" not in state and {"density", "aabb", "bitfield_threshold"} <= set(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = OccupancyGrid(torch.tensor(UNIT_BOX), resolution=R)
    loaded.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(loaded.bitfield, grid.bitfield)
    loaded.bitfield.zero_()
    loaded.rebuild_bitfield()
    assert torch.equal(loaded.bitfield, grid.bitfield)


def test_mark_all_occupied_survives_a_state_dict_round_trip():
    grid = _updated_grid()
    grid.mark_all_occupied()
    loaded = OccupancyGrid(torch.tensor(UNIT_BOX), resolution=R)
    loaded.load_state_dict(grid.state_dict())
    assert grid.occupancy_fraction() == 1.0 and loaded.occupancy_fraction() == 1.0
    assert torch.equal(loaded.density, grid.density)


def test_copy_from_copies_the_teachers_grid_and_rejects_another_resolution():
    teacher = _updated_grid()
    student = OccupancyGrid(torch.tensor(UNIT_BOX), resolution=R)
    student.copy_from(teacher)
    assert torch.equal(student.bitfield, teacher.bitfield)
    assert torch.equal(student.density, teacher.density)
    with pytest.raises(ConfigError, match="resolution"):
        OccupancyGrid(torch.tensor(UNIT_BOX), resolution=8).copy_from(teacher)


def test_nan_density_is_reported_as_divergence():
    grid = OccupancyGrid(torch.tensor(UNIT_BOX), resolution=4)
    with pytest.raises(TrainingDiverged):
        grid.update(lambda x: torch.full((x.shape[0],), math.nan), step=0)


@pytest.mark.parametrize("aabb, resolution, match", [
    (UNIT_BOX, 15, "even"),
    ([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]], 8, "exceed"),
])
def test_invalid_grids_are_rejected(aabb, resolution, match):
    with pytest.raises(ConfigError, match=match):
        OccupancyGrid(torch.tensor(aabb), resolution=resolution)
