"""Dense grid trilinear interpolation: kernel vs float64 reference, align_corners convention."""

import pytest
import torch

from taichi_pvd.kernels import grid_interpolation
from taichi_pvd.kernels.grid_interpolation import grid_interpolate, grid_interpolate_reference
from tests.launch_limits import assert_row_blocks, record_launch_rows

SHAPE = (5, 3, 9)  # vertex spacing 1/4, 1/2, 1/8 in [0, 1]: vertices are exact in float32


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b).norm() / b.norm()).item()


def boundary_and_random_points(n_random: int, generator: torch.Generator) -> torch.Tensor:
    steps = torch.tensor([r - 1 for r in SHAPE], dtype=torch.float32)
    on_vertices = torch.floor(torch.rand(64, 3, generator=generator) * (steps + 1)) / steps
    on_faces = torch.rand(64, 3, generator=generator)
    on_faces[:, 0] = on_vertices[:, 0]
    corners = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.5]])
    x = torch.cat([torch.rand(n_random, 3, generator=generator), on_vertices, on_faces, corners])
    return x.clamp(0.0, 1.0)


def matches_float64_reference(n_channels: int, seed: int) -> torch.Tensor:
    """Interpolate ``n_channels`` random channels at boundary and random points, forward and
    backward, and check both against the float64 reference; returns the points [N, 3]."""
    gen = torch.Generator().manual_seed(seed)
    x = boundary_and_random_points(1000, gen)
    grid = torch.randn(*SHAPE, n_channels, generator=gen).requires_grad_()
    out = grid_interpolate(x, grid)
    upstream = torch.randn(out.shape, generator=gen)
    out.backward(upstream)

    grid64 = grid.detach().double().requires_grad_()
    ref = grid_interpolate_reference(x.double(), grid64)
    ref.backward(upstream.double())

    assert out.shape == (x.shape[0], n_channels) and out.dtype == torch.float32
    assert rel_err(out, ref) < 1e-3
    assert rel_err(grid.grad, grid64.grad) < 1e-3
    return x


@pytest.mark.parametrize("n_channels", [1, 28])
def test_forward_and_backward_match_float64_reference(n_channels):
    matches_float64_reference(n_channels, seed=n_channels)


def test_many_samples_launch_in_row_blocks_within_taichi_int32_indexing(monkeypatch):
    n_channels, rows_per_launch = 28, 100
    launched = record_launch_rows(monkeypatch, grid_interpolation, ("_grid_forward", "_grid_backward"),
                                  max_values=rows_per_launch * n_channels)
    x = matches_float64_reference(n_channels, seed=3)
    assert_row_blocks(launched, x.shape[0], rows_per_launch)


def test_vertices_return_stored_values_align_corners():
    grid = torch.randn(*SHAPE, 3, generator=torch.Generator().manual_seed(5))
    i, j, k = torch.meshgrid(*(torch.arange(r) for r in SHAPE), indexing="ij")
    index = torch.stack([i, j, k], dim=-1).reshape(-1, 3)
    x = index / torch.tensor([r - 1 for r in SHAPE], dtype=torch.float32)
    out = grid_interpolate(x, grid)
    assert torch.allclose(out, grid[index[:, 0], index[:, 1], index[:, 2]], rtol=0, atol=1e-6)


def test_midpoint_along_x_is_the_average_of_its_two_vertices():
    grid = torch.randn(*SHAPE, 2, generator=torch.Generator().manual_seed(6))
    x = torch.tensor([[0.375, 0.5, 0.25]])  # x between vertices 1 and 2; y on 1; z on 2
    expected = 0.5 * (grid[1, 1, 2] + grid[2, 1, 2])
    assert torch.allclose(grid_interpolate(x, grid)[0], expected, atol=1e-6)


def test_points_outside_the_unit_cube_are_clamped():
    grid = torch.randn(*SHAPE, 4, generator=torch.Generator().manual_seed(7))
    x = torch.tensor([[-0.5, 1.5, 0.3], [2.0, -1.0, 1.0]])
    assert torch.equal(grid_interpolate(x, grid), grid_interpolate(x.clamp(0, 1), grid))


def test_positions_get_no_gradient_and_empty_input_works():
    grid = torch.randn(*SHAPE, 4).requires_grad_()
    x = torch.rand(10, 3, requires_grad=True)
    grid_interpolate(x, grid).sum().backward()
    assert x.grad is None and grid.grad is not None
    empty = grid_interpolate(torch.zeros(0, 3), grid)
    assert empty.shape == (0, 4)
    empty.sum().backward()


def test_bad_inputs_raise_clear_errors():
    grid = torch.randn(*SHAPE, 4)
    x = torch.rand(4, 3)
    with pytest.raises(TypeError, match="float32"):
        grid_interpolate(x.double(), grid)
    with pytest.raises(TypeError, match="float32"):
        grid_interpolate(x, grid.double())
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        grid_interpolate(x[:, :2], grid)
    with pytest.raises(ValueError, match="R >= 2"):
        grid_interpolate(x, torch.randn(1, 4, 4, 2))
    with pytest.raises(ValueError, match="R >= 2"):
        grid_interpolate(x, torch.randn(4, 4, 4))
    with pytest.raises(ValueError, match="contiguous"):
        grid_interpolate(x, grid.permute(2, 1, 0, 3))
