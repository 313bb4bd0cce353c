"""Checkpoints: one ``<name>.pt`` file holding only data, never pickled code.

The file is a ``torch.save`` of a dict with exactly these keys:

- ``format_version`` (int): :data:`FORMAT_VERSION` of the build that wrote it;
- ``kind`` (str): what it holds, e.g. ``"field"`` or ``"run"``;
- ``config`` (dict): JSON-like configuration (dicts with str keys, lists/tuples, str, int,
  float, bool, None), enough to rebuild what the tensors belong to;
- ``tensors`` (dict[str, Tensor]): flat name -> CPU tensor;
- ``meta`` (dict): JSON-like facts about the moment of saving (step, time, metrics...).

Writing is atomic (temporary file in the same folder, fsync, rename), so a crash never leaves a
half-written checkpoint under the final name. Reading checks every record's CRC-32 (damaged
bytes are refused, not loaded as wrong weights), then uses ``torch.load(weights_only=True)``:
a file carrying pickled Python objects is refused, not executed.
"""

from __future__ import annotations

import numbers
import os
import pickle
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from taichi_pvd.errors import CheckpointError

from .storage import honour_umask

#: Version of the on-disk layout written by this build; older versions stay readable.
FORMAT_VERSION = 1

_KEYS = ("format_version", "kind", "config", "tensors", "meta")


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: see the module docstring for the meaning of each field."""

    path: Path
    format_version: int
    kind: str
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


def _json_like_problem(value: Any, where: str) -> str | None:
    """Where and why ``value`` is not JSON-like, or ``None`` when it is."""
    if value is None or isinstance(value, (bool, str)):
        return None
    if type(value) in (int, float):
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problem = _json_like_problem(item, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has a non-string key {key!r}"
            problem = _json_like_problem(item, f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    return f"{where} is a {type(value).__name__}, not a JSON value"


def _to_json_like(value: Any, where: str) -> Any:
    """A copy of ``value`` with numeric subclasses (numpy scalars...) turned into int/float.

    Raises:
        TypeError: ``value`` holds something with no JSON equivalent (a tensor, an object...).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        items = [_to_json_like(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a non-string key {key!r}")
            out[key] = _to_json_like(item, f"{where}[{key!r}]")
        return out
    raise TypeError(f"{where} is a {type(value).__name__}, which has no JSON equivalent")


def _cpu_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be strings, got {name!r}")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"tensors[{name!r}] is a {type(tensor).__name__}, not a torch.Tensor")
        cpu = tensor.detach().to("cpu")
        if cpu.untyped_storage().nbytes() != cpu.numel() * cpu.element_size():
            cpu = cpu.clone()  # a view: save only its own elements, not the whole storage
        out[name] = cpu
    return out


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    kind: str,
    config: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
) -> Path:
    """Write a checkpoint atomically and return its path.

    Args:
        path: destination file, conventionally ``<name>.pt``; its folder is created if needed.
        kind: what the checkpoint holds, e.g. ``"field"`` or ``"run"``.
        config: JSON-like configuration dict (numpy scalars are converted to int/float).
        tensors: flat dict name -> tensor, any device and dtype; stored detached on the CPU.
        meta: JSON-like dict of facts such as ``step``, ``time`` (s) and metrics.

    Raises:
        TypeError: ``config`` or ``meta`` hold non-JSON values, or ``tensors`` non-tensors
            (programming errors, not user errors).
    """
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"kind must be a non-empty string, got {kind!r}")
    if not isinstance(config, dict) or not isinstance(meta, dict):
        raise TypeError("config and meta must be dicts")
    payload = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": _to_json_like(config, "config"),
        "tensors": _cpu_tensors(tensors),
        "meta": _to_json_like(meta, "meta"),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        honour_umask(fd)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_payload(path: Path) -> Any:
    if not path.exists():
        raise CheckpointError(
            f"no checkpoint at {path}: check the path (checkpoints are .pt files)"
        )
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file: pass the .pt file in it")
    corrupted = (
        f"checkpoint {path} is truncated or corrupted (not a complete torch.save archive); "
        "use another checkpoint or re-create it"
    )
    if not zipfile.is_zipfile(path):
        raise CheckpointError(corrupted)
    # torch.load does not check the archive's CRC-32s: damaged tensor bytes would load silently.
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise CheckpointError(corrupted) from err
    if damaged is not None:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupted (record {damaged} fails its checksum); "
            "use another checkpoint or re-create it"
        )
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        # The weights-only unpickler names the class or function a file tries to import;
        # any other unpickling failure means damaged bytes.
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) (\S+)", str(err))
        if not found:
            raise CheckpointError(corrupted) from err
        raise CheckpointError(
            f"checkpoint {path} holds pickled Python objects ({found.group(1)}), not only data; "
            "it was not written by taichi-pvd and is refused because loading it could run code"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(corrupted) from err


def load_checkpoint(
    path: str | os.PathLike[str], *, expected_kind: str | None = None
) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; tensors are on the CPU.

    Args:
        path: the ``.pt`` file.
        expected_kind: when given, the checkpoint's ``kind`` must equal it.

    Raises:
        CheckpointError: the file is missing, truncated or corrupted, carries pickled code,
            was written by a newer taichi-pvd, lacks keys, has a non-JSON config or meta, or
            is of another kind than ``expected_kind``.
    """
    path = Path(path)
    payload = _read_payload(path)
    not_ours = f"{path} is not a taichi-pvd checkpoint"
    if not isinstance(payload, dict):
        raise CheckpointError(f"{not_ours}: it holds a {type(payload).__name__}, not a dict")
    version = payload.get("format_version")
    if version is not None:
        if type(version) is not int or version < 1:
            raise CheckpointError(f"{not_ours}: invalid format_version {version!r}")
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint {path} was written by a newer taichi-pvd (format {version}; this "
                f"build reads up to {FORMAT_VERSION}); upgrade taichi-pvd to load it"
            )
    missing = [key for key in _KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{not_ours}: missing {', '.join(missing)}")
    kind = payload["kind"]
    if not isinstance(kind, str):
        raise CheckpointError(f"{not_ours}: kind is a {type(kind).__name__}, not a string")
    for key in ("config", "meta"):
        if not isinstance(payload[key], dict):
            found = type(payload[key]).__name__
            raise CheckpointError(f"{not_ours}: {key} is a {found}, not a dict")
        problem = _json_like_problem(payload[key], key)
        if problem:
            raise CheckpointError(f"checkpoint {path} has a {key} that is not JSON-like: {problem}")
    tensors = payload["tensors"]
    if not isinstance(tensors, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()
    ):
        raise CheckpointError(f"{not_ours}: tensors is not a dict of name -> tensor")
    if expected_kind is not None and kind != expected_kind:
        raise CheckpointError(
            f"checkpoint {path} holds a {kind!r}, but a {expected_kind!r} checkpoint is needed here"
        )
    return Checkpoint(
        path=path,
        format_version=version,
        kind=kind,
        config=payload["config"],
        tensors=tensors,
        meta=payload["meta"],
    )
