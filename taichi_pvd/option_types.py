"""Type checks of user-given options against the configuration dataclasses they fill.

Options arrive as JSON values (``--set key=value``, ``--distill-set``, library dicts); a string
where a number belongs would otherwise fail deep inside a kernel wrapper with a TypeError.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import ConfigError


def _expected(field: dataclasses.Field) -> Any:
    """An example value of the field's type: its default, or for ``X | None = None`` fields an
    ``X``."""
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        return None
    if default is None:
        annotation = str(field.type)
        return 0.0 if "float" in annotation else 0 if "int" in annotation else None
    return default


def _describe(example: Any) -> str:
    if isinstance(example, bool):
        return "true or false"
    if isinstance(example, int):
        return "an integer"
    if isinstance(example, float):
        return "a number"
    if isinstance(example, str):
        return "a string"
    if isinstance(example, (list, tuple)):
        return f"a list of {_describe(example[0]).removeprefix('an ').removeprefix('a ')}s" if example else "a list"
    return "a set of key=value options"


def _fits(value: Any, example: Any) -> bool:
    if example is None:
        return True
    if isinstance(example, bool):
        return isinstance(value, bool)
    if isinstance(example, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(example, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(example, str):
        return isinstance(value, str)
    if isinstance(example, (list, tuple)):
        return isinstance(value, (list, tuple)) and (not example or all(_fits(v, example[0]) for v in value))
    return isinstance(value, dict)


def check_option_types(config_class: type, values: dict[str, Any], what: str) -> None:
    """Raise :class:`ConfigError` when an entry of ``values`` does not have the type of the
    ``config_class`` field of that name (an integer, a number, true/false, a string, a list).
    Nested dataclass fields (e.g. ``marching``) are checked against their own class, unknown
    names inside them included. Top-level names that are not fields are left to the caller's
    unknown-option check.

    Args:
        config_class: a dataclass type such as :class:`~taichi_pvd.training.config.TrainConfig`.
        values: option name -> value as given by the user.
        what: how the message names these options, e.g. ``"training option"``.
    """
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    for name, value in values.items():
        if name not in fields:
            continue
        example = _expected(fields[name])
        if dataclasses.is_dataclass(example) and isinstance(value, dict):
            check_option_types(type(example), value, f"{what} {name}.")
            _check_known(type(example), value, f"{what} {name}")
            continue
        if not _fits(value, example):
            separator = "" if what.endswith(".") else " "
            raise ConfigError(f"{what}{separator}{name}={value!r} should be {_describe(example)}")


def _check_known(config_class: type, values: dict[str, Any], what: str) -> None:
    """Raise :class:`ConfigError` naming the entries of ``values`` that are not fields of
    ``config_class`` (the options ``what`` holds), with the known ones."""
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) in {what}: {', '.join(unknown)}; known: {', '.join(sorted(names))}")


def config_with_options(config_class: type, values: dict[str, Any], what: str) -> Any:
    """An instance of ``config_class`` (a training or distillation config with a nested
    ``marching`` config): its defaults with ``values`` applied (``None`` values are ignored;
    ``marching`` may be a partial dict), type-checked and validated. Unknown names raise
    :class:`ConfigError` naming them and ``what`` they are."""
    values = {k: v for k, v in values.items() if v is not None}
    check_option_types(config_class, values, what)
    base = dataclasses.asdict(config_class())
    marching = {**base.pop("marching"), **values.pop("marching", {})}
    unknown = sorted(set(values) - set(base))
    if unknown:
        raise ConfigError(f"unknown {what}(s): {', '.join(unknown)}")
    config = config_class.from_dict({**base, **values, "marching": marching})
    config.validate()
    return config
