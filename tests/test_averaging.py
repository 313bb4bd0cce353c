"""The parameters' moving average: the recurrence against a float64 reference, and the swap in
and out of a module."""

import pytest
import torch
from torch import nn

from taichi_pvd.training.averaging import ParameterAverage, load_parameters


def test_the_average_follows_the_recurrence_and_swaps_in_and_out():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    average = ParameterAverage(module, decay=0.9)
    reference = {name: p.detach().double().clone() for name, p in module.named_parameters()}
    for _ in range(5):
        with torch.no_grad():
            for p in module.parameters():
                p.add_(torch.randn_like(p))
        average.update()
        for name, p in module.named_parameters():
            reference[name] = 0.9 * reference[name] + 0.1 * p.detach().double()
    trained = {name: p.detach().clone() for name, p in module.named_parameters()}
    for name, value in average.state().items():
        torch.testing.assert_close(value.double(), reference[name], rtol=1e-6, atol=1e-6)
        assert not torch.equal(value, trained[name])
    x = torch.randn(7, 3)
    with average.applied():
        for name, p in module.named_parameters():
            assert torch.equal(p, average.state()[name])
        inside = module(x)
    for name, p in module.named_parameters():
        assert torch.equal(p, trained[name])
    assert not torch.allclose(inside, module(x))


def test_load_parameters_names_what_is_missing_and_bad_decays_are_refused():
    module = nn.Linear(2, 2)
    with pytest.raises(KeyError, match="bias"):
        load_parameters(module, {"weight": torch.zeros(2, 2)})
    load_parameters(module, {"weight": torch.ones(2, 2), "bias": torch.zeros(2)})
    assert torch.equal(module.weight, torch.ones(2, 2))
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="decay"):
            ParameterAverage(module, bad)
