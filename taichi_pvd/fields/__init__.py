"""The four architectures behind one interface (:class:`RadianceField`), built by name."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..errors import ConfigError
from .base import RadianceField, density_from_raw
from .hash_grid import HashGridConfig, HashGridField
from .mlp import NeRFConfig, NeRFField
from .vm import TensoRFConfig, TensoRFField
from .voxel_grid import VoxelGridConfig, VoxelGridField

#: CLI name -> field class. Each class carries its ``config_class``.
FIELD_CLASSES: dict[str, type[RadianceField]] = {
    HashGridField.kind: HashGridField,
    TensoRFField.kind: TensoRFField,
    NeRFField.kind: NeRFField,
    VoxelGridField.kind: VoxelGridField,
}


def field_class(kind: str) -> type[RadianceField]:
    """The field class registered under ``kind``; :class:`ConfigError` for an unknown name."""
    try:
        return FIELD_CLASSES[kind]
    except KeyError:
        known = ", ".join(sorted(FIELD_CLASSES))
        raise ConfigError(f"unknown architecture {kind!r}: choose one of {known}") from None


def make_config(kind: str, overrides: dict[str, Any] | None = None) -> Any:
    """The default config of architecture ``kind`` with ``overrides`` (name -> value) applied;
    :class:`ConfigError` names any unknown option."""
    cls = field_class(kind).config_class
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides or {}) - names)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for the {kind!r} field; known: {', '.join(sorted(names))}"
        )
    return cls(**(overrides or {}))


def make_field(kind: str, aabb: torch.Tensor, config: dict[str, Any] | None = None,
               generator: torch.Generator | None = None) -> RadianceField:
    """Build a field of architecture ``kind`` over the world box ``aabb`` [2, 3] from a config
    dict (missing entries take their defaults)."""
    return field_class(kind)(make_config(kind, config), aabb, generator=generator)


__all__ = [
    "FIELD_CLASSES",
    "HashGridConfig",
    "HashGridField",
    "NeRFConfig",
    "NeRFField",
    "RadianceField",
    "TensoRFConfig",
    "TensoRFField",
    "VoxelGridConfig",
    "VoxelGridField",
    "density_from_raw",
    "field_class",
    "make_config",
    "make_field",
]
