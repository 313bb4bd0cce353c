"""Which frames of a capture are trained on and which are held out for testing.

A scene with split files (``transforms_train.json``, ``transforms_test.json``, ...) uses them as
they are. A scene with one ``transforms.json``, and every LLFF folder, holds out every
``holdout_every``-th frame (index 0, 8, 16, ... for the default 8, the protocol of the LLFF and
mip-NeRF 360 papers) as its test split, counted in the frames' sorted order (``transforms.json``
frames sorted by ``file_path``, as nerfstudio sorts them; LLFF images by file name); the rest is
the training split, and ``val`` is the test split. ``holdout_every=0`` holds nothing out: every
split is every frame, so test scores are measured on training views.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from taichi_pvd.errors import OptionValueError

#: Every 8th frame is held out unless a scene or the user says otherwise.
DEFAULT_HOLDOUT_EVERY = 8


def check_holdout_every(value: object) -> int:
    """``value`` as a holdout period (0, or an integer from 2: holding out every frame would leave
    nothing to train on); :class:`OptionValueError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value == 1:
        raise OptionValueError("holdout_every", f"must be 0 (no holdout) or an integer of 2 or more, got {value!r}")
    return value


def holdout_indices(n_frames: int, split: str, holdout_every: int) -> list[int]:
    """Indices (in sorted frame order) of ``split`` under the holdout rule of the module notes."""
    if holdout_every == 0:
        return list(range(n_frames))
    held_out = [i % holdout_every == 0 for i in range(n_frames)]
    return [i for i in range(n_frames) if held_out[i] != (split == "train")]


@dataclasses.dataclass(frozen=True)
class SplitSummary:
    """How a scene was split: the rule and the frames on each side (printed at the start of a
    run and recorded in it)."""

    #: The rule in words.
    rule: str
    #: File names of the training frames, in order.
    train: tuple[str, ...]
    #: File names of the test frames, in order.
    test: tuple[str, ...]

    @classmethod
    def held_out(cls, names: Sequence[str], holdout_every: int) -> "SplitSummary":
        """The summary of the holdout rule over frames ``names`` (sorted order)."""
        if holdout_every == 0:
            rule = "no holdout: every frame is trained on and tested on (test scores are on training views)"
        else:
            nth = {2: "every 2nd", 3: "every 3rd"}.get(holdout_every, f"every {holdout_every}th")
            rule = (f"{nth} frame held out for testing (index 0, {holdout_every}, {2 * holdout_every}, ... "
                    "of the frames sorted by file name)")
        pick = {s: [names[i] for i in holdout_indices(len(names), s, holdout_every)] for s in ("train", "test")}
        return cls(rule, tuple(pick["train"]), tuple(pick["test"]))

    def describe(self, shown: int = 4) -> str:
        """One line: the rule, the counts and the first ``shown`` test frames."""
        first = ", ".join(self.test[:shown]) + (", ..." if len(self.test) > shown else "")
        return f"{self.rule}: {len(self.train)} train, {len(self.test)} test ({first})"

    def to_dict(self) -> dict:
        """JSON-compatible form (``SplitSummary(**d)`` after turning lists into tuples)."""
        return {"rule": self.rule, "train": list(self.train), "test": list(self.test)}
