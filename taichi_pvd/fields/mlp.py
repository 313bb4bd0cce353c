"""NeRF field: positional encoding -> deep MLP with a skip connection -> 16 features, shared colour
head."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from .base import RadianceField
from .colour_head import ColourHead, HeadColour
from .row_buckets import on_bucketed_rows


@dataclass
class NeRFConfig:
    """Configuration of :class:`NeRFField`. Defaults are NeRF's coarse network: 10 frequencies,
    8 layers of 256, the encoding concatenated to the fifth layer's output."""

    frequencies: int = 10
    """Frequency bands of the positional encoding (``2^0 .. 2^(frequencies-1)``)."""
    depth: int = 8
    """Hidden layers of the MLP (each Linear + ReLU)."""
    width: int = 256
    """Width of the hidden layers."""
    skip_index: int = field(default=4, metadata={"min": 0})
    """0-based index of the hidden layer whose output is concatenated with the encoding before
    the next layer (NeRF's ``skips=[4]``); must be below ``depth - 1``."""
    colour_hidden: int = 64
    """Width of the colour head's two hidden layers."""

    def parameter_estimate(self) -> tuple[int, dict[str, int]]:
        """About how many parameters the MLP holds, and the option that sets it."""
        return self.depth * (self.width + 6 * self.frequencies + 3) * self.width, {"width": self.width}

    def __post_init__(self) -> None:
        if self.depth < 2:
            raise ConfigError(
                f"NeRFConfig.depth must be at least 2 (the encoding joins the output of a hidden layer "
                f"before the next one), got {self.depth}"
            )
        if not 0 <= self.skip_index < self.depth - 1:
            raise ConfigError(
                f"NeRFConfig.skip_index must be in [0, depth - 1) = [0, {self.depth - 1}), got {self.skip_index}"
            )


def positional_encoding(u: torch.Tensor, frequencies: int) -> torch.Tensor:
    """NeRF's encoding of unit-cube positions ``u`` [N, 3] in [0, 1]: with ``p = 2u - 1`` in
    [-1, 1], ``[p, sin(2^0 p), cos(2^0 p), ..., sin(2^(L-1) p), cos(2^(L-1) p)]`` -> [N, 3 + 6L]
    (per band: sin of the 3 axes, then cos). No factor pi: for the usual 3-unit scene box the
    bands span NeRF's own range (which encodes world coordinates) within a factor 1.5."""
    p = 2.0 * u - 1.0
    scales = 2.0 ** torch.arange(frequencies, device=u.device, dtype=u.dtype)
    angles = p[:, None, :] * scales[:, None]
    bands = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(p.shape[0], 6 * frequencies)
    return torch.cat([p, bands], dim=-1)


def encoding_dim(frequencies: int) -> int:
    """Width of :func:`positional_encoding`'s output."""
    return 3 + 6 * frequencies


class NeRFField(HeadColour, RadianceField):
    """NeRF field: ``features(x) = MLP(PE(x))`` with 16 outputs (raw density + 15 geometry
    features) and the shared colour head.

    ``generator`` is accepted for the common constructor signature and unused: the layers
    draw their initial weights from torch's global generator (seeded by the caller), as the
    hash field's MLPs do.
    """

    kind = "mlp"
    config_class = NeRFConfig
    feature_dim = 16
    graph_capturable = True

    def __init__(self, config: NeRFConfig, aabb: torch.Tensor, generator: torch.Generator | None = None):
        super().__init__(config, aabb)
        enc = encoding_dim(config.frequencies)
        in_dims = [enc] + [config.width + (enc if i - 1 == config.skip_index else 0) for i in range(1, config.depth)]
        self.layers = nn.ModuleList(nn.Linear(d, config.width) for d in in_dims)
        self.output = nn.Linear(config.width, self.feature_dim)
        self.head = ColourHead(config.colour_hidden)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        enc = positional_encoding(self.normalise(x), self.config.frequencies)
        return on_bucketed_rows(self._network, enc).float()

    def _network(self, enc: torch.Tensor) -> torch.Tensor:
        """The MLP on encoded positions [N, encoding width] -> [N, 16]."""
        h = enc
        for i, layer in enumerate(self.layers):
            h = torch.relu(layer(h))
            if i == self.config.skip_index:
                h = torch.cat([h, enc.to(h.dtype)], dim=-1)
        return self.output(h)

