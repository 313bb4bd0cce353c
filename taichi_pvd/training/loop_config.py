"""The options of the optimisation loop that training and distillation share."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from ..errors import ConfigError, OptionValueError
from ..rendering.volume import MarchingConfig

#: Options that earlier versions had and this one does not. A stored config (a checkpoint's)
#: that holds them still loads: :meth:`LoopConfig.from_dict` drops them. Given by a user, they
#: are unknown options like any other.
REMOVED_OPTIONS = frozenset({
    "error_guided_share",
    "error_tiles",
    "label_steps_across_box",
    "opacity_entropy_weight",
    "pixel_jitter",
    "skip_occluded",
    "virtual_cameras_per_block",
})

Config = TypeVar("Config", bound="LoopConfig")


@dataclass
class LoopConfig:
    """Steps, rays, learning-rate schedule, Adam, parameter average, validation, checkpoints,
    time limit, snapshots, precision, seed and ray marching of an optimisation run. Training
    (:class:`~taichi_pvd.training.config.TrainConfig`) and distillation
    (:class:`~taichi_pvd.distill.config.DistillConfig`) add their own options."""

    #: How error messages name these options (``"unknown training option(s)"``).
    option_kind: ClassVar[str] = "loop option"

    steps: int = 20000
    """Optimizer steps."""
    batch_rays: int = 8192
    """Rays per step."""
    lr: float = 1e-2
    """Peak learning rate (Adam; fields may scale it per parameter group)."""
    lr_final_ratio: float = 0.03
    """Learning rate at the last step as a fraction of ``lr`` (cosine decay)."""
    lr_warmup_steps: int = 0
    """Steps of linear learning-rate warm-up before the decay."""
    adam_eps: float = 1e-15
    """Adam's epsilon (tiny, as Instant-NGP: hash entries see sparse gradients)."""
    adam_beta2: float = 0.99
    """Adam's second-moment decay (Instant-NGP's 0.99; PyTorch's default is 0.999)."""
    ema_decay: float = 0.0
    """Decay of a moving average of the parameters, updated after every step, which the run
    validates, renders and saves (0: off, the last step's parameters)."""
    val_every: int = 1000
    """Steps between validations (0: only at the end)."""
    val_views: int = 4
    """Views rendered at each validation."""
    checkpoint_every: int = 2000
    """Steps between checkpoints (0: only at the end and on interruption)."""
    time_limit_s: float = 0.0
    """Stop after this many seconds of optimisation (0: no limit); the learning rate then decays
    over whichever of ``steps`` and the time limit ends first."""
    snapshot_times_s: tuple[float, ...] = ()
    """Optimisation times (seconds) at which a copy of the checkpoint is kept in ``snapshots/<t>s/``
    of the run folder (an ordinary run folder)."""
    mixed_precision: bool = False
    """Autocast of the field evaluations on CUDA: float16 with a dynamic loss scale, or bfloat16
    where the loop prefers it and the GPU has it (distillation); ignored on the CPU."""
    seed: int = 0
    """Seed of every random draw."""
    marching: MarchingConfig = field(default_factory=MarchingConfig)
    """How rays are sampled through the occupancy grid."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values out of range."""
        for name in ("steps", "batch_rays", "val_views"):
            if getattr(self, name) <= 0:
                raise OptionValueError(name, f"must be positive, got {getattr(self, name)}")
        for name in ("val_every", "checkpoint_every", "lr_warmup_steps"):
            if getattr(self, name) < 0:
                raise OptionValueError(name, f"must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise OptionValueError("lr", f"must be positive, got {self.lr}")
        if not 0 < self.lr_final_ratio <= 1:
            raise OptionValueError("lr_final_ratio", f"must be in (0, 1], got {self.lr_final_ratio}")
        if self.time_limit_s < 0:
            raise OptionValueError("time_limit_s", f"must be >= 0 seconds, got {self.time_limit_s}")
        if not all(isinstance(t, (int, float)) and t > 0 for t in self.snapshot_times_s):
            raise OptionValueError("snapshot_times_s", f"must be positive seconds, got {list(self.snapshot_times_s)}")
        if not 0 <= self.adam_beta2 < 1:
            raise OptionValueError("adam_beta2", f"must be in [0, 1), got {self.adam_beta2}")
        if not 0 <= self.ema_decay < 1:
            raise OptionValueError("ema_decay", f"must be in [0, 1) (0: off), got {self.ema_decay}")

    @classmethod
    def from_dict(cls: type[Config], data: dict[str, Any]) -> Config:
        """Rebuild from :func:`dataclasses.asdict` output (as stored in a checkpoint):
        ``marching`` as a dict of :class:`MarchingConfig` fields, missing options at their
        defaults, :data:`REMOVED_OPTIONS` dropped; other unknown names raise
        :class:`ConfigError`."""
        values = {k: v for k, v in data.items() if k not in REMOVED_OPTIONS}
        marching = MarchingConfig(**values.pop("marching", {}))
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown {cls.option_kind}(s): {', '.join(unknown)}")
        return cls(marching=marching, **values)
