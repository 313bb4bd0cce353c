"""Training a radiance field from posed images: ray batches, occupancy grid, Adam, validation,
atomic checkpoints, resume, interruption and divergence handling."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..data import RaySampler, Scene, image_rays
from ..errors import CheckpointError, TrainingDiverged
from ..fields import RadianceField
from ..io.checkpoint import load_checkpoint, save_checkpoint
from ..io.run_state import optimizer_from_flat, optimizer_to_flat, prefixed, unprefixed
from ..io.runs import METRICS_NAME, append_history, checkpoint_path, write_json
from ..kernels.occupancy import OccupancyGrid
from ..metrics import psnr
from ..rendering.volume import render_rays, render_rays_chunked
from .config import TrainConfig
from .interrupts import stop_requested


@dataclass
class Progress:
    """What the progress display shows after a step."""

    step: int
    steps: int
    loss: float
    psnr_db: float
    rays_per_second: float
    samples_per_ray: float
    elapsed_s: float
    eta_s: float
    val_psnr_db: float | None
    phase: str = "train"


ProgressFn = Callable[[Progress], None]


def cosine_lr_factor(step: int, steps: int, final_ratio: float, warmup: int) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine decay from 1 to
    ``final_ratio`` at ``steps``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(max(step - warmup, 0) / max(steps - warmup, 1), 1.0)
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Trainer:
    """Trains ``field`` on ``scene`` (the training split) and writes into ``out_dir``.

    The validation split ``val_scene`` (composited on white) is rendered every
    ``config.val_every`` steps. ``run_info`` is stored in the checkpoint config beside the
    field and training configs (scene path, etc.).
    """

    def __init__(self, field: RadianceField, scene: Scene, val_scene: Scene | None,
                 config: TrainConfig, out_dir: str | Path, run_info: dict[str, Any] | None = None):
        config.validate()
        self.config = config
        self.scene = scene
        self.val_scene = val_scene
        self.out_dir = Path(out_dir)
        self.run_info = dict(run_info or {})
        self.device = scene.images.device
        self.field = field.to(self.device)
        self.grid = OccupancyGrid(field.aabb.detach().cpu(), resolution=config.grid_resolution).to(self.device)
        self.grid.mark_all_occupied()
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)
        self.sampler = RaySampler(scene, config.batch_rays, self.generator)
        self.amp = config.mixed_precision and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp, init_scale=2.0**10)
        self.step = 0
        self.train_seconds = 0.0
        self.last_val_psnr: float | None = None
        self._build_optimizer()

    # -- optimisation -------------------------------------------------------------------------

    def _build_optimizer(self) -> None:
        groups = self.field.param_groups(self.config.lr)
        for g in groups:
            g["initial_lr"] = g["lr"]
        self.optimizer = torch.optim.Adam(groups, lr=self.config.lr, eps=self.config.adam_eps, betas=(0.9, 0.99))

    def _set_lr(self) -> None:
        c = self.config
        factor = cosine_lr_factor(self.step, c.steps, c.lr_final_ratio, c.lr_warmup_steps)
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * factor

    def _density_for_grid(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            return self.field.density(x).float()

    def _field_fn(self, x: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            sigma, rgb = self.field(x, d)
        return sigma.float(), rgb.float()

    def train_step(self) -> tuple[torch.Tensor, float]:
        """One optimizer step. Returns the loss (a 0-d tensor, not synchronised) and the mean
        samples per ray."""
        c = self.config
        if self.field.update_schedule(self.step):
            self._build_optimizer()
        if self.step % c.grid_update_every == 0:
            self.grid.update(self._density_for_grid, step=self.step, decay=c.grid_decay,
                             warmup_steps=c.grid_warmup_steps, generator=self.generator)
        self._set_lr()
        batch = self.sampler.sample()
        n = batch.origins.shape[0]
        target = batch.rgb
        if batch.alpha is not None:
            if c.random_background:
                background = torch.rand(n, 3, device=self.device, generator=self.generator)
            else:
                background = torch.ones(n, 3, device=self.device)
            target = target * batch.alpha + background * (1.0 - batch.alpha)
        else:
            background = torch.zeros(n, 3, device=self.device)
        jitter = torch.rand(n, device=self.device, generator=self.generator)
        out = render_rays(self._field_fn, self.grid, batch.origins, batch.directions,
                          near=self.scene.near, far=self.scene.far, background=background,
                          config=c.marching, jitter=jitter)
        loss = F.mse_loss(out.rgb, target) + self.field.regularization()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return loss.detach(), out.samples.n_samples / n

    # -- validation ---------------------------------------------------------------------------

    def render_view(self, scene: Scene, index: int, background: torch.Tensor | None = None) -> torch.Tensor:
        """Render view ``index`` of ``scene`` as an image [H, W, 3] (white background unless
        given)."""
        origins, directions = image_rays(scene, index)
        bg = torch.ones(3, device=self.device) if background is None else background
        rgb, _, _ = render_rays_chunked(self._field_fn, self.grid, origins, directions,
                                        near=scene.near, far=scene.far, background=bg,
                                        config=self.config.marching)
        return rgb.reshape(scene.height, scene.width, 3)

    def validate(self) -> float | None:
        """Mean PSNR (dB) over the first ``val_views`` validation views; None without a
        validation split."""
        if self.val_scene is None:
            return None
        views = range(min(self.config.val_views, self.val_scene.images.shape[0]))
        values = [psnr(self.render_view(self.val_scene, i), self.val_scene.images[i]) for i in views]
        self.last_val_psnr = float(sum(values) / len(values))
        return self.last_val_psnr

    # -- persistence --------------------------------------------------------------------------

    def checkpoint_config(self) -> dict[str, Any]:
        """The JSON config stored in the checkpoint: everything needed to rebuild the run."""
        return {
            **self.run_info,
            "model": self.field.kind,
            "field": self.field.config_dict(),
            "train": dataclasses.asdict(self.config),
            "aabb": self.field.aabb.detach().cpu().tolist(),
            "grid_resolution": self.config.grid_resolution,
        }

    def _all_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.field.parameters())

    def save(self) -> Path:
        """Write the resumable checkpoint atomically; refuses (TrainingDiverged) to overwrite a
        good checkpoint with non-finite parameters."""
        if not self._all_finite():
            raise TrainingDiverged(
                f"parameters became NaN/Inf at step {self.step}; the last good checkpoint in {self.out_dir} is kept. "
                "Try a lower --lr or a different --seed"
            )
        optim_tensors, groups = optimizer_to_flat(self.optimizer)
        tensors = {
            **prefixed(self.field.state_dict(), "field."),
            **prefixed(self.grid.state_dict(), "grid."),
            **optim_tensors,
            "rng.generator": self.generator.get_state(),
        }
        meta = {
            "step": self.step,
            "train_seconds": self.train_seconds,
            "optimizer_groups": groups,
            "grad_scale": float(self.scaler.get_scale()) if self.amp else 1.0,
            "val_psnr_db": self.last_val_psnr,
        }
        path = checkpoint_path(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, kind="run", config=self.checkpoint_config(), tensors=tensors, meta=meta)
        return path

    def resume(self) -> None:
        """Continue from the checkpoint in ``out_dir`` (same field architecture and config)."""
        ckpt = load_checkpoint(checkpoint_path(self.out_dir), expected_kind="run")
        if ckpt.config.get("model") != self.field.kind:
            raise CheckpointError(
                f"{self.out_dir} holds a {ckpt.config.get('model')!r} run, not {self.field.kind!r}: "
                "resume with the same --model or choose another --out"
            )
        self.field.load_tensors({k: v for k, v in unprefixed(ckpt.tensors, "field.").items()})
        self.field.to(self.device)
        self.grid.load_state_dict(unprefixed(ckpt.tensors, "grid."))
        self.grid.to(self.device)
        self.grid.rebuild_bitfield()
        self._build_optimizer()
        optimizer_from_flat(self.optimizer, {k: v.to(self.device) for k, v in ckpt.tensors.items() if k.startswith("optim.")},
                            ckpt.meta["optimizer_groups"])
        self.generator.set_state(ckpt.tensors["rng.generator"])
        self.step = int(ckpt.meta["step"])
        self.train_seconds = float(ckpt.meta["train_seconds"])
        self.last_val_psnr = ckpt.meta.get("val_psnr_db")
        if self.amp:
            self.scaler.update(float(ckpt.meta["grad_scale"]))

    # -- the loop -----------------------------------------------------------------------------

    def run(self, on_progress: ProgressFn | None = None, report_every: int = 50) -> dict[str, Any]:
        """Train until ``config.steps``, validating, checkpointing and reporting on the way.

        On Ctrl-C or SIGTERM a resumable checkpoint is written before ``KeyboardInterrupt``
        propagates; NaN/Inf raises :class:`TrainingDiverged` keeping the last good checkpoint.
        Returns the final metrics (also written to ``metrics.json``).
        """
        c = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        window_start, window_rays, window_samples = time.perf_counter(), 0, 0.0
        loss_value = float("nan")
        try:
            while self.step < c.steps:
                t0 = time.perf_counter()
                loss, samples_per_ray = self.train_step()
                window_rays += c.batch_rays
                window_samples += samples_per_ray * c.batch_rays
                last = self.step == c.steps
                if self.step % report_every == 0 or last:
                    loss_value = float(loss)
                    if not math.isfinite(loss_value):
                        raise TrainingDiverged(
                            f"loss became {loss_value} at step {self.step}; the last good checkpoint in "
                            f"{self.out_dir} is kept. Try a lower --lr"
                        )
                if self.device.type == "cuda" and (self.step % report_every == 0 or last):
                    torch.cuda.synchronize()
                self.train_seconds += time.perf_counter() - t0
                if c.val_every and self.step % c.val_every == 0 and not last:
                    self.validate()
                    append_history(self.out_dir, self._history_record(loss_value))
                if c.checkpoint_every and self.step % c.checkpoint_every == 0 and not last:
                    self.save()
                if on_progress and (self.step % report_every == 0 or last):
                    now = time.perf_counter()
                    rate = window_rays / max(now - window_start, 1e-9)
                    spr = window_samples / max(window_rays, 1)
                    window_start, window_rays, window_samples = now, 0, 0.0
                    eta = (c.steps - self.step) * c.batch_rays / max(rate, 1e-9)
                    on_progress(Progress(self.step, c.steps, loss_value, -10.0 * math.log10(max(loss_value, 1e-10)),
                                         rate, spr, self.train_seconds, eta, self.last_val_psnr))
                if stop_requested():
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            self.save()
            raise
        if on_progress:
            on_progress(Progress(self.step, c.steps, loss_value, float("nan"), 0.0, 0.0, self.train_seconds, 0.0,
                                 self.last_val_psnr, phase="validate"))
        self.validate()
        self.save()
        append_history(self.out_dir, self._history_record(loss_value))
        metrics = {
            "model": self.field.kind,
            "steps": self.step,
            "train_seconds": self.train_seconds,
            "val_psnr_db": self.last_val_psnr,
            "num_parameters": self.field.num_parameters(),
        }
        write_json(self.out_dir / METRICS_NAME, metrics)
        return metrics

    def _history_record(self, loss: float) -> dict[str, Any]:
        return {"step": self.step, "elapsed_s": self.train_seconds, "loss": loss, "val_psnr_db": self.last_val_psnr}
