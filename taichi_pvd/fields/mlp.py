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
    #: PVD trains its NeRF at 1e-3. Over 600 steps on the demo scene (8x256, 256 rays a step)
    #: 1e-3 / 2e-3 / 4e-3 / 8e-3 reached 19.8 / 20.5 / 20.6 / 20.0 dB; 2e-3 is the cautious end of
    #: the best range for runs 30x longer. The 8x256 network runs under float16 autocast on CUDA
    #: (ignored on the CPU): on lego, 5 minutes alone on an H100 each (106a892, same call), 30,382
    #: steps and 33.79 dB test against 22,125 steps and 32.82 dB in float32 (TF32 products); per
    #: step the two runs learn alike (33.5 dB on the validation views after 18.0k and 17.8k steps).
    #: A second float16 run (6834f30) scored 33.68 dB in 28,621 steps.
    train_defaults = {"lr": 2e-3, "mixed_precision": True}
    #: Distillation into the mlp, measured on lego (hash -> mlp, 60 s, H100s, the teacher's colour
    #: head copied, stages of 300 / 500 steps). Since its step runs as a CUDA graph (24529fd,
    #: four-GPU machine, each run alone on its GPU, same call and teacher, seed 0) it is bound by
    #: the device, and rays a step trade steps for noise: 4096 / 6144 / 8192 / 12288 / 16384 rays
    #: gave 23,281 / 18,465 / 15,551 / 11,777 / 9,665 steps and 34.69 / 34.67 / 34.75 / 34.68 /
    #: 34.45 dB on the validation views, 31 dB after 12.3 / 11.8 / 11.5 / 11.8 / 13.1 s (8192
    #: with seeds 1, 2: 34.39, 34.23 dB). Labels drawn 32 steps at a time instead of 8 (b9e181a,
    #: same call): 17,473 steps against 15,441-16,281, 31 dB after 10.5 s against 11.1-12.1 s,
    #: 34.75 dB against 34.45-34.70. Before the graphs, with the step bound by the host, 16384
    #: rays had been the faster choice (195e1b4). The per-point losses (features, raw density,
    #: colour) weigh a fifth of the paper's 2e-3 and the learning rate is 3e-3 (f679f35, same
    #: teacher, 60 s: the paper's weights ended at 32.93 dB on the validation views, a fifth 33.33,
    #: a fifth with lr 3e-3 33.42, a twentieth 33.06); lr 4e-3 at 8192 rays: 34.20 dB against
    #: 34.23-34.75 (24529fd). Rendering with the parameters' moving average evens out the steps of
    #: the high learning rate (decay 0.995 at b9e181a: 34.58 / 34.60 dB against 34.45-34.70).
    #: Autocast in bfloat16 (see ``Distiller.prefers_bfloat16``): at 1cb7383, seeds 0-4 ended at
    #: 32.27-32.72 dB test against 32.25-32.55 in float32 (seeds 0-2), same call.
    #: Label rays sampled at twice the rendering's spacing (512 steps across the box, 0bb0071,
    #: same call and teacher): 10.8 samples a ray against 21.2, 26.2-27.7k steps in 60 s against
    #: 16.4-16.5k, 31 dB after 7.8-9.2 s against 11.9-12.5 s and 34.54-34.91 dB on the validation
    #: views at 60 s against 34.55-34.65 (seeds 0-2 / 0-1); 768 steps: 20.0k steps, 34.86 / 34.88
    #: dB; 384 steps: 30.5-32.2k steps, 34.63 / 34.76 dB. With the longer runs of the cheaper
    #: step a lower learning rate: lr 2e-3 35.11 / 34.84 dB against 34.86 / 34.88 at 3e-3 (d58b3d4,
    #: same call, seeds 0 / 2), and 34.93-35.11 against 34.51-34.84 (a3da278, same call, seeds
    #: 0-2; 1.5e-3: 35.06 / 34.82).
    distill_defaults = {"batch_rays": 8192, "label_block_steps": 32, "ema_decay": 0.99, "lr": 2e-3,
                        "mixed_precision": True, "feature_weight": 4e-4, "density_weight": 4e-4,
                        "colour_weight": 4e-4, "label_spacing_scale": 2.0}

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

