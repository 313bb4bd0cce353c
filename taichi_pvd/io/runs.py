"""Run directories: one folder holding a checkpoint (config + tensors), metrics and history.

A run directory is all anyone needs to reload a trained or distilled field: the checkpoint
carries the architecture, its config, the training or distillation settings and the scene path.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..fields import RadianceField, make_field
from ..rendering.occupancy import OccupancyGrid
from .checkpoint import load_checkpoint
from .run_state import unprefixed

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.json"
HISTORY_NAME = "history.jsonl"
#: Folder of a run holding the copies kept at given optimisation times (``snapshots/<t>s/``).
SNAPSHOTS_DIR = "snapshots"


@dataclass
class LoadedRun:
    """A field and its occupancy grid restored from a run directory."""

    path: Path
    field: RadianceField
    grid: OccupancyGrid
    config: dict[str, Any]
    meta: dict[str, Any]

    @property
    def model(self) -> str:
        """Architecture name (``hash``, ``vm``, ``mlp``, ``grid``)."""
        return str(self.config["model"])


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
        raise CheckpointError(f"run directory {run_dir} does not exist: pass a folder written by `pvd-ti train` or `pvd-ti distill`")
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


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (temporary file, then rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_history(run_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line to the run's history log (steps, time, losses, PSNR)."""
    with open(Path(run_dir) / HISTORY_NAME, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_history(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of the run's history log, oldest first (empty if there is none)."""
    path = Path(run_dir) / HISTORY_NAME
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
