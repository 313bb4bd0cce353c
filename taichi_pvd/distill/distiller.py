"""Progressive Volume Distillation: a student field learns to match a teacher field on
pseudo-label rays, block-wise in three stages.

Teacher and student are evaluated at the same packed samples, marched once per step through
the teacher's occupancy grid, which the student inherits; by default the student then sees only
the samples in front of the teacher's surfaces (``DistillConfig.skip_occluded``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data import Scene, generate_rays, image_rays
from ..data.camera_rig import CameraRig
from ..errors import ConfigError
from ..fields import RadianceField, density_from_raw
from ..kernels.marching import PackedSamples
from ..kernels.occupancy import OccupancyGrid
from ..metrics import psnr
from ..rendering.inference import inference_fn
from ..rendering.volume import composite_samples, keep_composited, march, render_rays_chunked
from ..training.loop import LoopSettings, OptimizationLoop
from .config import DistillConfig
from .virtual_rays import sample_virtual_rays, virtual_cameras, virtual_rays_through


#: Share of the scene box above which a teacher's occupancy grid looks barely trained (trained
#: object teachers mark a few percent: 5-9% on the demo scene).
BARE_GRID_FRACTION = 0.5


@dataclass
class TeacherBatch:
    """One step's pseudo-label samples and the teacher's features at them."""

    samples: PackedSamples
    """Samples along virtual-camera rays (only those the teacher composites, with
    ``skip_occluded``)."""
    features: torch.Tensor
    """[S, teacher.feature_dim] float32: the teacher's phi1 at ``samples.positions``."""
    tiles: torch.Tensor | None = None
    """[N] int64: each ray's tile in the error map (None without ``error_guided_share``)."""


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

    #: The per-point losses' gradients (about 1e-9 an element before loss scaling on lego) fall
    #: below float16's range: under float16 autocast one of four hash -> mlp runs (6834f30, H100)
    #: stalled at 9.5 dB and another ended at 31.0 dB against 32.6. In bfloat16 five of five ended
    #: at 32.27-32.72 dB after 60 s, against 32.25-32.55 in float32 (1cb7383, same call).
    prefers_bfloat16 = True

    def __init__(self, teacher: RadianceField, teacher_grid: OccupancyGrid, student: RadianceField,
                 rig: CameraRig, config: DistillConfig, out_dir: str | Path, device: torch.device,
                 run_info: dict[str, Any] | None = None, monitor_scene: Scene | None = None):
        config.validate()
        if config.lr is None:
            config = dataclasses.replace(config, lr=float(student.train_defaults.get("lr", 1e-2)))
        self.config = config
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
        super().__init__(student, grid, LoopSettings.from_config(config), out_dir, device)
        self.cameras = virtual_cameras(rig, config.virtual_cameras,
                                       (config.elevation_min_deg, config.elevation_max_deg), config.seed, device)
        self.build_error_map(config.virtual_cameras)
        self._val_views: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
        self._prefetched: TeacherBatch | None = None
        #: Optional ground-truth views (composited on white) scored at each validation, for
        #: benchmarks that compare distillation with training on the same images; never used
        #: by the losses.
        self.monitor_scene = monitor_scene
        self.last_monitor_psnr: float | None = None

    def hints(self) -> list[str]:
        """Advice before the first step (one line each): a teacher whose occupancy grid still
        marks most of the box occupied gives rays of many samples, slow and memory-hungry."""
        fraction = self.grid.occupancy_fraction()
        if fraction <= BARE_GRID_FRACTION:
            return []
        return [
            f"the teacher's occupancy grid marks {fraction:.0%} of the scene box occupied (trained teachers "
            "mark a few percent): its rays carry many samples, which is slow and can run out of memory; "
            "train the teacher longer (--resume) or pass a smaller --batch-rays"
        ]

    # -- the losses ------------------------------------------------------------------------------

    def _draw_samples(self) -> tuple[PackedSamples, torch.Tensor | None]:
        """Rays of random virtual cameras (a share guided by the error map, if any), marched
        through the (inherited) occupancy grid; with the rays' tiles in the error map."""
        c = self.config
        tiles = None
        if self.error_map is None:
            origins, directions = sample_virtual_rays(self.cameras, self.rig, c.batch_rays, self.generator)
        else:
            tiles, camera, pixels = self.error_map.draw(c.batch_rays, self.rig.width, self.rig.height, self.generator)
            origins, directions = virtual_rays_through(self.cameras, self.rig, camera, pixels)
        jitter = torch.rand(c.batch_rays, device=self.device, generator=self.generator)
        with torch.no_grad():
            samples = march(self.grid, origins, directions, near=self.rig.near, far=self.rig.far,
                            config=c.marching, jitter=jitter)
        return samples, tiles

    def _draw_batch(self) -> TeacherBatch:
        """The next step's samples with the teacher's features at them; with ``skip_occluded``
        only the samples the teacher's rendering composites."""
        samples, tiles = self._draw_samples()
        if samples.n_samples == 0:
            return TeacherBatch(samples, torch.zeros(0, self.teacher.feature_dim, device=self.device), tiles)
        with torch.no_grad(), self.autocast():
            features = self.teacher.features(samples.positions).float()
        if self.config.skip_occluded:
            samples, visible = keep_composited(samples, density_from_raw(features[:, 0]), self.config.marching)
            features = features[visible]
        return TeacherBatch(samples, features, tiles)

    def prepare_next_step(self) -> None:
        # The whole teacher side of the next step is prepared here, before this step's
        # backward pass is queued: its two waits on the device (the marcher's sample count and
        # the count of composited samples) then find little queued work, and the host queues
        # the next step's student pass while the device runs this step's backward pass.
        if self.step + 1 >= self.config.steps:
            return
        self.rng_state_before_prefetch = self.generator.get_state()
        self._prefetched = self._draw_batch()

    def stage(self) -> int:
        """Stage of the current step; stage 1 is skipped without a feature loss."""
        stage = self.config.stage(self.step)
        return 2 if stage == 1 and not self.use_feature_loss else stage

    def _clip(self, raw: torch.Tensor) -> torch.Tensor:
        c = self.config
        return raw.clamp(c.density_clip_min, c.density_clip_max) if c.density_clip else raw

    def train_step(self) -> tuple[torch.Tensor, float, dict[str, torch.Tensor]]:
        c = self.config
        stage = self.stage()
        if self._prefetched is not None:
            batch, self._prefetched, self.rng_state_before_prefetch = self._prefetched, None, None
        else:
            batch = self._draw_batch()
        samples, t_feat = batch.samples, batch.features
        n = c.batch_rays
        parts: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=self.device)
        if samples.n_samples == 0:
            return loss + 0.0 * sum(p.sum() for p in self.field.parameters()), 0.0, parts
        with self.autocast():
            x, d = samples.positions, samples.directions
            s_feat = self.field.features(x).float()
            if self.use_feature_loss:
                parts["feature"] = F.mse_loss(s_feat[:, 1:], t_feat[:, 1:])
                loss = loss + c.feature_weight * parts["feature"]
            if stage >= 2:
                parts["density"] = F.mse_loss(self._clip(s_feat[:, 0]), self._clip(t_feat[:, 0]))
                with torch.no_grad():
                    t_rgb = self.teacher.colour(t_feat, d).float()
                s_rgb = self.field.colour(s_feat, d).float()
                parts["colour"] = F.mse_loss(s_rgb, t_rgb)
                loss = loss + c.density_weight * parts["density"] + c.colour_weight * parts["colour"]
        if stage == 3:
            if c.random_background:
                background = torch.rand(n, 3, device=self.device, generator=self.generator)
            else:
                background = torch.ones(n, 3, device=self.device)
            with torch.no_grad():
                target = composite_samples(density_from_raw(t_feat[:, 0]), t_rgb, samples, background, c.marching).rgb
            out = composite_samples(density_from_raw(s_feat[:, 0]), s_rgb, samples, background, c.marching)
            parts["rgb"] = F.mse_loss(out.rgb, target)
            if self.error_map is not None:
                self.error_map.update(batch.tiles, out.rgb, target)
            loss = loss + c.rgb_weight * parts["rgb"] + self.field.regularization(self.generator)
        parts = {k: v.detach() for k, v in parts.items()}
        return loss, samples.n_samples / n, parts

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
        rgb, _, _ = render_rays_chunked(inference_fn(field), self.grid, origins, directions, near=self.rig.near,
                                        far=self.rig.far, background=torch.ones(3, device=self.device),
                                        config=self.config.marching)
        return rgb

    def validate(self) -> float | None:
        """Mean PSNR (dB) of the student's renderings against the teacher's on fixed virtual
        views."""
        values = [psnr(self._render(self.field, o, d), target) for o, d, target in self._fixed_views()]
        self.last_val_psnr = float(sum(values) / len(values))
        if self.monitor_scene is not None:
            scene = self.monitor_scene
            scores = []
            for i in range(min(self.config.val_views, len(scene))):
                o, d = image_rays(scene, i)
                scores.append(psnr(self._render(self.field, o, d).reshape(scene.images[i].shape), scene.images[i]))
            self.last_monitor_psnr = float(sum(scores) / len(scores))
        return self.last_val_psnr

    def _history_record(self, loss: float, parts: dict[str, float]) -> dict[str, Any]:
        record = super()._history_record(loss, parts)
        if self.monitor_scene is not None:
            record["monitor_psnr_db"] = self.last_monitor_psnr
        return record

    def checkpoint_config(self) -> dict[str, Any]:
        return {**self.run_info, "distill": dataclasses.asdict(self.config), "camera_rig": self.rig.to_dict()}

    def final_metrics(self) -> dict[str, Any]:
        return {"student_vs_teacher_psnr_db": self.last_val_psnr, "distill_seconds": self.train_seconds}


def copy_colour_head(teacher: RadianceField, student: RadianceField) -> None:
    """Start the student's colour head from the teacher's (both must have the shared head)."""
    t_head, s_head = getattr(teacher, "head", None), getattr(student, "head", None)
    if t_head is None or s_head is None or type(t_head) is not type(s_head):
        raise ConfigError(
            f"--init-head-from-teacher needs the shared colour head on both sides; {teacher.kind} -> {student.kind} has none to copy"
        )
    try:
        s_head.load_state_dict(t_head.state_dict())
    except RuntimeError as exc:
        raise ConfigError(f"colour heads of {teacher.kind} and {student.kind} differ in shape: {exc}") from exc
