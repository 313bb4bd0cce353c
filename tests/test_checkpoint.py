"""Checkpoints: round trip, atomic writes, and a clear CheckpointError for every bad file."""

from pathlib import Path

import numpy as np
import pytest
import torch

from taichi_pvd.errors import CheckpointError
from taichi_pvd.io import FORMAT_VERSION, Checkpoint, load_checkpoint, save_checkpoint

_MARKER = Path(__file__).parent / "_checkpoint_payload_ran"


class _Custom:
    """A class a hostile or careless file could pickle."""


class _RunsCode:
    """Unpickling this would create a marker file: proof that code from a file ran."""

    def __reduce__(self):
        return (Path.touch, (_MARKER,))


def _payload(**overrides):
    payload = {
        "format_version": FORMAT_VERSION,
        "kind": "field",
        "config": {"model": "hash", "levels": 16},
        "tensors": {"w": torch.ones(3)},
        "meta": {"step": 10},
    }
    payload.update(overrides)
    return payload


@pytest.fixture
def saved(tmp_path):
    tensors = {
        "table": torch.randn(5, 4, dtype=torch.float64),
        "bits": torch.tensor([1, 2, 3], dtype=torch.uint8),
        "weight": torch.randn(2, 3, requires_grad=True),
    }
    path = save_checkpoint(
        tmp_path / "model.pt",
        kind="field",
        config={"model": "vm", "rank": [16, 4], "scale": 1.5, "bg": None, "flag": True},
        tensors=tensors,
        meta={"step": 1200, "time": 12.5, "metrics": {"psnr": 30.1}},
    )
    return path, tensors


def test_round_trip_keeps_kind_config_meta_and_tensors(saved):
    path, tensors = saved
    ckpt = load_checkpoint(path, expected_kind="field")
    assert isinstance(ckpt, Checkpoint)
    assert ckpt.path == path and ckpt.format_version == FORMAT_VERSION and ckpt.kind == "field"
    assert ckpt.config == {"model": "vm", "rank": [16, 4], "scale": 1.5, "bg": None, "flag": True}
    assert ckpt.meta == {"step": 1200, "time": 12.5, "metrics": {"psnr": 30.1}}
    assert set(ckpt.tensors) == set(tensors)
    for name, tensor in tensors.items():
        loaded = ckpt.tensors[name]
        assert loaded.device.type == "cpu" and loaded.dtype == tensor.dtype
        assert not loaded.requires_grad
        torch.testing.assert_close(loaded, tensor.detach(), rtol=0, atol=0)


def test_saved_file_holds_only_plain_data(saved):
    path, _ = saved
    raw = torch.load(path, weights_only=True, map_location="cpu")
    assert sorted(raw) == ["config", "format_version", "kind", "meta", "tensors"]


def test_a_view_is_saved_without_its_base_storage(tmp_path):
    base = torch.arange(10000, dtype=torch.float32)
    path = save_checkpoint(
        tmp_path / "v.pt", kind="field", config={}, tensors={"v": base[:4]}, meta={}
    )
    loaded = load_checkpoint(path).tensors["v"]
    torch.testing.assert_close(loaded, base[:4])
    assert loaded.untyped_storage().nbytes() == 4 * 4
    assert path.stat().st_size < 10000


def test_numpy_scalars_in_meta_become_python_numbers(tmp_path):
    path = save_checkpoint(
        tmp_path / "n.pt",
        kind="run",
        config={"n": np.int64(3)},
        tensors={},
        meta={"psnr": np.float32(31.5), "steps": (np.int32(1), 2)},
    )
    ckpt = load_checkpoint(path, expected_kind="run")
    assert ckpt.config == {"n": 3} and type(ckpt.config["n"]) is int
    assert ckpt.meta == {"psnr": 31.5, "steps": (1, 2)} and type(ckpt.meta["psnr"]) is float


def test_save_rejects_config_that_is_not_json_like(tmp_path):
    with pytest.raises(TypeError, match=r"config\['t'\] is a Tensor"):
        save_checkpoint(
            tmp_path / "x.pt", kind="field", config={"t": torch.ones(1)}, tensors={}, meta={}
        )
    with pytest.raises(TypeError, match="not a torch.Tensor"):
        save_checkpoint(tmp_path / "x.pt", kind="field", config={}, tensors={"a": [1.0]}, meta={})
    assert not (tmp_path / "x.pt").exists()


def test_save_replaces_atomically_and_leaves_no_temporary_files(saved, monkeypatch):
    path, _ = saved
    save_checkpoint(path, kind="field", config={}, tensors={"a": torch.zeros(2)}, meta={"step": 2})
    assert load_checkpoint(path).meta == {"step": 2}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, kind="field", config={}, tensors={}, meta={"step": 3})
    assert load_checkpoint(path).meta == {"step": 2}
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_truncated_file_is_a_checkpoint_error(saved):
    path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)


def test_corrupted_file_is_a_checkpoint_error(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[60:400] = bytes(340)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)


def test_pickled_objects_are_refused_and_never_run(tmp_path):
    custom = tmp_path / "custom.pt"
    torch.save(_payload(meta={"obj": _Custom()}), custom)
    with pytest.raises(CheckpointError, match=r"pickled Python objects \(.*_Custom\)"):
        load_checkpoint(custom)

    hostile = tmp_path / "hostile.pt"
    torch.save(_payload(meta={"obj": _RunsCode()}), hostile)
    _MARKER.unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(hostile)
    assert not _MARKER.exists()


def test_newer_format_version_asks_to_upgrade(tmp_path):
    path = tmp_path / "future.pt"
    torch.save(_payload(format_version=FORMAT_VERSION + 1, tensors="a new layout"), path)
    with pytest.raises(CheckpointError, match="written by a newer taichi-pvd.*upgrade"):
        load_checkpoint(path)


def test_missing_keys_are_named(tmp_path):
    path = tmp_path / "partial.pt"
    payload = _payload()
    del payload["meta"], payload["config"]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="not a taichi-pvd checkpoint: missing config, meta"):
        load_checkpoint(path)
    torch.save({"layer.weight": torch.ones(2)}, path)
    all_keys = "missing format_version, kind, config, tensors, meta"
    with pytest.raises(CheckpointError, match=all_keys):
        load_checkpoint(path)


def test_config_that_is_not_json_like_is_refused(tmp_path):
    path = tmp_path / "bad_config.pt"
    torch.save(_payload(config={"lr": torch.tensor(0.01)}), path)
    with pytest.raises(CheckpointError, match=r"config that is not JSON-like: config\['lr'\]"):
        load_checkpoint(path)
    torch.save(_payload(config=[1, 2]), path)
    with pytest.raises(CheckpointError, match="config is a list, not a dict"):
        load_checkpoint(path)


def test_wrong_kind_is_refused(saved):
    path, _ = saved
    with pytest.raises(CheckpointError, match="holds a 'field', but a 'run' checkpoint is needed"):
        load_checkpoint(path, expected_kind="run")
