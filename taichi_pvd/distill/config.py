"""Distillation configuration (defaults: the PVD paper and its reference code)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from ..errors import ConfigError
from ..rendering.volume import MarchingConfig
from ..training.config import check_loop_options


#: The paper's stage lengths, 3k and 5k of 30k steps, as shares of the whole distillation.
PAPER_STAGE1_SHARE = 3000 / 30000
PAPER_STAGE2_SHARE = 5000 / 30000


@dataclass
class DistillConfig:
    """How a student is distilled from a teacher. Saved inside the student's checkpoint."""

    steps: int = 30000
    """Total optimizer steps (all stages)."""
    stage1_steps: int | None = None
    """Stage 1 (block-wise): only phi1 of both models runs; feature loss only. ``None``: the
    paper's share, 10% of ``steps`` (3k of 30k)."""
    stage2_steps: int | None = None
    """Stage 2: + clipped raw-density loss and per-point colour loss. ``None``: the paper's
    share, 1/6 of ``steps`` (5k of 30k)."""
    batch_rays: int = 4096
    """Pseudo-label rays per step (the mlp student defaults to 8192: see its ``distill_defaults``)."""
    lr: float | None = None
    """Peak learning rate; ``None`` takes the student architecture's training default."""
    lr_final_ratio: float = 0.03
    """Final learning rate as a fraction of ``lr`` (cosine decay)."""
    lr_warmup_steps: int = 0
    """Linear learning-rate warm-up."""
    adam_eps: float = 1e-15
    """Adam epsilon."""
    adam_beta2: float = 0.99
    """Adam's second-moment decay."""
    ema_decay: float = 0.0
    """Decay of an exponential moving average of the student's parameters, which the student
    is validated and saved with (0: off)."""
    feature_weight: float = 2e-3
    """Weight of the phi1 feature MSE (skipped when either model is ``grid``)."""
    density_weight: float = 2e-3
    """Weight of the raw-density MSE."""
    colour_weight: float = 2e-3
    """Weight of the per-point colour MSE."""
    rgb_weight: float = 1.0
    """Weight of the rendered-colour MSE (stage 3)."""
    density_clip_min: float = -2.0
    """Raw densities are clipped to [min, max] before comparison: outside it the physics is
    the same (fully transparent / opaque)."""
    density_clip_max: float = 7.0
    """Upper clip of raw densities."""
    feature_loss: bool = True
    """Use the feature loss (ablation switch ``--no-feature-loss``)."""
    density_clip: bool = True
    """Clip raw densities before comparing (ablation switch ``--no-density-clip``)."""
    blockwise: bool = True
    """Run the stages; False starts with every loss at step 0 (``--no-blockwise``)."""
    skip_occluded: bool = True
    """Evaluate the student only at the samples the teacher's rendering composites: on each ray,
    those in front of the point where the teacher's transmittance falls below
    ``marching.transmittance_threshold``. Samples hidden behind the teacher's surfaces add
    nothing to either rendering, and every visible point is in front on some virtual camera's
    ray; the student's forward and backward passes shrink by the share of hidden samples (lego,
    hash -> mlp, 60 s on an H100: 8,975 steps and 31.95 dB, against 7,041 steps and 30.85 dB
    without)."""
    label_spacing_scale: float = 1.0
    """Sample spacing of the pseudo-label rays as a multiple of the rendering's (``marching``:
    its base step and its cone angle both scaled). Teacher and student are compared at the same
    points and composited over the same intervals whatever the spacing, and the jittered samples
    cover every depth over the steps, so coarser label rays carry fewer samples, a cheaper step
    (what that bought on lego is in the mlp field's ``distill_defaults``, which take 2).
    Validation and ``eval`` render at ``marching``."""
    error_guided_share: float = 0.0
    """Share of each step's rays drawn in proportion to the student's recent rendering error
    against the teacher, kept per tile of every virtual camera's image (the rest are uniform;
    0: all uniform). CPU demo, hash -> mlp, 1024 rays, 1200 steps, two seeds: 0.5 ended at
    31.07 / 29.82 dB against the teacher, uniform rays at 29.63 / 29.07 dB; its rays cross more
    of the object, and on the CPU (a step's cost follows its samples) it reached the uniform
    runs' final PSNR after 84 / 103 s against their 103 / 104 s. Off by default: on lego (hash
    -> mlp, 60 s on an H100) shares of 0.5-0.9 with 4-16 tiles a side ended at 32.25-32.51 dB
    test against 32.43 dB with uniform rays in the same call (fewer, heavier steps)."""
    error_tiles: int = 16
    """Tiles per side of each virtual camera's image in the error map of ``error_guided_share``.
    With few rays a step for its tiles, a map stays mostly unvisited and its rays nearly uniform;
    coarse tiles send more rays into the object. CPU demo as above, seed 0, share 0.5: 8 tiles
    32.74 dB in 177 s, 16 tiles 31.07 dB in 124 s, 32 tiles 30.08 dB in 97 s; with 16 tiles,
    shares 0.25 / 0.75 30.67 / 31.34 dB (uniform rays 29.63 dB in 103 s)."""
    label_block_steps: int = 8
    """Steps whose pseudo-labels the teacher draws in one pass (each step then takes a chunk of
    the block's rays with a fixed number of sample slots). Blocks end where stages end. The mlp
    student draws 32 (see its ``distill_defaults``): its graphed steps wait on each block."""
    cuda_graphs: bool = True
    """On a GPU, run each step into a torch-only student (the mlp) as a CUDA graph, replayed
    with one launch instead of a few hundred (not under a float16 loss scale). Set false if the
    capture fails on your setup."""
    init_head_from_teacher: bool = False
    """Copy the teacher's colour head into the student (when both have the shared head)."""
    virtual_cameras: int = 300
    """Random virtual cameras on the sphere at the training cameras' radius (forward-facing and
    unbounded rigs: in the box of the training cameras), from which the rays are drawn."""
    virtual_cameras_per_block: bool = True
    """Draw the ``virtual_cameras`` afresh for every label block, so that over a run the rays
    come from cameras all over the sphere rather than from one fixed set of them. Error-guided
    rays (``error_guided_share``) always keep one set, which the error map's tiles belong to."""
    elevation_min_deg: float = 0.0
    """Lowest virtual camera elevation, degrees."""
    elevation_max_deg: float = 80.0
    """Highest virtual camera elevation, degrees."""
    random_background: bool = True
    """Random background colour per ray, the same for teacher and student."""
    val_every: int = 1000
    """Steps between student-vs-teacher PSNR checks (0: only at the end)."""
    val_views: int = 4
    """Fixed virtual views used for the student-vs-teacher PSNR."""
    val_size: int = 100
    """Width and height (pixels) of those views."""
    checkpoint_every: int = 2000
    """Steps between checkpoints (0: at the end and on interruption only)."""
    mixed_precision: bool = False
    """Autocast for the MLPs (teacher's and student's) on CUDA, in bfloat16 where the GPU has it
    (float16 with a dynamic loss scale elsewhere: the per-point losses' small gradients need
    bfloat16's range, see :class:`~taichi_pvd.distill.distiller.Distiller`); ignored on the CPU.
    Off by default, on for an mlp student (its ``distill_defaults``)."""
    seed: int = 0
    """Seed of every random draw."""
    time_limit_s: float = 0.0
    """Stop once this much optimisation time (seconds) has passed, even before ``steps``
    (0: no limit). The learning rate then decays over whichever comes first, ``steps`` or
    the time limit, so a run cut short by the clock still ends at its final learning rate."""
    snapshot_times_s: tuple[float, ...] = ()
    """Optimisation times (seconds) at which a copy of the checkpoint is kept in
    ``snapshots/<t>s/`` of the run folder (an ordinary run folder: ``eval`` takes it), e.g. to
    score one long run at 5, 10 and 20 minutes."""
    marching: MarchingConfig = field(default_factory=MarchingConfig)
    """Ray sampling through the teacher's occupancy grid."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values out of range."""
        for name in ("steps", "batch_rays", "virtual_cameras", "val_views", "val_size", "label_block_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("stage1_steps", "stage2_steps", "val_every", "checkpoint_every", "lr_warmup_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        check_loop_options(self)
        if not self.label_spacing_scale > 0:
            raise ConfigError(f"label-spacing-scale must be positive, got {self.label_spacing_scale}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not self.density_clip_min < self.density_clip_max:
            raise ConfigError("density-clip-min must be below density-clip-max")
        if not -90 <= self.elevation_min_deg <= self.elevation_max_deg <= 90:
            raise ConfigError("elevations must satisfy -90 <= min <= max <= 90 degrees")

    @classmethod
    def from_dict(cls, data: dict) -> "DistillConfig":
        """Rebuild from :func:`dataclasses.asdict` output."""
        data = dict(data)
        marching = MarchingConfig(**data.pop("marching", {}))
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown distillation option(s): {', '.join(unknown)}")
        return cls(marching=marching, **data)

    def label_marching(self) -> MarchingConfig:
        """How the pseudo-label rays are sampled: :attr:`marching` with its spacing scaled by
        :attr:`label_spacing_scale`."""
        scale = self.label_spacing_scale
        return dataclasses.replace(self.marching, steps_across_box=max(1, round(self.marching.steps_across_box / scale)),
                                   cone_angle=self.marching.cone_angle * scale)

    def stage_lengths(self) -> tuple[int, int]:
        """Steps of stages 1 and 2 (stage 3 takes the rest)."""
        stage1 = self.stage1_steps if self.stage1_steps is not None else round(self.steps * PAPER_STAGE1_SHARE)
        stage2 = self.stage2_steps if self.stage2_steps is not None else round(self.steps * PAPER_STAGE2_SHARE)
        return stage1, stage2

    def stage(self, step: int) -> int:
        """The stage (1, 2 or 3) that step ``step`` (0-based) belongs to."""
        if not self.blockwise:
            return 3
        stage1, stage2 = self.stage_lengths()
        if step < stage1:
            return 1
        if step < stage1 + stage2:
            return 2
        return 3
