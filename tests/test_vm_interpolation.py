"""TensoRF VM factors: kernel vs float64 reference (values, plane and line gradients), mode axes."""

import pytest
import torch

from taichi_pvd.kernels import vm_interpolation
from taichi_pvd.kernels.vm_interpolation import vm_interpolate, vm_interpolate_reference
from tests.launch_limits import assert_row_blocks, record_launch_rows

RES = 9  # vertex spacing 1/8: vertices are exact in float32


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b).norm() / b.norm()).item()


def boundary_and_random_points(n_random: int, generator: torch.Generator) -> torch.Tensor:
    on_vertices = torch.randint(0, RES, (64, 3), generator=generator) / (RES - 1)
    on_faces = torch.rand(64, 3, generator=generator)
    on_faces[:, 1] = on_vertices[:, 1]
    corners = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.5]])
    return torch.cat([torch.rand(n_random, 3, generator=generator), on_vertices, on_faces, corners])


def matches_float64_reference(n_channels: int, seed: int) -> torch.Tensor:
    """Interpolate random planes and lines of ``n_channels`` channels at boundary and random
    points, forward and backward, and check both against the float64 reference; returns the
    points [N, 3]."""
    gen = torch.Generator().manual_seed(seed)
    x = boundary_and_random_points(1000, gen)
    planes = torch.randn(3, RES, RES, n_channels, generator=gen).requires_grad_()
    lines = torch.randn(3, RES, n_channels, generator=gen).requires_grad_()
    out = vm_interpolate(x, planes, lines)
    upstream = torch.randn(out.shape, generator=gen)
    out.backward(upstream)

    planes64 = planes.detach().double().requires_grad_()
    lines64 = lines.detach().double().requires_grad_()
    ref = vm_interpolate_reference(x.double(), planes64, lines64)
    ref.backward(upstream.double())

    assert out.shape == (x.shape[0], 3 * n_channels) and out.dtype == torch.float32
    assert rel_err(out, ref) < 1e-3
    assert rel_err(planes.grad, planes64.grad) < 1e-3
    assert rel_err(lines.grad, lines64.grad) < 1e-3
    return x


@pytest.mark.parametrize("n_channels", [1, 16])
def test_forward_and_backward_match_float64_reference(n_channels):
    matches_float64_reference(n_channels, seed=n_channels)


def test_many_samples_launch_in_row_blocks_within_taichi_int32_indexing(monkeypatch):
    # One launch over N * 3C >= 2^31 values ran no iteration: a whole-image render of a vm field
    # (144 appearance values a sample, 65536-ray chunks at ~260 samples a ray) came out NaN.
    n_channels, rows_per_launch = 4, 100
    launched = record_launch_rows(monkeypatch, vm_interpolation, ("_vm_forward", "_vm_backward"),
                                  max_values=rows_per_launch * 3 * n_channels)
    x = matches_float64_reference(n_channels, seed=3)
    assert_row_blocks(launched, x.shape[0], rows_per_launch)


def test_modes_pair_planes_and_lines_over_the_documented_axes():
    gen = torch.Generator().manual_seed(11)
    planes = torch.randn(3, RES, RES, 2, generator=gen)
    lines = torch.randn(3, RES, 2, generator=gen)
    i, j, k = 1, 4, 7
    x = torch.tensor([[i, j, k]]) / (RES - 1)
    out = vm_interpolate(x, planes, lines)[0].view(3, 2)
    assert torch.equal(out[0], planes[0, i, j] * lines[0, k])  # plane (x, y), line z
    assert torch.equal(out[1], planes[1, i, k] * lines[1, j])  # plane (x, z), line y
    assert torch.equal(out[2], planes[2, j, k] * lines[2, i])  # plane (y, z), line x


def test_lines_alone_can_require_grad():
    x = torch.rand(20, 3)
    planes = torch.randn(3, RES, RES, 4)
    lines = torch.randn(3, RES, 4, requires_grad=True)
    vm_interpolate(x, planes, lines).sum().backward()
    assert lines.grad is not None and torch.count_nonzero(lines.grad) > 0


def test_positions_get_no_gradient_and_empty_input_works():
    planes = torch.randn(3, RES, RES, 4).requires_grad_()
    lines = torch.randn(3, RES, 4).requires_grad_()
    x = torch.rand(10, 3, requires_grad=True)
    vm_interpolate(x, planes, lines).sum().backward()
    assert x.grad is None and planes.grad is not None and lines.grad is not None
    empty = vm_interpolate(torch.zeros(0, 3), planes, lines)
    assert empty.shape == (0, 12)
    empty.sum().backward()


def test_bad_inputs_raise_clear_errors():
    planes = torch.randn(3, RES, RES, 4)
    lines = torch.randn(3, RES, 4)
    x = torch.rand(4, 3)
    with pytest.raises(TypeError, match="float32"):
        vm_interpolate(x.double(), planes, lines)
    with pytest.raises(TypeError, match="float32"):
        vm_interpolate(x, planes, lines.double())
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        vm_interpolate(x.T.contiguous(), planes, lines)
    with pytest.raises(ValueError, match="match lines"):
        vm_interpolate(x, torch.randn(3, RES, RES, 5), lines)
    with pytest.raises(ValueError, match=r"\[3, R, C\]"):
        vm_interpolate(x, planes, torch.randn(2, RES, 4))
    with pytest.raises(ValueError, match="contiguous"):
        vm_interpolate(x, planes.transpose(1, 2), lines)
