"""Run directories: one folder holding a checkpoint (config + tensors), metrics and history.

A run directory is all anyone needs to reload a trained or distilled field: the checkpoint
carries the architecture, its config, the training or distillation settings and the scene path.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.camera_rig import CameraRig
from ..data.formats import load_scene
from ..data.scene import Scene
from ..data.demo import demo_scene_path
from ..errors import CheckpointError, SceneError
from ..fields import RadianceField, make_field
from ..rendering.occupancy import OccupancyGrid
from ..rendering.volume import MarchingConfig
from .checkpoint import load_checkpoint
from .run_state import unprefixed
from .storage import honour_umask

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.json"
HISTORY_NAME = "history.jsonl"
#: Folder of a run holding the copies kept at given optimisation times (``snapshots/<t>s/``).
SNAPSHOTS_DIR = "snapshots"


@dataclass
class LoadedRun:
    """A field and its occupancy grid restored from a run directory, with the settings its
    config records (marching, camera rig, scene)."""

    path: Path
    field: RadianceField
    grid: OccupancyGrid
    config: dict[str, Any]
    meta: dict[str, Any]

    @property
    def model(self) -> str:
        """Architecture name (``hash``, ``vm``, ``mlp``, ``grid``)."""
        return str(self.config["model"])

    def marching_config(self) -> MarchingConfig:
        """The marching settings the run was trained or distilled with (defaults if unrecorded)."""
        for section in ("train", "distill"):
            recorded = self.config.get(section, {}).get("marching")
            if recorded is not None:
                return MarchingConfig(**recorded)
        return MarchingConfig()

    def camera_rig(self) -> CameraRig:
        """The camera rig recorded in the run's config; :class:`CheckpointError` if absent."""
        if "camera_rig" not in self.config:
            raise CheckpointError(f"{self.path} records no camera rig: retrain or re-distil it with this version")
        return CameraRig(**self.config["camera_rig"])

    def scene_path(self) -> Path:
        """The scene folder the run was trained on (the teacher's, for a distilled run).

        A demo-scene run whose cached scene was deleted gets it rendered again."""
        scene = self.config.get("scene") or {}
        if scene.get("path") and Path(scene["path"]).exists():
            return Path(scene["path"])
        if scene.get("demo"):
            return demo_scene_path()
        raise SceneError(
            f"the scene of {self.path} ({scene.get('path') or 'not recorded'}) is not on this machine: "
            "put the scene folder back at that path"
        )

    def scene_options(self, **overrides: Any) -> dict[str, Any]:
        """The options the run's scene was loaded with: :func:`recorded_scene_options`."""
        return recorded_scene_options(self.config, **overrides)

    def load_scene(self, split: str, **overrides: Any) -> Scene:
        """One split of the run's scene loaded with :meth:`scene_options` (``overrides``, e.g.
        ``downscale``, in their place), on the CPU."""
        return load_scene(self.scene_path(), split, **self.scene_options(**overrides))

    def render_background(self) -> tuple[float, float, float]:
        """The colour to render the run on along free camera paths: white for a scene with
        transparent images (and for runs that do not record which), black for an opaque scene,
        the background its training composited behind it."""
        scene = self.config.get("scene") or {}
        return (0.0, 0.0, 0.0) if scene.get("transparent") is False else (1.0, 1.0, 1.0)


def recorded_scene_options(config: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The options a run's scene was loaded with (``downscale``, ``holdout_every``,
    ``scene_type``), from its checkpoint ``config``, as keyword arguments of
    :func:`~taichi_pvd.data.load_scene`, with ``overrides`` that are not None in their place. A
    run that records none (made before they were recorded) gets its training downscale and the
    loader's defaults."""
    scene = config.get("scene") or {}
    recorded = dict(scene.get("options") or {"downscale": int(config.get("train", {}).get("downscale", 1))})
    recorded.update({k: v for k, v in overrides.items() if v is not None})
    return recorded


def checkpoint_path(run_dir: str | os.PathLike) -> Path:
    """The checkpoint file of a run directory."""
    return Path(run_dir) / CHECKPOINT_NAME


def _is_contracted(config: dict[str, Any]) -> bool:
    """Whether a run's config describes an unbounded scene, whose samples are contracted: its
    camera rig records the scene's normalisation."""
    return (config.get("camera_rig") or {}).get("contraction") is not None


def load_run(run_dir: str | os.PathLike, device: torch.device | str = "cpu") -> LoadedRun:
    """Rebuild the field and occupancy grid saved in ``run_dir`` on ``device`` (a contracted
    grid for a run of an unbounded scene, see :func:`_is_contracted`).

    Raises :class:`CheckpointError` when the folder holds no readable checkpoint.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist: pass a run folder written by training or distillation")
    ckpt = load_checkpoint(checkpoint_path(run_dir), expected_kind="run")
    config = ckpt.config
    try:
        aabb = torch.tensor(config["aabb"], dtype=torch.float32)
        field = make_field(config["model"], aabb, config["field"])
        field.load_tensors(unprefixed(ckpt.tensors, "field."))
        grid = OccupancyGrid(aabb, resolution=int(config["grid_resolution"]), contracted=_is_contracted(config))
        grid.load_state_dict(unprefixed(ckpt.tensors, "grid."))
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint in {run_dir} does not match its own config ({exc}); it may be from another version") from exc
    field.to(device)
    grid.to(device)
    grid.rebuild_bitfield()
    return LoadedRun(path=run_dir, field=field, grid=grid, config=config, meta=ckpt.meta)


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (``null``): JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (temporary file, then rename); NaN and
    infinities are written as ``null``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        honour_umask(fd)
        with os.fdopen(fd, "w") as f:
            json.dump(json_safe(data), f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_history(run_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line to the run's history log (steps, time, losses, PSNR); NaN and
    infinities are written as ``null``."""
    line = json.dumps(json_safe(record), allow_nan=False) + "\n"
    with open(Path(run_dir) / HISTORY_NAME, "a") as f:
        f.write(line)


def read_history(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of the run's history log, oldest first (empty if there is none). A line a
    killed process left half-written is skipped."""
    path = Path(run_dir) / HISTORY_NAME
    if not path.exists():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def trim_history(run_dir: str | os.PathLike, last_step: int) -> None:
    """Keep only the history records up to ``last_step`` (the step of the checkpoint a run
    resumes from): what a killed run logged after its last checkpoint is redone, not repeated."""
    path = Path(run_dir) / HISTORY_NAME
    if not path.exists():
        return
    records = read_history(run_dir)
    kept = [r for r in records if isinstance(r.get("step"), int) and r["step"] <= last_step]
    text = "".join(json.dumps(json_safe(r), allow_nan=False) + "\n" for r in kept)
    if text == path.read_text(errors="replace"):
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        honour_umask(fd)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
