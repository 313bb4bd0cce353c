"""Training a radiance field from posed images."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..advice import Advice
from ..data import RayBatch, RaySampler, Scene, image_rays
from ..data.rays import views_hitting_box
from ..errors import SceneOutOfView
from ..fields import RadianceField
from ..rendering.occupancy import OccupancyGrid
from ..metrics import psnr
from ..kernels.marching import PackedSamples
from ..rendering.volume import composite_samples, march
from .config import TrainConfig
from .loop import OptimizationLoop

#: A CPU run estimated to take longer than this (seconds) is told so before it starts.
LONG_CPU_RUN_S = 15 * 60
#: A training sample (forward and backward passes) costs about this many field evaluations.
TRAINING_SAMPLE_COST = 3.0


class Trainer(OptimizationLoop):
    """Trains ``field`` on ``scene`` (the training split) into ``out_dir``: random ray batches
    across all images, random background behind transparent pixels, occupancy grid updates.

    The validation split ``val_scene`` (composited on white) is rendered every
    ``config.val_every`` steps. ``run_info`` joins the checkpoint config (scene path...).
    A scene none of whose training views sees its box raises :class:`SceneOutOfView`.
    """

    config: TrainConfig

    def __init__(self, field: RadianceField, scene: Scene, val_scene: Scene | None,
                 config: TrainConfig, out_dir: str | Path, run_info: dict[str, Any] | None = None):
        config.validate()
        if views_hitting_box(scene) == 0:
            raise SceneOutOfView(len(scene))
        self.scene = scene
        self.val_scene = val_scene
        self.run_info = dict(run_info or {})
        device = scene.images.device
        grid = OccupancyGrid(field.aabb.detach().cpu(), resolution=config.grid_resolution,
                             contracted=scene.contraction is not None)
        grid.mark_all_occupied()
        super().__init__(field, grid, config, out_dir, device)
        self.sampler = RaySampler(scene, config.batch_rays, self.generator)
        self._prefetched: tuple[RayBatch, torch.Tensor, PackedSamples] | None = None

    def field_fn(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density [S] and colour [S, 3] at samples, under autocast on CUDA."""
        with self.autocast():
            sigma, rgb = self.field(x, d)
        return sigma.float(), rgb.float()

    def density_fn(self, x: torch.Tensor) -> torch.Tensor:
        """Density [M] at field positions [M, 3] (world, or contracted in an unbounded scene),
        for occupancy updates."""
        with self.autocast():
            return self.field.density(x).float()

    def _draw_batch(self) -> tuple[RayBatch, torch.Tensor, PackedSamples]:
        """Random rays with their targets on random backgrounds, marched through the grid."""
        c = self.config
        batch = self.sampler.sample()
        n = batch.origins.shape[0]
        if batch.alpha is None:
            background = torch.zeros(n, 3, device=self.device)
        elif c.random_background:
            background = torch.rand(n, 3, device=self.device, generator=self.generator)
        else:
            background = torch.ones(n, 3, device=self.device)
        jitter = torch.rand(n, device=self.device, generator=self.generator)
        with torch.no_grad():
            samples = march(self.grid, batch.origins, batch.directions, near=self.scene.near, far=self.scene.far,
                            config=c.marching, jitter=jitter)
        return batch, background, samples

    def prepare_next_step(self) -> None:
        nxt = self.step + 1
        if nxt >= self.config.steps or nxt % self.config.grid_update_every == 0:
            return
        self.rng_state_before_prefetch = self.generator.get_state()
        self._prefetched = self._draw_batch()

    def train_step(self) -> tuple[torch.Tensor, float, dict[str, torch.Tensor]]:
        c = self.config
        if self._prefetched is not None:
            batch, background, samples = self._prefetched
            self._prefetched, self.rng_state_before_prefetch = None, None
        else:
            if self.step % c.grid_update_every == 0:
                self.grid.update(self.density_fn, step=self.step, decay=c.grid_decay,
                                 warmup_steps=c.grid_warmup_steps, generator=self.generator)
            batch, background, samples = self._draw_batch()
        n = batch.origins.shape[0]
        if samples.n_samples:
            sigma, rgb = self.field_fn(samples.positions, samples.directions)
        else:
            sigma, rgb = torch.zeros(0, device=self.device), torch.zeros(0, 3, device=self.device)
        out = composite_samples(sigma, rgb, samples, background, c.marching)
        target = batch.rgb_on(background)
        rgb_loss = F.mse_loss(out.rgb, target)
        loss = rgb_loss + self.field.regularization(self.generator)
        return loss, samples.n_samples / n, {"rgb": rgb_loss.detach()}

    def sampling_warmup_steps(self) -> int:
        """The occupancy grid's warm-up (``grid_warmup_steps``), while every cell is refreshed."""
        return self.config.grid_warmup_steps

    def validate(self) -> float | None:
        """Mean PSNR (dB) over the first ``val_views`` validation views; None without a
        validation split."""
        if self.val_scene is None:
            return None
        views = range(min(self.config.val_views, self.val_scene.images.shape[0]))
        # Transparent scenes are scored on white (the validation split is composited on it);
        # opaque ones on the black the training composites behind them.
        background = None if self.scene.alphas is not None else torch.zeros(3, device=self.device)
        values = [psnr(self.render_view(self.val_scene, i, background), self.val_scene.images[i]) for i in views]
        self.last_val_psnr = float(sum(values) / len(values))
        return self.last_val_psnr

    def estimated_seconds(self) -> tuple[float, float]:
        """A rough measure of how long the remaining steps and the validation renders take on
        this device, in seconds ``(training, validation)``: rays of a batch and of a validation
        view are marched through the grid as it is, and the field is timed on their samples (a
        training sample costs about :data:`TRAINING_SAMPLE_COST` evaluations). Draws nothing
        from the run's generator."""
        c = self.config
        sampler = RaySampler(self.scene, min(c.batch_rays, 4096), torch.Generator(device=self.device).manual_seed(0))
        batch = sampler.sample()
        with torch.no_grad():
            samples = march(self.grid, batch.origins, batch.directions, near=self.scene.near, far=self.scene.far,
                            config=c.marching)
            if samples.n_samples == 0:
                return 0.0, 0.0
            n = min(samples.n_samples, 1 << 14)
            x, d = samples.positions[:n], samples.directions[:n]
            self.field_fn(x[:256], d[:256])  # kernel compilation is not part of the rate
            start = time.perf_counter()
            self.field_fn(x, d)
            per_sample = (time.perf_counter() - start) / n
            steps_left = c.steps - self.step
            samples_per_ray = samples.n_samples / batch.origins.shape[0]
            training = steps_left * c.batch_rays * samples_per_ray * TRAINING_SAMPLE_COST * per_sample
            if c.time_limit_s:
                training = min(training, c.time_limit_s)
            if self.val_scene is None:
                return training, 0.0
            origins, directions = image_rays(self.val_scene, 0)
            view = march(self.grid, origins, directions, near=self.val_scene.near, far=self.val_scene.far,
                         config=c.marching)
        renders = (steps_left // c.val_every if c.val_every else 0) + 1
        views = min(c.val_views, len(self.val_scene))
        return training, renders * views * view.n_samples * per_sample

    def hints(self, preset: str | None = None) -> list[Advice]:
        """Advice before the first step: a run on the CPU estimated (:meth:`estimated_seconds`)
        to take over :data:`LONG_CPU_RUN_S` seconds, unless it already uses the ``preset``
        ``cpu``."""
        if self.device.type != "cpu" or (preset or "").split("+")[0] == "cpu":
            return []
        training, validation = self.estimated_seconds()
        if training + validation <= LONG_CPU_RUN_S:
            return []
        finding = (f"on the CPU this run will take about {_duration(training + validation)} by a rough estimate "
                   f"({_duration(training)} of training, {_duration(validation)} of validation renders)")
        return [Advice(finding, "preset", "training", "cpu")]

    def checkpoint_config(self) -> dict[str, Any]:
        return {**self.run_info, "train": dataclasses.asdict(self.config)}


def _duration(seconds: float) -> str:
    """``3 h 20 min``, ``12 min``, ``40 s``."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds)} s"
