"""Exponential moving average of a field's parameters, the weights a run renders with when
``ema_decay`` is set (Instant-NGP renders with such an average, decay 0.95)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


class ParameterAverage:
    """Keeps ``average = decay * average + (1 - decay) * parameter`` for every parameter of
    ``module``, starting from the parameters' current values.

    Call :meth:`update` after each optimizer step; :meth:`applied` puts the averages in the
    module for rendering or saving and restores the trained values afterwards. A module that
    replaces its parameters (vm upsampling) needs a new average.
    """

    def __init__(self, module: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        named = list(module.named_parameters())
        self.names = [name for name, _ in named]
        self.parameters = [p for _, p in named]
        self.averages = [p.detach().clone() for p in self.parameters]
        self._lerp = get_ema_multi_avg_fn(decay)

    def update(self) -> None:
        """Move every average a ``1 - decay`` step towards its parameter (one fused launch per
        dtype and device)."""
        self._lerp(self.averages, [p.detach() for p in self.parameters], None)

    def state(self) -> dict[str, torch.Tensor]:
        """The averages by parameter name (as in the module's ``state_dict``)."""
        return dict(zip(self.names, self.averages))

    def trained(self) -> dict[str, torch.Tensor]:
        """The trained (not averaged) parameter values by name."""
        return {name: p.detach() for name, p in zip(self.names, self.parameters)}

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the module holds the averages; its trained values come back after."""
        with torch.no_grad():
            trained = [p.detach().clone() for p in self.parameters]
            for p, average in zip(self.parameters, self.averages):
                p.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, value in zip(self.parameters, trained):
                    p.copy_(value)


def load_parameters(module: nn.Module, values: dict[str, torch.Tensor]) -> None:
    """Copy ``values`` (by parameter name, any device) into ``module``'s parameters in place;
    raises ``KeyError`` naming the parameters ``values`` lacks."""
    named = dict(module.named_parameters())
    missing = sorted(set(named) - set(values))
    if missing:
        raise KeyError(f"no value for parameter(s) {', '.join(missing)}")
    with torch.no_grad():
        for name, p in named.items():
            p.copy_(values[name])
