"""Spherical harmonics: constants, orthonormality, Instant-NGP's form, kernel vs float64 torch."""

import math

import pytest
import torch

from taichi_pvd.errors import ConfigError
from taichi_pvd.kernels import sh_encoding
from taichi_pvd.kernels.sh_encoding import sh_encode, sh_encode_reference


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b).norm() / b.norm()).item()


def unit_directions(n: int, seed: int) -> torch.Tensor:
    d = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed))
    axes = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 0, -1.0]])
    return torch.cat([torch.nn.functional.normalize(d, dim=1), axes])


def fibonacci_sphere(n: int) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (3 - math.sqrt(5)) * i
    r = (1 - z * z).sqrt()
    return torch.stack([r * phi.cos(), r * phi.sin(), z], dim=1)


def test_constants_match_closed_forms():
    root_pi = math.sqrt(math.pi)
    expected = {
        "C0": 1 / (2 * root_pi),
        "C1": math.sqrt(3) / (2 * root_pi),
        "C2A": math.sqrt(15) / (2 * root_pi),
        "C2B": math.sqrt(5) / (4 * root_pi),
        "C2C": math.sqrt(15) / (4 * root_pi),
        "C3A": math.sqrt(35 / 2) / (4 * root_pi),
        "C3B": math.sqrt(105) / (2 * root_pi),
        "C3C": math.sqrt(21 / 2) / (4 * root_pi),
        "C3D": math.sqrt(7) / (4 * root_pi),
        "C3E": math.sqrt(105) / (4 * root_pi),
    }
    for name, value in expected.items():
        assert getattr(sh_encoding, name) == pytest.approx(value, rel=1e-14), name


def test_basis_is_orthonormal_on_the_sphere():
    d = fibonacci_sphere(20000)
    y = sh_encode_reference(d, 4)
    gram = y.T @ y * (4 * math.pi / d.shape[0])
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=1e-3)


def test_unit_directions_match_instant_ngp_form():
    # tiny-cuda-nn's expressions (which use x^2 + y^2 + z^2 = 1), signs included.
    d = unit_directions(500, seed=1)
    x, y, z = d.double().unbind(1)
    x2, y2, z2 = x * x, y * y, z * z
    tcnn = torch.stack(
        [
            torch.full_like(x, 0.28209479177387814),
            -0.48860251190291987 * y,
            0.48860251190291987 * z,
            -0.48860251190291987 * x,
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.94617469575755997 * z2 - 0.31539156525251999,
            -1.0925484305920792 * x * z,
            0.54627421529603959 * x2 - 0.54627421529603959 * y2,
            0.59004358992664352 * y * (-3.0 * x2 + y2),
            2.8906114426405538 * x * y * z,
            0.45704579946446572 * y * (1.0 - 5.0 * z2),
            0.3731763325901154 * z * (5.0 * z2 - 3.0),
            0.45704579946446572 * x * (1.0 - 5.0 * z2),
            1.4453057213202769 * z * (x2 - y2),
            0.59004358992664352 * x * (-x2 + 3.0 * y2),
        ],
        dim=1,
    )
    assert torch.allclose(sh_encode(d, 4).double(), tcnn, atol=1e-6)


@pytest.mark.parametrize("n_bands", [1, 2, 3, 4])
def test_forward_and_backward_match_float64_reference(n_bands):
    gen = torch.Generator().manual_seed(n_bands)
    d = unit_directions(1000, seed=n_bands).requires_grad_()
    out = sh_encode(d, n_bands)
    upstream = torch.randn(out.shape, generator=gen)
    out.backward(upstream)

    d64 = d.detach().double().requires_grad_()
    ref = sh_encode_reference(d64, n_bands)
    assert out.shape == (d.shape[0], n_bands**2) and out.dtype == torch.float32
    assert rel_err(out, ref) < 1e-3
    if n_bands == 1:
        assert torch.count_nonzero(d.grad) == 0
    else:
        ref.backward(upstream.double())
        assert rel_err(d.grad, d64.grad) < 1e-3


def test_empty_input_gives_empty_output():
    assert sh_encode(torch.zeros(0, 3), 3).shape == (0, 9)


def test_bad_inputs_raise_clear_errors():
    d = unit_directions(4, seed=0)
    for n_bands in (0, 5, 2.0):
        with pytest.raises(ConfigError, match="bands"):
            sh_encode(d, n_bands)
    with pytest.raises(TypeError, match="float32"):
        sh_encode(d.double(), 4)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        sh_encode(torch.rand(4, 4), 4)
