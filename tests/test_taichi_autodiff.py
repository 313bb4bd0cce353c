"""The hand-written backward kernels give the gradients of Taichi's own autodiff of the forward
kernels (``kernel.grad``), on small random inputs on the CPU (see ``tests/autodiff_cases.py``)."""

import pytest
import torch

from taichi_pvd import backend
from tests import autodiff_cases as cases

backend.init("cpu")
DEVICE = torch.device("cpu")


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def assert_same_gradients(case: cases.GradientCase) -> None:
    expected, actual = case.handwritten(), case.autodiff()
    assert expected.keys() == actual.keys()
    for name, value in expected.items():
        assert value.abs().max() > 0, name  # the inputs reach every gradient checked
        torch.testing.assert_close(actual[name], value, rtol=1e-4, atol=1e-5 * float(value.abs().max()),
                                   msg=lambda m, name=name: f"{case.name}, gradient of {name}: {m}")


def test_hash_encoding_backward_is_taichis_autodiff():
    # Dense, dense and hashed levels (as in tests/test_hash_encoding.py).
    assert_same_gradients(cases.hash_case(200, DEVICE, _generator(), n_levels=3, features_per_level=2,
                                          log2_table_size=12, base_resolution=5, finest_resolution=45))


def test_grid_interpolation_backward_is_taichis_autodiff():
    assert_same_gradients(cases.grid_case(200, (4, 5, 3, 7), DEVICE, _generator()))


def test_vm_interpolation_backward_is_taichis_autodiff():
    assert_same_gradients(cases.vm_case(200, 6, 4, DEVICE, _generator()))


@pytest.mark.parametrize("n_bands", [2, 3, 4])
def test_sh_encoding_backward_is_taichis_autodiff(n_bands):
    assert_same_gradients(cases.sh_case(100, n_bands, DEVICE, _generator()))


@pytest.mark.parametrize("make_case", [cases.composite_case, cases.weights_case], ids=["composite", "weights"])
def test_compositing_backward_is_taichis_autodiff_of_a_restated_forward(make_case):
    case = make_case(40, 12, DEVICE, _generator())
    restated, library = case.forward_pair
    torch.testing.assert_close(restated, library, rtol=1e-5, atol=1e-6)
    assert_same_gradients(case)
