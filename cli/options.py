"""Parsing helpers shared by the commands: ``--set key=value`` overrides."""

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
