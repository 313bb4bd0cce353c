"""Instant-NGP field: multiresolution hash encoding -> density MLP -> 16 features, shared colour
head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..advice import Advice
from ..kernels.hash_encoding import hash_encode, hash_grid_layout, init_hash_table
from .base import RadianceField
from .colour_head import ColourHead, HeadColour
from .row_buckets import BucketedSequential


@dataclass
class HashGridConfig:
    """Configuration of :class:`HashGridField`."""

    n_levels: int = 16
    """Resolution levels of the hash encoding."""
    features_per_level: int = 2
    """Features stored per table entry (Instant-NGP's 2; ``docs/tuning.md`` has a recipe with 4)."""
    log2_table_size: int = 19
    """log2 of the entries per level (levels coarse enough are indexed densely and use fewer)."""
    base_resolution: int = 16
    """Grid resolution of the coarsest level, across the whole scene box."""
    finest_resolution: int = 2048
    """Grid resolution of the finest level, across the whole scene box (Instant-NGP's 2048,
    sized for 800x800 images). Levels much finer than a pixel's footprint only add hash
    collisions (see :func:`suggested_finest_resolution`)."""
    hidden: int = 64
    """Width of the density MLP's hidden layer."""
    colour_hidden: int = 64
    """Width of the colour head's two hidden layers."""
    mlp_weight_decay: float = 1e-6
    """L2 weight decay on the MLPs (not on the hash table)."""

    def parameter_estimate(self) -> tuple[int, dict[str, int]]:
        """About how many parameters the field holds (at most, the hash table's), and the
        options that set it."""
        sizes = {"log2_table_size": self.log2_table_size}
        if self.log2_table_size <= 0:
            return 0, sizes
        return self.n_levels * self.features_per_level * 2**self.log2_table_size, sizes


def suggested_finest_resolution(image_side: int) -> int:
    """A finest hash level for images of ``image_side`` pixels (their larger side): about 1.25
    pixels per level cell across the scene box, rounded to a multiple of 128 (at least 128)."""
    return 128 * max(1, round(1.25 * image_side / 128))


class HashGridField(HeadColour, RadianceField):
    """Hash grid field: ``features(x) = MLP(hash_encode(x))`` with 16 outputs."""

    kind = "hash"
    config_class = HashGridConfig
    feature_dim = 16

    def __init__(self, config: HashGridConfig, aabb: torch.Tensor, generator: torch.Generator | None = None):
        super().__init__(config, aabb)
        self.layout = hash_grid_layout(
            n_levels=config.n_levels,
            features_per_level=config.features_per_level,
            log2_table_size=config.log2_table_size,
            base_resolution=config.base_resolution,
            finest_resolution=config.finest_resolution,
        )
        self.table = nn.Parameter(init_hash_table(self.layout, generator=generator))
        self.density_net = BucketedSequential(
            nn.Linear(self.layout.output_dim, config.hidden),
            nn.ReLU(inplace=True),
            nn.Linear(config.hidden, self.feature_dim),
        )
        self.head = ColourHead(config.colour_hidden)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        enc = hash_encode(self.normalise(x), self.table, self.layout)
        return self.density_net(enc).float()

    def hints_for_images(self, width: int, height: int) -> list[Advice]:
        """Suggest a coarser finest level when it exceeds three times the images' larger side."""
        side = max(width, height)
        suggested = suggested_finest_resolution(side)
        if self.config.finest_resolution <= 3 * side or suggested >= self.config.finest_resolution:
            return []
        finding = (f"the finest hash level ({self.config.finest_resolution}) is over three times finer than the "
                   f"{side}-pixel images resolve, which only adds hash collisions")
        return [Advice(finding, "finest_resolution", "field", suggested)]

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        nets = list(self.density_net.parameters()) + list(self.head.parameters())
        return [
            {"params": [self.table], "lr": lr, "weight_decay": 0.0},
            {"params": nets, "lr": lr, "weight_decay": self.config.mlp_weight_decay},
        ]
