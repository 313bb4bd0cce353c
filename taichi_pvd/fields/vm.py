"""TensoRF vector-matrix field: density and appearance as sums of plane x line products, a
bias-free basis matrix to 15 geometry features, the shared colour head; planes and lines are
upsampled on a schedule during training."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..kernels.vm_interpolation import vm_interpolate
from .base import RadianceField
from .colour_head import GEOMETRY_FEATURES, ColourHead, HeadColour
from .row_buckets import on_bucketed_rows

#: Parameter names of the four factor tensors (planes [3, R, R, C], lines [3, R, C]).
FACTOR_NAMES = ("density_planes", "density_lines", "appearance_planes", "appearance_lines")


@dataclass
class TensoRFConfig:
    """Configuration of :class:`TensoRFField`. Defaults follow TensoRF's VM-48 object-scene
    recipe (density rank 16, appearance rank 48 per mode, 128^3 -> 300^3 voxels)."""

    density_rank: int = 16
    """Plane x line components per mode (3 modes) summed into the raw density."""
    appearance_rank: int = 48
    """Plane x line components per mode for appearance (3 x rank values into the basis matrix)."""
    resolution_init: int = 128
    """Grid points per axis of every plane and line at the start of training (cubic)."""
    resolution_final: int = 300
    """Grid points per axis after the last upsampling step."""
    upsample_steps: tuple[int, ...] = (2000, 3000, 4000, 5500, 7000)
    """Training steps at which planes and lines are upsampled; the voxel count grows
    log-uniformly from ``resolution_init``^3 to ``resolution_final``^3 over these steps
    (TensoRF's schedule for 15-30k steps). Empty: keep ``resolution_init``."""
    density_shift: float = -2.0
    """Added to the summed density components: raw density = sum + shift. The components start
    near 0, so the initial density is about ``exp(shift)`` = 0.14 per world unit: a faint fog
    (Plenoxels starts at 0.1). TensoRF's -10 suits its softplus, not the exp activation: at
    sigma = e^-10 the L1 gradient of the density factors outweighs the photometric one."""
    init_scale: float = 0.1
    """Standard deviation of the normal initialisation of planes and lines (TensoRF: 0.1)."""
    l1_weight: float = 1e-4
    """Weight of the L1 regulariser ``mean|density planes| + mean|density lines|``."""
    network_lr_ratio: float = 0.05
    """Learning rate of the basis matrix and colour head relative to the factors' (TensoRF:
    factors 2e-2, networks 1e-3)."""
    colour_hidden: int = 64
    """Width of the colour head's two hidden layers."""

    def parameter_estimate(self) -> tuple[int, dict[str, int]]:
        """About how many parameters the planes and lines hold at the finest resolution, and
        the option that sets it."""
        r = max(self.resolution_init, self.resolution_final)
        return 3 * (self.density_rank + self.appearance_rank) * (r * r + r), {"resolution_final": r}

    def __post_init__(self) -> None:
        for name in ("density_shift", "init_scale", "l1_weight", "network_lr_ratio"):
            setattr(self, name, float(getattr(self, name)))
        self.upsample_steps = tuple(int(s) for s in self.upsample_steps)
        if any(s < 0 for s in self.upsample_steps) or list(self.upsample_steps) != sorted(set(self.upsample_steps)):
            raise ConfigError(
                f"TensoRFConfig.upsample_steps must be distinct non-negative steps in increasing order, "
                f"got {list(self.upsample_steps)}"
            )
        if self.resolution_init < 2 or self.resolution_final < self.resolution_init:
            raise ConfigError(
                f"TensoRFConfig needs 2 <= resolution_init <= resolution_final, got "
                f"{self.resolution_init} and {self.resolution_final}"
            )


def upsample_resolutions(config: TensoRFConfig) -> list[int]:
    """Grid points per axis after each of ``config.upsample_steps``: the voxel count grows
    log-uniformly from ``resolution_init``^3 to ``resolution_final``^3, i.e. the resolution
    geometrically; the last is exactly ``resolution_final``."""
    n = len(config.upsample_steps)
    lo, hi = math.log(config.resolution_init), math.log(config.resolution_final)
    return [round(math.exp(lo + (hi - lo) * (i + 1) / n)) for i in range(n)]


def resize_planes(planes: torch.Tensor, resolution: int) -> torch.Tensor:
    """Planes [M, R, R, C] -> [M, resolution, resolution, C], bilinear with aligned corners (the
    interpolation the field applies between grid points, so the function is kept where the new
    grid points fall on the old cells)."""
    resized = F.interpolate(planes.permute(0, 3, 1, 2), size=(resolution, resolution), mode="bilinear",
                            align_corners=True)
    return resized.permute(0, 2, 3, 1).contiguous()


def resize_lines(lines: torch.Tensor, resolution: int) -> torch.Tensor:
    """Lines [M, R, C] -> [M, resolution, C], linear with aligned corners."""
    resized = F.interpolate(lines.permute(0, 2, 1), size=resolution, mode="linear", align_corners=True)
    return resized.permute(0, 2, 1).contiguous()


class TensoRFField(HeadColour, RadianceField):
    """TensoRF VM field.

    ``features(x) = [sum(VM_density(x)) + shift, basis(VM_appearance(x))]``: the raw density is
    the sum of all 3 x ``density_rank`` plane x line products, the 15 geometry features a
    bias-free linear map of the 3 x ``appearance_rank`` appearance products.
    """

    kind = "vm"
    config_class = TensoRFConfig
    feature_dim = 16

    def __init__(self, config: TensoRFConfig, aabb: torch.Tensor, generator: torch.Generator | None = None):
        super().__init__(config, aabb)
        r = config.resolution_init

        def factor(*shape: int) -> nn.Parameter:
            return nn.Parameter(config.init_scale * torch.randn(*shape, generator=generator))

        self.density_planes = factor(3, r, r, config.density_rank)
        self.density_lines = factor(3, r, config.density_rank)
        self.appearance_planes = factor(3, r, r, config.appearance_rank)
        self.appearance_lines = factor(3, r, config.appearance_rank)
        self.basis = nn.Linear(3 * config.appearance_rank, GEOMETRY_FEATURES, bias=False)
        self.head = ColourHead(config.colour_hidden)
        self._schedule = dict(zip(config.upsample_steps, upsample_resolutions(config)))

    @property
    def resolution(self) -> int:
        """Current grid points per axis of the planes and lines."""
        return self.density_lines.shape[1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        u = self.normalise(x)
        sigma = vm_interpolate(u, self.density_planes, self.density_lines).sum(dim=-1, keepdim=True)
        app = vm_interpolate(u, self.appearance_planes, self.appearance_lines)
        geometry = on_bucketed_rows(self.basis, app).float()
        return torch.cat([sigma + self.config.density_shift, geometry], dim=-1)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        factors = [getattr(self, name) for name in FACTOR_NAMES]
        nets = list(self.basis.parameters()) + list(self.head.parameters())
        return [
            {"params": factors, "lr": lr},
            {"params": nets, "lr": lr * self.config.network_lr_ratio},
        ]

    def regularization(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """``l1_weight * (mean|density planes| + mean|density lines|)``, a scalar."""
        l1 = self.density_planes.abs().mean() + self.density_lines.abs().mean()
        return self.config.l1_weight * l1

    @torch.no_grad()
    def resample(self, resolution: int) -> None:
        """Resample every plane and line to ``resolution`` grid points per axis (new
        parameters: any optimizer holding the old ones must be rebuilt)."""
        for name in FACTOR_NAMES:
            old = getattr(self, name)
            resize = resize_planes if old.dim() == 4 else resize_lines
            setattr(self, name, nn.Parameter(resize(old.detach(), resolution)))

    def update_schedule(self, step: int) -> bool:
        """Upsample at the configured steps; True when the parameters were replaced."""
        target = self._schedule.get(step)
        if target is None or target == self.resolution:
            return False
        self.resample(target)
        return True

    def load_tensors(self, state: dict[str, torch.Tensor]) -> None:
        """Load a state dict saved at any point of the upsampling schedule: the planes and lines
        are first resized to the saved resolution."""
        missing = [name for name in FACTOR_NAMES if name not in state]
        if missing:
            raise CheckpointError(f"the saved vm field lacks {', '.join(missing)}: it was not saved from a vm field")
        resolution = state["density_lines"].shape[1]
        for name in FACTOR_NAMES:
            expected = list(getattr(self, name).shape)
            expected[1:-1] = [resolution] * (len(expected) - 2)
            if list(state[name].shape) != expected:
                raise CheckpointError(
                    f"saved vm tensor {name} has shape {list(state[name].shape)}, expected {expected}: "
                    "the checkpoint was made with another vm configuration (rank)"
                )
        if resolution != self.resolution:
            self.resample(resolution)
        self.load_state_dict(state, strict=True)
