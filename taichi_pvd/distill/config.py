"""Distillation configuration. Its own defaults follow the PVD paper and its reference code; the
paper's length and rays per step (30k steps of 4096) come with the presets
(:data:`~taichi_pvd.presets.PAPER_DISTILLATION`), over the loop's library defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError, OptionValueError
from ..rendering.volume import MarchingConfig
from ..training.loop_config import LoopConfig


#: The paper's stage lengths, 3k and 5k of 30k steps, as shares of the whole distillation.
PAPER_STAGE1_SHARE = 3000 / 30000
PAPER_STAGE2_SHARE = 5000 / 30000


@dataclass
class DistillConfig(LoopConfig):
    """How a student is distilled from a teacher: the loop's options (:class:`LoopConfig`) and
    the stages, losses, pseudo-label rays and virtual cameras. Saved inside the student's
    checkpoint."""

    option_kind = "distillation option"

    stage1_steps: int | None = None
    """Stage 1 (block-wise): only phi1 of both models runs; feature loss only. ``None``: the
    paper's share, 10% of ``steps`` (3k of 30k)."""
    stage2_steps: int | None = None
    """Stage 2: + clipped raw-density loss and per-point colour loss. ``None``: the paper's
    share, 1/6 of ``steps`` (5k of 30k)."""
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
    """Use the feature loss (the paper's ablation: off)."""
    density_clip: bool = True
    """Clip raw densities before comparing them (the paper's ablation: off)."""
    blockwise: bool = True
    """Run the stages; False starts with every loss at step 0 (the paper's ablation)."""
    label_spacing_scale: float = 1.0
    """Sample spacing of the pseudo-label rays as a multiple of the rendering's (``marching``:
    its base step and its cone angle both scaled). Teacher and student are compared at the same
    points and composited over the same intervals whatever the spacing, and the jittered samples
    cover every depth over the steps, so coarser label rays make a cheaper step. Validation and
    ``eval`` render at ``marching``."""
    label_block_steps: int = 8
    """Steps whose pseudo-labels the teacher draws in one pass (each step then takes a chunk of
    the block's rays with a fixed number of sample slots). Blocks end where stages end."""
    cuda_graphs: bool = True
    """On a GPU, run each step into a torch-only student (the mlp) as a CUDA graph, replayed
    with one launch instead of a few hundred (not under a float16 loss scale). Set false if the
    capture fails on your setup."""
    init_head_from_teacher: bool = False
    """Copy the teacher's colour head into the student (when both have the shared head)."""
    virtual_cameras: int = 300
    """Random virtual cameras drawn for each label block on the sphere at the training cameras'
    radius (forward-facing and unbounded rigs: in the box of the training cameras), from which
    the rays are drawn."""
    elevation_min_deg: float = 0.0
    """Lowest virtual camera elevation, degrees."""
    elevation_max_deg: float = 80.0
    """Highest virtual camera elevation, degrees."""
    random_background: bool = True
    """Random background colour per ray, the same for teacher and student."""
    val_size: int = 100
    """Width and height (pixels) of the fixed virtual views on which the student is compared
    with the teacher at each validation."""

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values out of range."""
        super().validate()
        for name in ("virtual_cameras", "val_size", "label_block_steps"):
            if getattr(self, name) <= 0:
                raise OptionValueError(name, f"must be positive, got {getattr(self, name)}")
        for name in ("stage1_steps", "stage2_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise OptionValueError(name, f"must be >= 0, got {getattr(self, name)}")
        if not self.label_spacing_scale > 0:
            raise OptionValueError("label_spacing_scale", f"must be positive, got {self.label_spacing_scale}")
        if not self.density_clip_min < self.density_clip_max:
            raise ConfigError("density_clip_min must be below density_clip_max")
        if not -90 <= self.elevation_min_deg <= self.elevation_max_deg <= 90:
            raise ConfigError("elevations must satisfy -90 <= min <= max <= 90 degrees")

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
