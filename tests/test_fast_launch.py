"""The lean Taichi launch path gives the same results as Taichi's own, call after call."""

import pytest
import taichi as ti
import torch

from taichi_pvd import backend
from taichi_pvd.kernels.fast_launch import fast_launch


@fast_launch
@ti.kernel
def _axpb(x: ti.types.ndarray(dtype=ti.f32, ndim=2), out: ti.types.ndarray(dtype=ti.f32, ndim=1),
          a: ti.f32, b: ti.i32, c: ti.u32, column: ti.template(), offset: ti.types.vector(3, ti.f64)):
    for i in range(x.shape[0]):
        out[i] = a * x[i, column] + b + ti.cast(c, ti.f32) + ti.cast(offset[column], ti.f32)


@fast_launch
@ti.kernel
def _total(x: ti.types.ndarray(dtype=ti.f32, ndim=1)) -> ti.f32:
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    return s


def test_repeated_calls_follow_every_argument():
    backend.init()
    device = backend.device()
    for call, n in enumerate([5, 5, 17, 1, 0, 9]):
        x = torch.randn(n, 3, device=device)
        out = torch.zeros(n, device=device)
        a, b, c, column = 0.5 + call, -call, 2 * call, call % 3
        offset = (0.25 * call, -1.5 * call, 3.0 + call)
        _axpb(x, out, a, b, c, column, offset)
        torch.testing.assert_close(out, a * x[:, column] + b + c + offset[column])
    # One compiled instance per template value (and tensor signature), reused afterwards.
    assert len(_axpb._compiled) == 3


def test_non_contiguous_tensor_is_refused_on_the_fast_path():
    backend.init()
    x = torch.randn(4, 6, device=backend.device())
    out = torch.zeros(4, device=backend.device())
    _axpb(x[:, :3].contiguous(), out, 1.0, 0, 0, 0, (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="contiguous"):
        _axpb(x[:, ::2], out, 1.0, 0, 0, 0, (0.0, 0.0, 0.0))


def test_kernels_with_a_return_value_keep_taichis_path():
    backend.init()
    x = torch.arange(5, dtype=torch.float32, device=backend.device())
    assert _total(x) == pytest.approx(10.0)
    assert _total(x * 2) == pytest.approx(20.0)
    assert not _total._compiled
