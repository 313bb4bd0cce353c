"""Training configuration."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ConfigError
from ..rendering.volume import MarchingConfig


def check_loop_options(config: Any) -> None:
    """Raise :class:`ConfigError` for out-of-range options that training and distillation
    configs share (``time_limit_s``, ``snapshot_times_s``, ``adam_beta2``, ``ema_decay``,
    ``error_guided_share``, ``error_tiles``)."""
    if config.time_limit_s < 0:
        raise ConfigError(f"time-limit must be >= 0 seconds, got {config.time_limit_s}")
    if not all(isinstance(t, (int, float)) and t > 0 for t in config.snapshot_times_s):
        raise ConfigError(f"snapshot times must be positive seconds, got {list(config.snapshot_times_s)}")
    if not 0 <= config.adam_beta2 < 1:
        raise ConfigError(f"adam-beta2 must be in [0, 1), got {config.adam_beta2}")
    if not 0 <= config.ema_decay < 1:
        raise ConfigError(f"ema-decay must be in [0, 1) (0: off), got {config.ema_decay}")
    if not 0.0 <= config.error_guided_share <= 1.0:
        raise ConfigError(f"error-guided-share must be within [0, 1] (0: off), got {config.error_guided_share}")
    if config.error_tiles < 1:
        raise ConfigError(f"error-tiles must be positive, got {config.error_tiles}")


@dataclass
class TrainConfig:
    """How a field is trained from images. Saved inside every checkpoint."""

    steps: int = 20000
    """Optimizer steps."""
    batch_rays: int = 8192
    """Rays per step, drawn uniformly across all training pixels (the ``grid`` architecture
    defaults to 16384: see its ``train_defaults``)."""
    lr: float = 1e-2
    """Peak learning rate (Adam)."""
    lr_final_ratio: float = 0.03
    """Learning rate at the last step, as a fraction of ``lr`` (cosine decay)."""
    lr_warmup_steps: int = 0
    """Linear warm-up of the learning rate."""
    adam_eps: float = 1e-15
    """Adam epsilon (tiny, as Instant-NGP: hash entries see sparse gradients)."""
    adam_beta2: float = 0.99
    """Adam's second-moment decay (Instant-NGP's 0.99; PyTorch's default is 0.999)."""
    ema_decay: float = 0.0
    """Decay of an exponential moving average of the parameters, updated after every step;
    the run validates, renders and saves the average (Instant-NGP's 0.95). 0: off, the last
    step's parameters. On lego at 400x400 (hash, finest level 512, 4 features a level, 120 s
    on an H100) 0.99 scored 35.05 / 35.07 dB with seeds 0 / 1 against 34.98 / 35.00 without."""
    opacity_entropy_weight: float = 0.0
    """Weight of the mean of ``-o log o`` over the batch's rays, ``o`` a ray's accumulated
    opacity: pushes every ray to fully opaque or fully clear, against semi-transparent floaters
    (ngp_pl and taichi-nerfs use 1e-3). 0: off."""
    grid_resolution: int = 128
    """Occupancy grid cells per axis."""
    grid_update_every: int = 16
    """Steps between occupancy grid updates."""
    grid_warmup_steps: int = 256
    """Steps during which every occupancy cell is re-evaluated at each update."""
    grid_decay: float = 0.95
    """EMA decay of the occupancy densities."""
    val_every: int = 1000
    """Steps between validation renders (0: only at the end)."""
    val_views: int = 4
    """Validation views rendered each time."""
    checkpoint_every: int = 2000
    """Steps between checkpoints (0: only at the end and on interruption)."""
    mixed_precision: bool = False
    """float16 autocast for the MLPs on CUDA, with a dynamic loss scale; ignored on the CPU. Off
    by default, on for the mlp (its ``train_defaults``: the 8x256 network trains 1.37x more steps
    a second). In bfloat16 a 5-minute lego mlp scored 33.31 dB test against 33.68 / 33.79 in
    float16 (H100, 1cb7383 against 6834f30 / 106a892, about as many steps), so training stays in
    float16 (distillation takes bfloat16: see its ``mixed_precision``). The small MLPs of the
    other fields run their float32 products on tensor cores in TF32 already, and on an H100 a
    lego hash step took 11.4 ms in float32 against 14.1 ms under autocast (its casts and loss
    scaling cost more host time than the halved activations save; ``benchmarks/profile_train.py``)."""
    error_guided_share: float = 0.0
    """Share of each step's rays drawn in proportion to the field's recent error, kept per tile
    of every training image (the rest uniform over all pixels; 0: all uniform), as
    Instant-NGP's error map: rays go to edges and fine detail, where most squared error lies.
    CPU demo (hash, cpu preset, 2000 steps, two seeds): 0.5 ended at 27.28 / 27.15 dB on the
    validation views against 26.98 / 26.63 with uniform rays; its rays cross more of the
    object, so a CPU step takes longer (600 steps alone: 35.9 s and 25.11 dB against 28.8 s and
    23.78 dB). Off by default: on lego (hash, finest 512, 4 features a level, 120 s on an H100)
    guided rays carried 49 samples against 24, so runs made 10.5-11.0k steps instead of 18k and
    ended at 34.87-34.94 dB against 34.98 / 35.00 with uniform rays."""
    error_tiles: int = 16
    """Tiles per side of each training image in the error map of ``error_guided_share``."""
    pixel_jitter: bool = False
    """Cast each training ray through a uniformly random point of its pixel instead of the
    pixel's centre (the target stays the pixel's colour), as Instant-NGP trains: the field sees
    the whole footprint of every pixel. Off by default: on lego at 400x400 (hash, 120 s on an
    H100) it cost 1 dB (33.55 against 34.55 dB at one ray a pixel, 33.24 against 34.87 with
    2x2 rays a pixel)."""
    random_background: bool = True
    """Composite transparent training pixels on a random colour per ray."""
    seed: int = 0
    """Seed of every random draw (ray batches, jitter, backgrounds, initialisation)."""
    downscale: int = 1
    """Integer image downscale factor applied when loading the scene."""
    time_limit_s: float = 0.0
    """Stop once this much optimisation time (seconds) has passed, even before ``steps``
    (0: no limit). The learning rate then decays over whichever comes first, ``steps`` or
    the time limit, so a run cut short by the clock still ends at its final learning rate."""
    snapshot_times_s: tuple[float, ...] = ()
    """Optimisation times (seconds) at which a copy of the checkpoint is kept in
    ``snapshots/<t>s/`` of the run folder (an ordinary run folder: ``eval`` takes it), e.g. to
    score one long run at 5, 10 and 20 minutes."""
    marching: MarchingConfig = field(default_factory=MarchingConfig)
    """Ray sampling."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values out of range."""
        positive = ("steps", "batch_rays", "grid_resolution", "grid_update_every", "val_views", "downscale")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("grid_warmup_steps", "val_every", "checkpoint_every", "lr_warmup_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        check_loop_options(self)
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not 0 < self.lr_final_ratio <= 1:
            raise ConfigError(f"lr-final-ratio must be in (0, 1], got {self.lr_final_ratio}")
        if self.opacity_entropy_weight < 0:
            raise ConfigError(f"opacity-entropy-weight must be >= 0, got {self.opacity_entropy_weight}")
        if not 0 < self.grid_decay < 1:
            raise ConfigError(f"grid-decay must be in (0, 1), got {self.grid_decay}")

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Rebuild from :func:`dataclasses.asdict` output (as stored in a checkpoint)."""
        data = dict(data)
        marching = MarchingConfig(**data.pop("marching", {}))
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(marching=marching, **data)
