"""Plenoxels-style field: a dense voxel grid of raw density and degree-2 spherical-harmonic colour
coefficients, trilinearly interpolated; no network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..kernels.grid_interpolation import grid_interpolate
from ..kernels.sh_encoding import sh_encode
from .base import RadianceField, density_from_raw

#: SH bands of the colour (degree 2): 9 coefficients per colour channel.
SH_BANDS = 3
SH_COEFFS = SH_BANDS**2


@dataclass
class VoxelGridConfig:
    """Configuration of :class:`VoxelGridField`."""

    resolution: int = 128
    """Grid points per axis (cubic, spanning the scene box corner to corner)."""
    init_raw_density: float = -2.0
    """Initial raw density of every voxel: sigma = e^-2 = 0.14 per world unit, a faint fog
    (Plenoxels starts at 0.1)."""
    tv_samples: int = 32768
    """Voxels drawn at random per :meth:`VoxelGridField.regularization` call for the total
    variation and L1 (the full grid is too large to difference every step; Plenoxels also
    regularises a random 1 %)."""
    tv_density_weight: float = 5e-5
    """Weight of the total variation of the raw density (without any, the density collapses
    between the views; the weights' measurements are in ``docs/experiments.md``)."""
    tv_sh_weight: float = 5e-5
    """Weight of the total variation of the SH coefficients."""
    l1_density_weight: float = 1e-5
    """Weight of the mean density sigma at the sampled voxels (L1 sparsity of empty space)."""

    def parameter_estimate(self) -> tuple[int, dict[str, int]]:
        """How many parameters the grid holds (density and SH colour per point), and the option
        that sets it."""
        return self.resolution**3 * (1 + 3 * SH_COEFFS), {"resolution": self.resolution}

    def __post_init__(self) -> None:
        for name in ("init_raw_density", "tv_density_weight", "tv_sh_weight", "l1_density_weight"):
            setattr(self, name, float(getattr(self, name)))
        if self.resolution < 2:
            raise ConfigError(f"VoxelGridConfig.resolution must be at least 2, got {self.resolution}")


class VoxelGridField(RadianceField):
    """Dense voxel grid field.

    Grid layout ``[R, R, R, 28]`` (x, y, z, channel), float32: channel 0 is the raw density,
    channel ``1 + 9 c + k`` the SH coefficient ``k`` (0..8, the order of :func:`sh_encode`) of
    colour ``c`` (0 red, 1 green, 2 blue), Plenoxels' colour-major layout.
    ``features(x)`` is the trilinear interpolation of all 28 channels, ``colour(features, d)`` is
    ``sigmoid(sum_k SH_k(d) * coeff[c, k])``.
    """

    kind = "grid"
    config_class = VoxelGridConfig
    feature_dim = 1 + 3 * SH_COEFFS

    def __init__(self, config: VoxelGridConfig, aabb: torch.Tensor, generator: torch.Generator | None = None):
        super().__init__(config, aabb)
        r = config.resolution
        grid = torch.zeros(r, r, r, self.feature_dim)
        grid[..., 0] = config.init_raw_density
        self.grid = nn.Parameter(grid)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return grid_interpolate(self.normalise(x), self.grid)

    def direction_encoding(self, directions: torch.Tensor) -> torch.Tensor:
        return sh_encode(directions.float().contiguous(), SH_BANDS)

    def colour_from_encoding(self, features: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
        coeffs = features[:, 1:].float().reshape(-1, 3, SH_COEFFS)
        return torch.sigmoid((coeffs * sh[:, None, :]).sum(dim=-1))

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return [{"params": [self.grid], "lr": lr}]

    def regularization(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """Total variation of density and SH plus L1 of the density, at ``tv_samples`` voxels
        drawn at random with ``generator`` (on the grid's device; each call a new draw; a
        scalar). The training loop passes its own generator, so resumed runs redraw the same
        voxels.

        TV at a voxel is the squared difference to its +x, +y and +z neighbours summed over the
        three axes, averaged over the sampled voxels and the channels of the group (1 density,
        27 SH); the L1 term is the mean sigma ``exp(raw)`` at the sampled voxels.
        """
        c = self.config
        r, channels = self.grid.shape[0], self.grid.shape[-1]
        corner = torch.randint(0, r - 1, (c.tv_samples, 3), device=self.grid.device, generator=generator)
        flat = (corner[:, 0] * r + corner[:, 1]) * r + corner[:, 2]
        neighbours = torch.cat([flat, flat + r * r, flat + r, flat + 1])
        values = self.grid.reshape(-1, channels)[neighbours].reshape(4, c.tv_samples, channels)
        centre = values[0]
        squared = ((values[1:] - centre) ** 2).sum(dim=0)
        tv_density = squared[:, 0].mean()
        tv_sh = squared[:, 1:].mean()
        l1 = density_from_raw(centre[:, 0]).mean()
        return c.tv_density_weight * tv_density + c.tv_sh_weight * tv_sh + c.l1_density_weight * l1
