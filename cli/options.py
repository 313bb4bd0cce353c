"""Parsing helpers shared by the commands: ``--set key=value`` overrides, ``WxH`` sizes, and the
choices of ``--model``-like and ``--preset`` options, read from the library only when a command
needs them."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from typing import Any

import click


def parse_overrides(pairs: tuple[str, ...], what: str) -> dict[str, Any]:
    """``("key=value", ...)`` -> ``{key: value}``; values are read as JSON (numbers, booleans,
    lists) and fall back to plain strings."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=what)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        result[key.strip().replace("-", "_")] = value
    return result


class LazyChoice(click.Choice):
    """A :class:`click.Choice` whose choices ``load()`` returns on first use: when a command
    parses its arguments or shows its help. Declaring the option imports nothing, so that
    ``pvd-ti --help`` does not wait for the library's heavy modules."""

    def __init__(self, load: Callable[[], Iterable[str]], case_sensitive: bool = True):
        self._load = load
        self.case_sensitive = case_sensitive

    @functools.cached_property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self._load())


def _architectures() -> list[str]:
    from taichi_pvd.fields import FIELD_CLASSES

    return sorted(FIELD_CLASSES)


def _presets() -> tuple[str, ...]:
    from taichi_pvd.presets import PRESET_NAMES

    return PRESET_NAMES


#: The architectures (``hash``, ``vm``, ``mlp``, ``grid``).
ARCHITECTURES = LazyChoice(_architectures)
#: The presets (``auto``, ``cpu``, ``gpu``, ``full``), any case.
PRESETS = LazyChoice(_presets, case_sensitive=False)


class ImageSize(click.ParamType):
    """``"WxH"`` (or a single ``"N"`` for N x N) -> ``(width, height)`` in pixels."""

    name = "WxH"

    def convert(self, value, param, ctx) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        try:
            values = [int(p) for p in str(value).lower().split("x")]
        except ValueError:
            values = []
        if len(values) == 1:
            values = values * 2
        if len(values) != 2 or min(values) < 1:
            self.fail(f"expected width x height in pixels, both positive (e.g. 640x480), got {value!r}",
                      param, ctx)
        return values[0], values[1]
