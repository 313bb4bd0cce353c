"""The optimisation loop shared by training and distillation: learning-rate schedule, mixed
precision, progress reports, validation, atomic checkpoints, resume, interruption and
divergence handling. Subclasses say what one step does."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..data import Scene, image_rays
from ..errors import ArchitectureMismatch, RunDiverged
from ..fields import RadianceField
from ..io.checkpoint import load_checkpoint, save_checkpoint
from ..io.run_state import optimizer_from_flat, optimizer_to_flat, prefixed, unprefixed
from ..io.runs import METRICS_NAME, SNAPSHOTS_DIR, append_history, checkpoint_path, trim_history, write_json
from ..rendering.inference import render_rays_chunked
from ..rendering.occupancy import OccupancyGrid
from .averaging import ParameterAverage, load_parameters
from .interrupts import interrupted_at_once, interruption, stop_requested, uninterruptible
from .loop_config import LoopConfig

#: Checkpoint prefix of the trained parameter values when the field's tensors hold their
#: moving average (``ema_decay``), so that a resumed run continues from the trained values.
TRAINED_PREFIX = "ema.trained."


@dataclass
class Progress:
    """What the progress display shows after a step."""

    step: int
    steps: int
    loss: float
    rays_per_second: float
    samples_per_ray: float
    elapsed_s: float
    eta_s: float
    val_psnr_db: float | None
    phase: str = "train"
    losses: dict[str, float] | None = None
    stage: int | None = None


ProgressFn = Callable[[Progress], None]
#: Called after each validation with the loop (its field holding the validated parameters);
#: returns named figures recorded in the run's history beside the loop's own.
ValidateFn = Callable[["OptimizationLoop"], dict[str, float]]


def cosine_lr_factor(step: int, steps: int, final_ratio: float, warmup: int) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine decay from 1 to
    ``final_ratio`` at ``steps``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(max(step - warmup, 0) / max(steps - warmup, 1), 1.0)
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class OptimizationLoop:
    """Optimises ``field`` (whose samples are drawn through ``grid``) for ``config.steps``
    steps, writing a resumable checkpoint into ``out_dir``.

    Subclasses implement :meth:`train_step` (or :meth:`optimizer_step` as a whole),
    :meth:`validate` and :meth:`checkpoint_config`.
    """

    #: Autocast (``mixed_precision``) in bfloat16 where the GPU has it instead of float16 with a
    #: dynamic loss scale: float32's range at a quarter of float16's precision.
    prefers_bfloat16: bool = False

    def __init__(self, field: RadianceField, grid: OccupancyGrid, config: LoopConfig,
                 out_dir: str | Path, device: torch.device):
        self.config = config
        self.out_dir = Path(out_dir)
        self.device = device
        self.field = field.to(device)
        self.grid = grid.to(device)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(config.seed)
        self.amp = config.mixed_precision and device.type == "cuda"
        self.amp_dtype = (torch.bfloat16 if self.amp and self.prefers_bfloat16 and torch.cuda.is_bf16_supported()
                          else torch.float16)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16,
                                           init_scale=2.0**10)
        self.step = 0
        self.train_seconds = 0.0
        #: Samples and rays marched by the steps after :meth:`sampling_warmup_steps` (the
        #: figures behind ``samples_per_ray_after_warmup``).
        self.samples_after_warmup = 0.0
        self.rays_after_warmup = 0
        self.last_val_psnr: float | None = None
        #: Generator state before a prefetched batch was drawn (None: nothing prefetched); a
        #: checkpoint stores this so that resuming redraws the same batch.
        self.rng_state_before_prefetch: torch.Tensor | None = None
        #: The step of the last checkpoint written into the run folder (None: none yet).
        self.saved_step: int | None = None
        #: Called with the path of each checkpoint written into the run folder.
        self.on_checkpoint: Callable[[Path], None] | None = None
        #: Called after each step, outside the optimisation time (e.g. the live viewer's frames).
        self.between_steps: Callable[[], None] | None = None
        self.build_optimizer()

    # -- to be provided by subclasses -------------------------------------------------------------

    def train_step(self) -> tuple[torch.Tensor, float, dict[str, torch.Tensor]]:
        """Compute the loss of one batch. Returns ``(loss, samples_per_ray, named losses)``;
        the loop does backward and the optimizer step."""
        raise NotImplementedError

    def validate(self) -> float | None:
        """A quality figure in dB (higher is better), or None."""
        raise NotImplementedError

    def checkpoint_config(self) -> dict[str, Any]:
        """The JSON config stored with the checkpoint."""
        raise NotImplementedError

    def final_metrics(self) -> dict[str, Any]:
        """Extra entries of ``metrics.json``."""
        return {}

    def prepare_next_step(self) -> None:
        """Called after the loss of a step is built and before its backward pass: a loop may
        draw and march the next step's rays here, so the host waits on the marcher's sample
        count while the device still has this step's backward pass queued. A loop that does
        so records the generator state from before the draw in ``rng_state_before_prefetch``."""

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Tensors a subclass keeps in its checkpoints beside the loop's (names unique to it)."""
        return {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Take back what :meth:`extra_state` saved, from a checkpoint's ``tensors``."""

    def stage(self) -> int | None:
        """The stage the current step belongs to, for loops that have stages."""
        return None

    def sampling_warmup_steps(self) -> int:
        """Steps left out of ``samples_per_ray_after_warmup`` (those before empty space is
        skipped in earnest, e.g. the occupancy grid's warm-up)."""
        return 0

    def samples_per_ray_after_warmup(self) -> float | None:
        """Mean samples a ray over the steps after :meth:`sampling_warmup_steps` (None before
        any)."""
        return self.samples_after_warmup / self.rays_after_warmup if self.rays_after_warmup else None

    # -- optimisation ------------------------------------------------------------------------------

    def build_optimizer(self) -> None:
        """(Re)build Adam over the field's parameter groups."""
        groups = self.field.param_groups(self.config.lr)
        for g in groups:
            g["initial_lr"] = g["lr"]
        # The fused CUDA Adam takes the grad scaler's inf check on the device: no host sync.
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.Adam(groups, lr=self.config.lr, eps=self.config.adam_eps,
                                          betas=(0.9, self.config.adam_beta2),
                                          fused=fused)
        #: Moving average of the parameters (None without ``ema_decay``): the weights the run
        #: validates, renders and saves with; restarts when the field replaces its parameters.
        self.average = ParameterAverage(self.field, self.config.ema_decay) if self.config.ema_decay else None

    def averaged(self) -> contextlib.AbstractContextManager:
        """Context in which the field holds its parameters' moving average (a no-op without
        ``ema_decay``)."""
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    def _set_lr(self) -> None:
        s = self.config
        step, steps = self.step, s.steps
        if s.time_limit_s:
            # Under a time limit the schedule follows whichever runs out first, steps or time,
            # so a run cut short by the clock still ends at its final learning rate.
            steps = min(steps, max(step + 1, round(step * s.time_limit_s / max(self.train_seconds, 1e-9))))
        factor = cosine_lr_factor(step, steps, s.lr_final_ratio, s.lr_warmup_steps)
        for g in self.optimizer.param_groups:
            if isinstance(g["lr"], torch.Tensor):
                g["lr"].fill_(g["initial_lr"] * factor)
            else:
                g["lr"] = g["initial_lr"] * factor

    def make_optimizer_capturable(self) -> None:
        """Prepare Adam for CUDA-graph capture: its learning rates become device tensors that
        :meth:`_set_lr` updates in place, so a captured step reads the current rate."""
        for g in self.optimizer.param_groups:
            g["capturable"] = True
            if not isinstance(g["lr"], torch.Tensor):
                g["lr"] = torch.tensor(float(g["lr"]), device=self.device)

    def autocast(self):
        """Autocast context (``amp_dtype``) for the field evaluations of a step; a no-op without
        ``mixed_precision`` and on the CPU."""
        # No cache of cast weights: each weight is cast once a step anyway, and a CUDA graph
        # cannot capture a step that reuses casts cached outside it.
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp, cache_enabled=False)

    def begin_step(self) -> bool:
        """The field's schedule hook and the step's learning rate; True when the field replaced
        its parameters and the optimizer was rebuilt."""
        rebuilt = self.field.update_schedule(self.step)
        if rebuilt:
            self.build_optimizer()
        self._set_lr()
        return rebuilt

    def descend(self, loss: torch.Tensor) -> None:
        """Backward pass of ``loss``, Adam step (through the loss scale) and the parameter
        average. A loss that depends on no parameter (a batch whose rays all missed the
        occupied cells: no sample) changes nothing."""
        self.optimizer.zero_grad(set_to_none=True)
        if not loss.requires_grad:
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.average is not None:
            self.average.update()

    def optimizer_step(self) -> tuple[torch.Tensor, float, dict[str, torch.Tensor]]:
        """One full step: schedule hooks, loss, backward, Adam. Returns ``(loss,
        samples_per_ray, named losses)``."""
        self.begin_step()
        loss, samples_per_ray, parts = self.train_step()
        self.prepare_next_step()
        self.descend(loss)
        self.step += 1
        return loss.detach(), samples_per_ray, parts

    # -- persistence -------------------------------------------------------------------------------

    def _all_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.field.parameters())

    def save(self, folder: Path | None = None) -> Path:
        """Write the resumable checkpoint atomically into ``folder`` (default: the run folder);
        a second Ctrl-C waits until it is written. Non-finite parameters raise
        :class:`TrainingDiverged` and leave the last good checkpoint in place."""
        with uninterruptible():
            return self._save(folder)

    def _save(self, folder: Path | None) -> Path:
        if not self._all_finite():
            raise RunDiverged("parameters became NaN/Inf", self.step, self.out_dir)
        optim_tensors, groups = optimizer_to_flat(self.optimizer)
        averaged = {} if self.average is None else self.average.state()
        trained = {} if self.average is None else self.average.trained()
        tensors = {
            **prefixed({**self.field.state_dict(), **averaged}, "field."),
            **prefixed(trained, TRAINED_PREFIX),
            **prefixed(self.grid.state_dict(), "grid."),
            **optim_tensors,
            **self.extra_state(),
            "rng.generator": (self.rng_state_before_prefetch if self.rng_state_before_prefetch is not None
                              else self.generator.get_state()),
        }
        meta = {
            "step": self.step,
            "train_seconds": self.train_seconds,
            "optimizer_groups": groups,
            "grad_scale": float(self.scaler.get_scale()) if self.scaler.is_enabled() else None,
            "val_psnr_db": self.last_val_psnr,
            "samples_after_warmup": self.samples_after_warmup,
            "rays_after_warmup": self.rays_after_warmup,
        }
        config = {
            **self.checkpoint_config(),
            "model": self.field.kind,
            "field": self.field.config_dict(),
            "aabb": self.field.aabb.detach().cpu().tolist(),
            "grid_resolution": self.grid.resolution,
        }
        folder = self.out_dir if folder is None else folder
        folder.mkdir(parents=True, exist_ok=True)
        path = checkpoint_path(folder)
        save_checkpoint(path, kind="run", config=config, tensors=tensors, meta=meta)
        if folder == self.out_dir:
            self.saved_step = self.step
            if self.on_checkpoint is not None:
                self.on_checkpoint(path)
        return path

    def resume(self, check: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Continue from the checkpoint in ``out_dir`` (same architecture). The tensors are read
        by name, so those an earlier version saved for options since removed (see
        :data:`~taichi_pvd.training.loop_config.REMOVED_OPTIONS`) are ignored. ``check(config)``,
        given the checkpoint's config before anything is loaded, may refuse to resume."""
        ckpt = load_checkpoint(checkpoint_path(self.out_dir), expected_kind="run")
        if ckpt.config.get("model") != self.field.kind:
            raise ArchitectureMismatch(self.out_dir, ckpt.config.get("model"), self.field.kind, "resume")
        if check is not None:
            check(ckpt.config)
        self.field.load_tensors(unprefixed(ckpt.tensors, "field."))
        self.field.to(self.device)
        self.grid.load_state_dict(unprefixed(ckpt.tensors, "grid."))
        self.grid.to(self.device)
        self.grid.rebuild_bitfield()
        self.build_optimizer()
        trained = unprefixed(ckpt.tensors, TRAINED_PREFIX)
        if trained:
            # The field's tensors were the average (which the new average starts from):
            # training continues from the trained values.
            load_parameters(self.field, trained)
        optim = {k: v.to(self.device) for k, v in ckpt.tensors.items() if k.startswith("optim.")}
        optimizer_from_flat(self.optimizer, optim, ckpt.meta["optimizer_groups"])
        self.generator.set_state(ckpt.tensors["rng.generator"])
        self.load_extra_state(ckpt.tensors)
        self.step = int(ckpt.meta["step"])
        self.saved_step = self.step
        trim_history(self.out_dir, self.step)
        self.train_seconds = float(ckpt.meta["train_seconds"])
        self.samples_after_warmup = float(ckpt.meta.get("samples_after_warmup", 0.0))
        self.rays_after_warmup = int(ckpt.meta.get("rays_after_warmup", 0))
        self.last_val_psnr = ckpt.meta.get("val_psnr_db")
        # A run saved without the loss scale (float32, bfloat16) resumed under float16 starts
        # from the initial scale.
        if self.scaler.is_enabled() and ckpt.meta.get("grad_scale") is not None:
            self.scaler.update(float(ckpt.meta["grad_scale"]))

    def _keep_due_snapshots(self) -> None:
        """Save a copy of the checkpoint under ``snapshots/<t>s/`` for each snapshot time ``t``
        that the optimisation time has reached and that has no snapshot yet."""
        for t in self.config.snapshot_times_s:
            folder = self.out_dir / SNAPSHOTS_DIR / f"{t:g}s"
            if self.train_seconds >= t and not checkpoint_path(folder).exists():
                self.save(folder)

    def _history_record(self, loss: float, parts: dict[str, float], figures: dict[str, float]) -> dict[str, Any]:
        return {"step": self.step, "elapsed_s": self.train_seconds, "loss": loss, **parts,
                "val_psnr_db": self.last_val_psnr,
                "samples_per_ray_after_warmup": self.samples_per_ray_after_warmup(), **figures}

    def _validate_with(self, on_validate: ValidateFn | None) -> dict[str, float]:
        """:meth:`validate` with the parameters' average in place, then ``on_validate``'s
        figures (empty without it)."""
        with self.averaged():
            self.validate()
            return {} if on_validate is None else dict(on_validate(self))

    def render_view(self, scene: Scene, index: int, background: torch.Tensor | None = None) -> torch.Tensor:
        """View ``index`` of ``scene`` rendered with the field as it is now, as an image
        [H, W, 3] on ``background`` ([3], default white) at :attr:`config`'s marching, as
        ``pvd-ti render`` does (float16 autocast on CUDA). A stop request (Ctrl-C, SIGTERM)
        interrupts it within about a second: :class:`KeyboardInterrupt`."""
        origins, directions = image_rays(scene, index)
        bg = torch.ones(3, device=self.device) if background is None else background
        rgb, _, _ = render_rays_chunked(self.field, self.grid, origins, directions,
                                        near=scene.near, far=scene.far, background=bg, config=self.config.marching,
                                        should_stop=stop_requested)
        return rgb.reshape(scene.height, scene.width, 3)

    # -- the loop ----------------------------------------------------------------------------------

    def run(self, on_progress: ProgressFn | None = None, on_validate: ValidateFn | None = None,
            report_every: int = 50) -> dict[str, Any]:
        """Optimise until ``config.steps``, validating, checkpointing and reporting.

        ``on_validate(loop)`` runs after every validation; the figures it returns join that
        validation's record in the run's history. Ctrl-C or SIGTERM writes a resumable checkpoint
        before ``KeyboardInterrupt`` propagates; NaN/Inf raises :class:`TrainingDiverged` keeping
        the last good checkpoint. Returns the final metrics (also written to ``metrics.json``).
        """
        s = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        window_start, window_rays, window_samples = time.perf_counter(), 0, 0.0
        loss_value, parts_value, figures = float("nan"), {}, {}
        if stop_requested():  # asked during start-up: nothing to save yet
            raise interruption()
        try:
            while self.step < s.steps:
                t0 = time.perf_counter()
                loss, samples_per_ray, parts = self.optimizer_step()
                window_rays += s.batch_rays
                window_samples += samples_per_ray * s.batch_rays
                if self.step > self.sampling_warmup_steps():
                    self.samples_after_warmup += samples_per_ray * s.batch_rays
                    self.rays_after_warmup += s.batch_rays
                out_of_time = bool(s.time_limit_s) and self.train_seconds + (time.perf_counter() - t0) >= s.time_limit_s
                last = self.step == s.steps or out_of_time
                report = self.step % report_every == 0 or last
                if report:
                    loss_value = float(loss)
                    parts_value = {k: float(v) for k, v in parts.items()}
                    if not math.isfinite(loss_value):
                        raise RunDiverged(f"loss became {loss_value}", self.step, self.out_dir)
                    if self.device.type == "cuda":
                        torch.cuda.synchronize()
                self.train_seconds += time.perf_counter() - t0
                if s.val_every and self.step % s.val_every == 0 and not last:
                    figures = self._validate_with(on_validate)
                    append_history(self.out_dir, self._history_record(loss_value, parts_value, figures))
                if s.checkpoint_every and self.step % s.checkpoint_every == 0 and not last:
                    self.save()
                self._keep_due_snapshots()
                if self.between_steps is not None:
                    self.between_steps()
                if on_progress and report:
                    now = time.perf_counter()
                    rate = window_rays / max(now - window_start, 1e-9)
                    spr = window_samples / max(window_rays, 1)
                    window_start, window_rays, window_samples = now, 0, 0.0
                    eta = (s.steps - self.step) * s.batch_rays / max(rate, 1e-9)
                    on_progress(Progress(self.step, s.steps, loss_value, rate, spr, self.train_seconds, eta,
                                         self.last_val_psnr, losses=parts_value, stage=self.stage()))
                if stop_requested():
                    raise interruption()
                if out_of_time:
                    break
            if on_progress:
                on_progress(Progress(self.step, s.steps, loss_value, 0.0, 0.0, self.train_seconds, 0.0,
                                     self.last_val_psnr, phase="validate", losses=parts_value))
            figures = self._validate_with(on_validate)
        except KeyboardInterrupt:
            self.save()
            raise
        except Exception as exc:
            if not interrupted_at_once():
                raise
            # A second Ctrl-C that a library turned into another error on its way out of a step:
            # still an interruption, saved as one.
            self.save()
            raise interruption() from exc
        self.save()
        append_history(self.out_dir, self._history_record(loss_value, parts_value, figures))
        metrics = {
            "model": self.field.kind,
            "steps": self.step,
            "train_seconds": self.train_seconds,
            "val_psnr_db": self.last_val_psnr,
            "num_parameters": self.field.num_parameters(),
            "samples_per_ray_after_warmup": self.samples_per_ray_after_warmup(),
            **self.final_metrics(),
        }
        write_json(self.out_dir / METRICS_NAME, metrics)
        return metrics
