"""Progressive Volume Distillation: a student field learns to match a teacher field on
pseudo-label rays, block-wise in three stages.

Teacher and student are evaluated at the same packed samples, marched through the teacher's
occupancy grid, which the student inherits; the student sees only the samples in front of the
teacher's surfaces (those the teacher's rendering composites). The teacher labels a block of
steps' rays at a time (:mod:`~taichi_pvd.distill.label_blocks`), each step one fixed-size chunk
of them, so a step into a torch-only student (the mlp) runs as a CUDA graph on a GPU.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ..advice import Advice
from ..data import generate_rays
from ..data.camera_rig import CameraRig
from ..errors import ConfigError, OptionValueError
from ..fields import RadianceField, density_from_raw
from ..kernels.marching import PackedSamples
from ..metrics import psnr
from ..rendering.inference import render_rays_chunked
from ..rendering.occupancy import OccupancyGrid
from ..rendering.slot_compositing import composite_slots
from ..rendering.volume import features_in_rounds, keep_composited, march
from ..training.interrupts import stop_requested
from ..training.loop import OptimizationLoop
from ..training.step_graphs import StepGraphs
from .config import DistillConfig
from .label_blocks import LabelBlock, LabelChunk, block_slots, chunk_capacity, chunk_layout, kept_samples, pack_block
from .virtual_rays import sample_virtual_rays, virtual_cameras


#: Seeds of the label blocks: ``seed * BLOCK_SEED_STRIDE + first step of the block``.
BLOCK_SEED_STRIDE = 1_000_003

#: Checkpoint entry of the chunks' sample slots.
CAPACITY_KEY = "distill.label_capacity"
#: Checkpoint entry of the steps at which stages 1, 2 and 3 began (-1: not yet), under a time limit.
STAGE_BEGINS_KEY = "distill.stage_begins"

#: Share of the scene box above which a teacher's occupancy grid looks barely trained (trained
#: object teachers mark a few percent).
BARE_GRID_FRACTION = 0.5


def features_comparable(teacher: RadianceField, student: RadianceField) -> bool:
    """True when phi1 of the two fields can be compared value by value (same width: the
    hash, vm and mlp fields share 16-value features; the grid's 28 are SH coefficients)."""
    return teacher.feature_dim == student.feature_dim and teacher.kind != "grid" and student.kind != "grid"


class Distiller(OptimizationLoop):
    """Distils ``teacher`` (frozen) into ``student`` on rays of virtual cameras of ``rig``.

    Stage 1 runs only ``features`` of both models (feature MSE); stage 2 adds the clipped
    raw-density MSE and the per-point colour MSE; stage 3 adds the composited-colour MSE
    against the teacher's rendering and the student's regulariser. When the feature loss
    cannot or must not be used, stage 1 is skipped.
    """

    #: The per-point losses' gradients can fall below float16's range (see ``docs/experiments.md``).
    prefers_bfloat16 = True

    config: DistillConfig

    def __init__(self, teacher: RadianceField, teacher_grid: OccupancyGrid, student: RadianceField,
                 rig: CameraRig, config: DistillConfig, out_dir: str | Path, device: torch.device,
                 run_info: dict[str, Any] | None = None):
        config.validate()
        self.rig = rig
        self.run_info = dict(run_info or {})
        self.teacher = teacher.to(device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.use_feature_loss = config.feature_loss and features_comparable(teacher, student)
        if config.init_head_from_teacher:
            copy_colour_head(teacher, student)
        grid = OccupancyGrid(teacher_grid.aabb.detach().cpu(), resolution=teacher_grid.resolution,
                             contracted=teacher_grid.contracted)
        grid.copy_from(teacher_grid)
        super().__init__(student, grid, config, out_dir, device)
        self._val_views: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
        #: The labels of the current block of steps and its first step.
        self.block: LabelBlock | None = None
        self.block_start = 0
        #: Sample slots of every step's chunk, set by the run's first block.
        self.capacity: int | None = None
        self._buffers: LabelChunk | None = None
        #: Under a time limit, the steps at which stages 1, 2 and 3 began (None: not yet).
        self.stage_begins: list[int | None] = [0, None, None]
        #: Steps into a torch-only student run as CUDA graphs (not under a float16 loss scale,
        #: whose step checks the gradients on the host).
        self.graphs = StepGraphs(config.cuda_graphs and self.device.type == "cuda" and student.graph_capturable
                                 and not self.scaler.is_enabled(), before_capture=self.make_optimizer_capturable)

    def hints(self) -> list[Advice]:
        """Advice before the first step: a teacher whose occupancy grid still marks most of the
        box occupied gives rays of many samples, slow and memory-hungry."""
        fraction = self.grid.occupancy_fraction()
        if fraction <= BARE_GRID_FRACTION:
            return []
        finding = (f"the teacher's occupancy grid marks {fraction:.0%} of the scene box occupied (trained teachers "
                   "mark a few percent): its rays carry many samples, which is slow and can run out of memory; "
                   "train the teacher longer (resume it), or use fewer rays a step")
        return [Advice(finding, "batch_rays", "distillation")]

    # -- pseudo-labels, a block of steps at a time ----------------------------------------------

    def _block_bounds(self, step: int) -> tuple[int, int]:
        """First step and length of the label block holding ``step``: blocks of
        ``label_block_steps`` from the start of each stage, cut at the stage's end (under a time
        limit, where the stages' ends are not known in advance, a block the next stage begins
        in is left there)."""
        c = self.config
        if self._timed_stages():
            base = max(b for b in self.stage_begins if b is not None and b <= step)
            start = base + (step - base) // c.label_block_steps * c.label_block_steps
            return start, min(c.label_block_steps, max(c.steps, step + 1) - start)
        stage1, stage2 = c.stage_lengths()
        cuts = sorted({0, stage1, stage1 + stage2, c.steps}) if c.blockwise else [0, c.steps]
        base = max(b for b in cuts if b <= step)
        end = min([b for b in cuts if b > step] + [max(c.steps, step + 1)])
        start = base + (step - base) // c.label_block_steps * c.label_block_steps
        return start, min(c.label_block_steps, end - start)

    def _teacher_samples(self, start: int, length: int
                         ) -> tuple[PackedSamples, torch.Tensor, dict[str, torch.Tensor]]:
        """The samples of block ``start``'s rays (``length`` steps' worth, from the block's own
        random virtual cameras) that the teacher composites, the teacher's features there, and
        per-ray values (background). Every draw comes from a generator seeded by the run's seed
        and ``start``, so a resumed run redraws the block it stopped in."""
        c = self.config
        block_seed = c.seed * BLOCK_SEED_STRIDE + start
        generator = torch.Generator(device=self.device)
        generator.manual_seed(block_seed)
        n = length * c.batch_rays
        marching = c.label_marching()
        cameras = virtual_cameras(self.rig, c.virtual_cameras, (c.elevation_min_deg, c.elevation_max_deg),
                                  block_seed, self.device)
        origins, directions = sample_virtual_rays(cameras, self.rig, n, generator)
        jitter = torch.rand(n, device=self.device, generator=generator)
        per_ray = {"background": (torch.rand(n, 3, device=self.device, generator=generator) if c.random_background
                                  else torch.ones(n, 3, device=self.device))}
        with torch.no_grad():
            samples = march(self.grid, origins, directions, near=self.rig.near, far=self.rig.far,
                            config=marching, jitter=jitter)
            if samples.n_samples == 0:
                return samples, torch.zeros(0, self.teacher.feature_dim, device=self.device), per_ray
            with self.autocast():
                features, sigma = features_in_rounds(self.teacher.features, samples, marching)
            samples, visible = keep_composited(samples, sigma, marching)
        return samples, features[visible], per_ray

    def _draw_block(self, start: int, length: int, stage: int) -> LabelBlock:
        """The labels of steps ``start .. start + length - 1`` (all of stage ``stage``): the
        teacher's features at every step; its colours from stage 2 on; its composited rays in
        stage 3."""
        c = self.config
        samples, features, per_ray = self._teacher_samples(start, length)
        if self.capacity is None:
            self.capacity = chunk_capacity(samples.n_samples, length)
        layout = chunk_layout(samples.ray_counts, length, self.capacity, c.batch_rays)
        index = kept_samples(samples, layout)
        positions, directions, features = samples.positions[index], samples.directions[index], features[index]
        with torch.no_grad():
            per_sample = {"positions": positions, "teacher_features": features,
                          "direction_encoding": self.field.direction_encoding(directions)}
            if stage >= 2:
                with self.autocast():
                    per_sample["teacher_rgb"] = self.teacher.colour(features, directions).float()
            block = pack_block(samples, layout, index, length, self.capacity, c.batch_rays, per_sample, per_ray)
            if stage == 3:
                labels = block.labels
                first_sample, ray_slot = block_slots(block)
                labels.teacher_ray_rgb, labels.teacher_opacity = composite_slots(
                    density_from_raw(labels.teacher_features[:, 0]), labels.teacher_rgb, labels.dt, first_sample,
                    ray_slot, length * c.batch_rays)
        return block

    def step_labels(self, stage: int) -> tuple[LabelChunk, float]:
        """This step's labels (drawing a new block where the last one ends) and their samples
        per ray."""
        start, length = self._block_bounds(self.step)
        if self.block is None or self.block_start != start:
            self.block, self.block_start = self._draw_block(start, length, stage), start
        k = self.step - start
        n_samples, n_rays = self.block.counts[k]
        return self.block.chunk(k), n_samples / max(n_rays, 1)

    def extra_state(self) -> dict[str, torch.Tensor]:
        state = {STAGE_BEGINS_KEY: torch.tensor([-1 if b is None else b for b in self.stage_begins])}
        return state if self.capacity is None else {**state, CAPACITY_KEY: torch.tensor(self.capacity)}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if CAPACITY_KEY in tensors:
            self.capacity = int(tensors[CAPACITY_KEY])
        if STAGE_BEGINS_KEY in tensors:
            self.stage_begins = [None if b < 0 else b for b in tensors[STAGE_BEGINS_KEY].tolist()]

    # -- the losses ------------------------------------------------------------------------------

    def _timed_stages(self) -> bool:
        """Whether the stages follow the run's progress in time as well as in steps."""
        return bool(self.config.time_limit_s) and self.config.blockwise

    def stage(self) -> int:
        """Stage of the current step; stage 1 is skipped without a feature loss.

        The stages take the paper's shares of the run (or ``stage1_steps`` / ``stage2_steps``
        of ``steps``). Under a time limit the run's progress is the larger of its share of the
        steps and its share of the time, so that a run the clock ends early still passes
        through every stage; the step each stage began at is kept (and checkpointed)."""
        c = self.config
        if not self._timed_stages():
            stage = c.stage(self.step)
        else:
            by_time = round(c.steps * self.train_seconds / c.time_limit_s)
            stage = max(c.stage(min(max(self.step, by_time), c.steps - 1)),
                        max(i + 1 for i, b in enumerate(self.stage_begins) if b is not None))
            for later in range(stage):
                if self.stage_begins[later] is None:
                    self.stage_begins[later] = self.step
        return 2 if stage == 1 and not self.use_feature_loss else stage

    def _clip(self, raw: torch.Tensor) -> torch.Tensor:
        c = self.config
        return raw.clamp(c.density_clip_min, c.density_clip_max) if c.density_clip else raw

    def _losses(self, labels: LabelChunk, stage: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of stage ``stage`` on ``labels`` and its named parts. Shapes are those of
        the chunk whatever its content, and nothing waits on the device."""
        c = self.config
        weight = labels.sample_weight
        count = weight.sum().clamp(min=1.0)
        parts: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=self.device)
        with self.autocast():
            s_feat = self.field.features(labels.positions).float()
        t_feat = labels.teacher_features
        if self.use_feature_loss:
            parts["feature"] = weighted_mse(s_feat[:, 1:], t_feat[:, 1:], weight, count)
            loss = loss + c.feature_weight * parts["feature"]
        if stage >= 2:
            parts["density"] = weighted_mse(self._clip(s_feat[:, 0]), self._clip(t_feat[:, 0]), weight, count)
            with self.autocast():
                s_rgb = self.field.colour_from_encoding(s_feat, labels.direction_encoding).float()
            parts["colour"] = weighted_mse(s_rgb, labels.teacher_rgb, weight, count)
            loss = loss + c.density_weight * parts["density"] + c.colour_weight * parts["colour"]
        if stage == 3:
            rays = labels.ray_weight
            colour, opacity = composite_slots(density_from_raw(s_feat[:, 0]), s_rgb, labels.dt, labels.first_sample,
                                              labels.ray_slot, rays.shape[0])
            rendered = colour + (1.0 - opacity)[:, None] * labels.background
            target = labels.teacher_ray_rgb + (1.0 - labels.teacher_opacity)[:, None] * labels.background
            parts["rgb"] = weighted_mse(rendered, target, rays, rays.sum().clamp(min=1.0))
            loss = loss + c.rgb_weight * parts["rgb"] + self.field.regularization(self.generator)
        return loss, parts

    def _step_on(self, labels: LabelChunk, stage: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss, backward pass and update on ``labels``: the work a CUDA graph captures."""
        loss, parts = self._losses(labels, stage)
        self.descend(loss)
        return loss.detach(), {k: v.detach() for k, v in parts.items()}

    def optimizer_step(self) -> tuple[torch.Tensor, float, dict[str, torch.Tensor]]:
        if self.begin_step():
            self.graphs.reset()
        stage = self.stage()
        labels, samples_per_ray = self.step_labels(stage)
        if self.graphs.enabled:
            labels = self._buffers = labels.copy_to(self._buffers)
        loss, parts = self.graphs(stage, lambda: self._step_on(labels, stage))
        self.step += 1
        return loss, samples_per_ray, parts

    # -- validation: student against teacher on fixed virtual views ------------------------------

    def _fixed_views(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if self._val_views is None:
            size = self.config.val_size
            rig = self.rig.scaled(size, size)
            poses = virtual_cameras(rig, self.config.val_views, (self.config.elevation_min_deg, self.config.elevation_max_deg),
                                    self.config.seed + 1, self.device)
            views = []
            for i in range(poses.shape[0]):
                o, dirs = generate_rays(poses[i : i + 1], rig.intrinsics(1, self.device), size, size)
                o, dirs = self.rig.scene_rays(o.reshape(-1, 3), dirs.reshape(-1, 3))
                o, dirs = o.contiguous(), dirs.contiguous()
                views.append((o, dirs, self._render(self.teacher, o, dirs)))
            self._val_views = views
        return self._val_views

    def _render(self, field: RadianceField, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """``field``'s colours [N, 3] of rays on white, rendered as ``pvd-ti render`` does."""
        rgb, _, _ = render_rays_chunked(field, self.grid, origins, directions, near=self.rig.near,
                                        far=self.rig.far, background=torch.ones(3, device=self.device),
                                        config=self.config.marching, should_stop=stop_requested)
        return rgb

    def validate(self) -> float | None:
        """Mean PSNR (dB) of the student's renderings against the teacher's on fixed virtual
        views."""
        values = [psnr(self._render(self.field, o, d), target) for o, d, target in self._fixed_views()]
        self.last_val_psnr = float(sum(values) / len(values))
        return self.last_val_psnr

    def checkpoint_config(self) -> dict[str, Any]:
        return {**self.run_info, "distill": dataclasses.asdict(self.config), "camera_rig": self.rig.to_dict()}

    def final_metrics(self) -> dict[str, Any]:
        return {"student_vs_teacher_psnr_db": self.last_val_psnr, "distill_seconds": self.train_seconds}


def weighted_mse(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of rows ``a``, ``b`` [N, ...] over the rows of ``weight`` [N] 1
    (``count`` of them, a tensor), as ``F.mse_loss`` over those rows alone."""
    return (((a - b) ** 2).reshape(weight.shape[0], -1).mean(1) * weight).sum() / count


def copy_colour_head(teacher: RadianceField, student: RadianceField) -> None:
    """Start the student's colour head from the teacher's (both must have the shared head)."""
    t_head, s_head = getattr(teacher, "head", None), getattr(student, "head", None)
    if t_head is None or s_head is None or type(t_head) is not type(s_head):
        raise OptionValueError(
            "init_head_from_teacher",
            f"needs the shared colour head on both sides; {teacher.kind} -> {student.kind} has none to copy",
        )
    try:
        s_head.load_state_dict(t_head.state_dict())
    except RuntimeError as exc:
        raise ConfigError(f"colour heads of {teacher.kind} and {student.kind} differ in shape: {exc}") from exc
