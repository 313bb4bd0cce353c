"""Advice shown to a user before a run starts: what was noticed, and the option that helps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Advice:
    """A finding about a run's settings and the option change that answers it.

    The message names the library's option; a front end (the CLI) may word the same advice with
    its own flags from ``option``, ``kind`` and ``value``.
    """

    finding: str
    """What was noticed, e.g. ``"the finest hash level (2048) is over three times finer than the
    400-pixel images resolve, which only adds hash collisions"``."""
    option: str
    """The library name of the option that helps, e.g. ``"finest_resolution"``."""
    kind: str
    """Which options it belongs to: ``"field"``, ``"training"`` or ``"distillation"``."""
    value: Any = None
    """The value to try; None: a lower value than the run's."""

    def remedy(self, option: str, separator: str = "=") -> str:
        """The advice's remedy, with ``option`` standing for however the option is set and
        ``separator`` between it and the value: ``try finest_resolution=512``,
        ``lower batch_rays``."""
        return f"try {option}{separator}{self.value}" if self.value is not None else f"lower {option}"

    def __str__(self) -> str:
        return f"{self.finding}; {self.remedy(f'the {self.kind} option {self.option}')}"
