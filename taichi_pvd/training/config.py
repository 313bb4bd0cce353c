"""Training configuration."""

from __future__ import annotations

from dataclasses import dataclass

from ..data.scene_type import check_scene_type
from ..data.splits import DEFAULT_HOLDOUT_EVERY, check_holdout_every
from ..errors import OptionValueError
from .loop_config import LoopConfig


@dataclass
class TrainConfig(LoopConfig):
    """How a field is trained from images: the loop's options (:class:`LoopConfig`) and the
    occupancy grid, backgrounds and image scale. Saved inside every checkpoint."""

    option_kind = "training option"

    grid_resolution: int = 128
    """Occupancy grid cells per axis."""
    grid_update_every: int = 16
    """Steps between occupancy grid updates."""
    grid_warmup_steps: int = 256
    """Steps during which every occupancy cell is re-evaluated at each update."""
    grid_decay: float = 0.95
    """EMA decay of the occupancy densities."""
    random_background: bool = True
    """Composite transparent training pixels on a random colour per ray."""
    downscale: int = 1
    """Integer image downscale factor applied when loading the scene."""
    holdout_every: int = DEFAULT_HOLDOUT_EVERY
    """A scene without split files holds out every ``holdout_every``-th frame for testing (0:
    none; see :mod:`taichi_pvd.data.splits`)."""
    scene_type: str | None = None
    """``bounded``, ``unbounded`` or ``forward-facing`` to override the scene type rule of
    :mod:`taichi_pvd.data.scene_type`; None follows it."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values out of range."""
        super().validate()
        for name in ("grid_resolution", "grid_update_every", "downscale"):
            if getattr(self, name) <= 0:
                raise OptionValueError(name, f"must be positive, got {getattr(self, name)}")
        check_holdout_every(self.holdout_every)
        check_scene_type(self.scene_type)
        if self.grid_warmup_steps < 0:
            raise OptionValueError("grid_warmup_steps", f"must be >= 0, got {self.grid_warmup_steps}")
        if not 0 < self.grid_decay < 1:
            raise OptionValueError("grid_decay", f"must be in (0, 1), got {self.grid_decay}")
