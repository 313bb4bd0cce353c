"""The interface every radiance field implements: the two-level view ``phi2(phi1(x), d)``.

``features(x)`` is phi1, the "volume feature" at world positions; column 0 of it is always the
raw density ``r`` (``sigma = exp(r)``). ``colour(features, d)`` is phi2. Distillation compares
fields through exactly these two calls, training and rendering through ``forward``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from ..advice import Advice
from ..errors import ConfigError


#: Raw densities above this are read as this: ``sigma = e^40`` is opaque over any step, and
#: ``exp`` of a raw value past 88 overflows float32 to inf (then NaN in compositing). A student
#: that Adam keeps pushing denser (a voxel grid at a high rate) stays finite.
RAW_DENSITY_MAX = 40.0


class _TruncatedExp(torch.autograd.Function):
    """``exp(min(x, RAW_DENSITY_MAX))`` whose gradient uses ``exp(min(x, 15))`` (Instant-NGP's
    trunc_exp: one large raw density cannot blow up the update), and is zero above
    ``RAW_DENSITY_MAX``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x.clamp(max=RAW_DENSITY_MAX))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return torch.where(x > RAW_DENSITY_MAX, 0.0, grad * torch.exp(x.clamp(max=15.0)))


def density_from_raw(raw: torch.Tensor) -> torch.Tensor:
    """Volume density sigma (1/world unit) from raw density values ``r``: ``exp(r)`` with a
    gradient clamped at ``r = 15``, saturating at ``r = RAW_DENSITY_MAX``. Any shape, float32."""
    return _TruncatedExp.apply(raw.float())


def check_config(config: Any) -> None:
    """Raise :class:`ConfigError` for a field config whose numbers are out of range: every
    field declared ``int`` must be positive, or at least the ``"min"`` of its field metadata
    (e.g. 0 for an index)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.type in ("int", int) and isinstance(value, int) and not isinstance(value, bool):
            minimum = f.metadata.get("min", 1)
            if value < minimum:
                need = "positive" if minimum == 1 else f"at least {minimum}"
                raise ConfigError(f"{type(config).__name__}.{f.name} must be {need}, got {value}")


class RadianceField(nn.Module):
    """Base class of the four architectures.

    Subclasses set ``kind`` (the CLI name), ``config_class`` (a dataclass), and implement
    :meth:`features` and :meth:`colour`. ``aabb`` [2, 3] is the world-space box the field covers;
    positions outside it are clamped to its faces by the encodings.
    """

    kind: ClassVar[str]
    config_class: ClassVar[type]
    #: Width of ``features(x)``: 16 for the hash, vm and mlp fields (raw density + 15 geometry
    #: features, aligned so any of them can teach any other), 28 for the grid (1 + 27 SH).
    feature_dim: ClassVar[int]
    #: True when :meth:`features`, :meth:`colour_from_encoding` and :meth:`regularization` run
    #: torch operations only, without Taichi kernels, host synchronisation or random draws: a
    #: distillation step into such a field can be captured in a CUDA graph.
    graph_capturable: ClassVar[bool] = False

    def __init__(self, config: Any, aabb: torch.Tensor):
        super().__init__()
        check_config(config)
        self.config = config
        self.register_buffer("aabb", aabb.detach().float().clone().reshape(2, 3))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """World positions [N, 3] -> unit-cube coordinates [N, 3] in [0, 1] (clamped)."""
        lo, hi = self.aabb[0], self.aabb[1]
        return ((x - lo) / (hi - lo)).clamp(0.0, 1.0).contiguous()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """phi1: world positions [N, 3] -> volume features [N, feature_dim] float32; column 0 is
        the raw density."""
        raise NotImplementedError

    def colour(self, features: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """phi2: features [N, feature_dim] and unit view directions [N, 3] -> RGB [N, 3] in
        [0, 1]."""
        return self.colour_from_encoding(features, self.direction_encoding(directions))

    def direction_encoding(self, directions: torch.Tensor) -> torch.Tensor:
        """What phi2 takes of unit view directions [N, 3]: [N, E] float32 (the SH basis values
        for every architecture). Distillation stores it with each pseudo-label sample."""
        raise NotImplementedError

    def colour_from_encoding(self, features: torch.Tensor, encoding: torch.Tensor) -> torch.Tensor:
        """phi2 from features [N, feature_dim] and :meth:`direction_encoding` [N, E] -> RGB [N, 3]
        in [0, 1]."""
        raise NotImplementedError

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """Volume density sigma [N] (1/world unit) at world positions [N, 3]."""
        return density_from_raw(self.features(x)[:, 0])

    def forward(self, x: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density sigma [N] and colour [N, 3] at world positions [N, 3] seen along unit
        directions [N, 3]."""
        feats = self.features(x)
        return density_from_raw(feats[:, 0]), self.colour(feats, directions)

    def hints_for_images(self, width: int, height: int) -> list[Advice]:
        """Advice on this field's options for training images of ``width`` x ``height`` pixels;
        none by default."""
        return []

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups at base learning rate ``lr`` (subclasses may give
        encodings and networks different rates or weight decay)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def regularization(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """The field's own regulariser (a scalar added to the training loss); zero by default.
        Regularisers that sample draw from ``generator`` (the loop's, on the field's device)."""
        return torch.zeros((), device=self.aabb.device)

    def load_tensors(self, state: dict[str, torch.Tensor]) -> None:
        """Load a state dict saved from a field of the same config; subclasses whose parameter
        shapes change during training (vm upsampling) resize before loading."""
        self.load_state_dict(state, strict=True)

    def update_schedule(self, step: int) -> bool:
        """Called before every training step; returns True when the field replaced its
        parameters (e.g. upsampled), so the trainer must rebuild its optimizer."""
        return False

    def config_dict(self) -> dict[str, Any]:
        """The field's configuration as a JSON-compatible dict."""
        return dataclasses.asdict(self.config)

    def num_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters())
