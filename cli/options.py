"""Parsing helpers shared by the commands: ``--set key=value`` overrides and ``WxH`` sizes."""

from __future__ import annotations

import json
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
