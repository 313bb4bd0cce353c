"""Property tests of the scene loader on mangled ``transforms.json`` files: whatever the file
holds, :func:`load_scene` returns a usable scene or raises SceneError/ConfigError (which the CLI
prints as one line), never another exception."""

import copy
import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taichi_pvd.data.demo import write_demo_scene
from taichi_pvd.data import load_scene
from taichi_pvd.errors import ConfigError, SceneError

#: Instant-NGP style keys added to the second base file: explicit intrinsics, box and range.
NGP_KEYS = {"fl_x": 22.0, "fl_y": 22.0, "cx": 8.0, "cy": 8.0, "w": 16, "h": 16,
            "aabb": [[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]], "near": 2.0, "far": 6.5}
#: Keys the loader reads, so replacements hit them often and not only by chance.
KNOWN_KEYS = ("frames", "file_path", "transform_matrix", "camera_angle_x", "camera_angle_y",
              "aabb_scale", "k1", "p1", *NGP_KEYS)
FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

numbers = (st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.sampled_from([0, -1, 1e-30, 1e30, 10**400, math.pi, -math.pi]))
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=24,
)
matrices = st.lists(st.lists(numbers, min_size=0, max_size=5), min_size=0, max_size=5)
file_paths = st.text(max_size=20) | st.sampled_from(
    ["", ".", "..", "/", "/etc/passwd", "./train", "./train/", "./train/r_0.png.png", "./val/r_0",
     "a\x00b", "x" * 300, "./train/r_0/../r_1"])


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return write_demo_scene(tmp_path_factory.mktemp("fuzz") / "scene", size=16, n_train=2, n_val=1, n_test=1)


@pytest.fixture(scope="module")
def bases(scene_dir):
    """The demo's NeRF-Synthetic style file and an Instant-NGP style variant of it."""
    blender = json.loads((scene_dir / "transforms_train.json").read_text())
    ngp = {**{k: v for k, v in blender.items() if k != "camera_angle_x"}, **NGP_KEYS}
    return [blender, ngp]


def _containers(meta):
    """(container, key) pairs of every value in the tree, grouped by depth: top-level keys,
    frames, frame keys, matrix rows, matrix entries."""
    groups = [[(meta, k) for k in meta]]
    frames = meta.get("frames")
    if isinstance(frames, list):
        groups.append([(frames, i) for i in range(len(frames))])
        frame_keys, rows, entries = [], [], []
        for frame in frames:
            if not isinstance(frame, dict):
                continue
            frame_keys += [(frame, k) for k in frame]
            matrix = frame.get("transform_matrix")
            if isinstance(matrix, list):
                rows += [(matrix, i) for i in range(len(matrix))]
                entries += [(row, j) for row in matrix if isinstance(row, list) for j in range(len(row))]
        groups += [frame_keys, rows, entries]
    return [g for g in groups if g]


def _mutate(data, meta) -> None:
    """One random edit of ``meta`` in place."""
    action = data.draw(st.sampled_from(["delete", "replace", "non-finite", "number", "matrix", "file_path",
                                        "known key"]))
    if action == "matrix" or action == "file_path":
        frames = meta.get("frames")
        if isinstance(frames, list) and frames and isinstance(frames[0], dict):
            frame = frames[data.draw(st.integers(0, len(frames) - 1))]
            if isinstance(frame, dict):
                if action == "matrix":
                    frame["transform_matrix"] = data.draw(matrices)
                else:
                    frame["file_path"] = data.draw(file_paths)
        return
    if action == "known key":
        target = meta
        frames = meta.get("frames")
        if data.draw(st.booleans()) and isinstance(frames, list) and frames and isinstance(frames[0], dict):
            target = frames[0]
        target[data.draw(st.sampled_from(KNOWN_KEYS))] = data.draw(numbers | json_values)
        return
    group = data.draw(st.sampled_from(_containers(meta)))
    container, key = data.draw(st.sampled_from(group))
    if action == "delete":
        del container[key]
    elif action == "replace":
        container[key] = data.draw(json_values)
    elif action == "number":
        container[key] = data.draw(numbers)
    else:
        container[key] = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))


def _assert_usable_or_user_error(folder) -> None:
    """The scene in ``folder`` either loads and is usable (:func:`_assert_usable`) or is refused
    with a user error that has a message."""
    try:
        scene = load_scene(folder, "train")
    except (SceneError, ConfigError) as err:
        assert str(err).strip(), "a user error needs a message"
        return
    _assert_usable(scene)


def _assert_usable(scene) -> None:
    """What training relies on: finite poses and intrinsics, positive focal lengths, a proper
    box and a proper near/far range, images in [0, 1]."""
    n = len(scene)
    assert n >= 1 and scene.height >= 1 and scene.width >= 1
    assert scene.images.shape == (n, scene.height, scene.width, 3)
    assert 0.0 <= float(scene.images.min()) and float(scene.images.max()) <= 1.0
    assert scene.c2w.shape == (n, 3, 4) and bool(torch.isfinite(scene.c2w).all())
    assert scene.intrinsics.shape == (n, 4) and bool(torch.isfinite(scene.intrinsics).all())
    assert bool((scene.intrinsics[:, :2] > 0).all())
    assert bool(torch.isfinite(scene.aabb).all()) and bool((scene.aabb[1] > scene.aabb[0]).all())
    assert math.isfinite(scene.near) and math.isfinite(scene.far) and 0.0 <= scene.near < scene.far
    assert math.isfinite(scene.camera_radius)


@FUZZ
@given(data=st.data())
def test_mangled_transforms_load_or_raise_a_user_error(data, scene_dir, bases):
    meta = copy.deepcopy(data.draw(st.sampled_from(bases)))
    for _ in range(data.draw(st.integers(1, 4))):
        if not meta:
            break
        _mutate(data, meta)
    (scene_dir / "transforms_train.json").write_text(json.dumps(meta))
    _assert_usable_or_user_error(scene_dir)


@FUZZ
@given(data=st.data())
def test_edited_numbers_load_or_raise_a_user_error(data, scene_dir, bases):
    """Numbers only (intrinsics, box, range, pose translations): most such files still load, so
    this checks the scenes that are accepted."""
    meta = copy.deepcopy(data.draw(st.sampled_from(bases)))
    for _ in range(data.draw(st.integers(1, 3))):
        frame = meta["frames"][data.draw(st.integers(0, len(meta["frames"]) - 1))]
        where = data.draw(st.sampled_from(["top", "frame", "translation"]))
        if where == "translation":
            frame["transform_matrix"][data.draw(st.integers(0, 2))][3] = data.draw(numbers)
        else:
            key = data.draw(st.sampled_from(["camera_angle_x", "camera_angle_y", "aabb_scale", *NGP_KEYS]))
            (meta if where == "top" else frame)[key] = data.draw(numbers)
    (scene_dir / "transforms_train.json").write_text(json.dumps(meta))
    _assert_usable_or_user_error(scene_dir)


@FUZZ
@given(data=st.data())
def test_damaged_json_bytes_load_or_raise_a_user_error(data, scene_dir, bases):
    text = json.dumps(data.draw(st.sampled_from(bases))).encode()
    kind = data.draw(st.sampled_from(["truncated", "random bytes", "spliced bytes", "deep nesting"]))
    if kind == "truncated":
        raw = text[: data.draw(st.integers(0, len(text)))]
    elif kind == "random bytes":
        raw = data.draw(st.binary(max_size=200))
    elif kind == "spliced bytes":
        at = data.draw(st.integers(0, len(text)))
        raw = text[:at] + data.draw(st.binary(min_size=1, max_size=8)) + text[at:]
    else:
        depth = data.draw(st.integers(1, 100_000))
        raw = b"[" * depth + b"]" * depth
    (scene_dir / "transforms_train.json").write_bytes(raw)
    _assert_usable_or_user_error(scene_dir)


def _set_top(key, value):
    return lambda meta: meta.__setitem__(key, value)


def _set_frame(key, value):
    return lambda meta: meta["frames"][0].__setitem__(key, value)


def _set_translation(value):
    return lambda meta: meta["frames"][0]["transform_matrix"][0].__setitem__(3, value)


@pytest.mark.parametrize("edit", [
    _set_top("camera_angle_x", 0),
    _set_top("camera_angle_x", 4.0),
    _set_top("aabb_scale", 10**400),
    _set_top("aabb_scale", 1e300),
    _set_top("aabb_scale", 1e-45),
    _set_top("near", 10**400),
    _set_top("far", math.inf),
    _set_top("fl_x", 1e-300),
    _set_top("fl_x", 10**400),
    _set_top("aabb", [[0, 0, 0], [10**400, 1, 1]]),
    _set_frame("file_path", "/"),
    _set_frame("file_path", "x" * 300),
    _set_translation(10**400),
    _set_translation(1e300),
], ids=["zero field of view", "field of view over pi", "huge integer aabb_scale", "aabb_scale beyond float32",
        "aabb_scale below float32",
        "huge integer near", "infinite far", "focal length below float32", "huge integer focal length",
        "huge integer in aabb", "file_path /", "file_path too long", "huge integer in a pose",
        "pose beyond float32"])
def test_cases_found_by_fuzzing_are_user_errors(scene_dir, bases, edit):
    meta = copy.deepcopy(bases[0])
    edit(meta)
    (scene_dir / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(SceneError):
        load_scene(scene_dir, "train")


def test_deeply_nested_json_is_a_user_error(scene_dir):
    (scene_dir / "transforms_train.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SceneError, match="too deeply"):
        load_scene(scene_dir, "train")


def test_unreadable_scene_folder_is_a_user_error(tmp_path, monkeypatch):
    """What a folder without read/search permission does to a non-root user (simulated: root
    ignores permissions): probing its files raises PermissionError."""
    folder = tmp_path / "locked"
    folder.mkdir()
    stat = type(folder).stat

    def locked_stat(self, *args, **kwargs):
        if self.parent == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return stat(self, *args, **kwargs)

    monkeypatch.setattr(type(folder), "stat", locked_stat)
    with pytest.raises(SceneError, match="cannot read scene folder .*permissions"):
        load_scene(folder, "train")


@pytest.mark.parametrize("key", ["camera_angle_x", "camera_angle_y"])
def test_a_field_of_view_too_small_for_a_focal_length_is_refused(scene_dir, bases, key):
    """An angle within (0, pi) so small that its focal length overflows (or, for the smallest
    subnormals, divides by a tangent of zero) is refused with the focal length's message."""
    meta = copy.deepcopy(bases[0])
    meta[key] = 1e-300
    (scene_dir / "transforms_train.json").write_text(json.dumps(meta))
    with pytest.raises(SceneError, match="focal length"):
        load_scene(scene_dir, "train")
