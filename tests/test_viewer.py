"""The web viewer: camera conversion, compositing, adaptive resolution and the live budget as
units; then ``pvd-ti view`` (one run, and two compared) driven through its page in headless
chromium: a rendered frame arrives, a mouse drag on the canvas moves the camera, and the page
shows what rendering the saved camera with the library's renderer (``pvd-ti render``'s
:func:`render_views`) gives."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from taichi_pvd.data import generate_rays
from taichi_pvd.data.demo import write_demo_scene
from taichi_pvd.io.runs import load_run
from taichi_pvd.rendering.inference import Frame
from taichi_pvd.training.api import train
from taichi_pvd.viewer.cameras import ViewCamera, matrix_from_wxyz, wxyz_from_matrix
from taichi_pvd.viewer.compositing import compose, panel_images, split_columns, upscale
from taichi_pvd.viewer.resolution import START_LONG_SIDE, AdaptiveResolution, fit_size, start_resolution
from taichi_pvd.viewer.sources import render_frame, run_source
from taichi_pvd_cli.main import main

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
COMMON = {"steps": 40, "batch_rays": 256, "val_every": 0, "checkpoint_every": 0, "grid_resolution": 32,
          "marching": {"steps_across_box": 128}}


@pytest.fixture(autouse=True)
def _keep_cpu(monkeypatch):
    monkeypatch.setenv("PVD_ARCH", "cpu")


# -- units ----------------------------------------------------------------------------------------


def test_viser_pose_round_trips_through_the_renderers_camera():
    rotation = matrix_from_wxyz([0.9, 0.1, -0.3, 0.2])
    assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.allclose(matrix_from_wxyz(wxyz_from_matrix(rotation)), rotation, atol=1e-12)
    camera = ViewCamera.from_viser([0.9, 0.1, -0.3, 0.2], [1.0, 2.0, 3.0], 0.8)
    wxyz, position = camera.viser_pose()
    assert np.allclose(np.asarray(ViewCamera.from_viser(wxyz, position, 0.8).c2w), np.asarray(camera.c2w))


def test_the_centre_ray_looks_along_visers_plus_z_and_the_top_row_along_minus_y():
    """viser's cameras use OpenCV axes: +Z forward, +Y down in the image."""
    wxyz = wxyz_from_matrix(np.eye(3))
    camera = ViewCamera.from_viser(wxyz, [0.0, 0.0, 0.0], math.radians(60))
    views = camera.view_set(5, 5, 0.1, 10.0, (1.0, 1.0, 1.0))
    _, directions = generate_rays(views.c2w, views.intrinsics, 5, 5)
    assert torch.allclose(directions[0, 2, 2], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
    top = directions[0, 0, 2]
    # The top row's centre is 2 of the 2.5 half-heights above the middle.
    assert top[1] < 0 and math.atan2(-top[1], top[2]) == pytest.approx(math.atan(0.8 * math.tan(math.radians(30))))


def test_camera_json_round_trips():
    camera = ViewCamera.from_viser([1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 2.0], 0.5)
    data = json.loads(json.dumps(camera.to_dict(40, 30)))
    assert ViewCamera.from_dict(data) == camera
    assert data["intrinsics"][2:] == [20.0, 15.0]


def test_split_shows_the_first_run_left_of_the_split_and_the_second_right():
    a, b = np.zeros((60, 100, 3)), np.ones((60, 100, 3))
    image = compose([a, b], ["a", "b"], "split", 0.3)
    assert image.shape == (60, 100, 3) and split_columns(100, 0.3) == 30
    assert (image[-1, :30] == 0).all() and (image[-1, 30:] == 255).all()
    assert compose([a, b], ["a", "b"], "split", 0.0)[-1].min() == 255


def test_captions_stand_clear_of_the_top_edge_and_of_the_split():
    grey = np.full((400, 600, 3), 0.5)
    image = compose([grey, grey], ["hash 28.05 dB test", "grid 26.99 dB test"], "split", 0.5)
    dark = image[..., 0] < 10
    assert (image[:8] == 128).all() and (image[:, 300:308] == 128).all()
    for part in (dark[:, :300], dark[:, 300:]):
        rows, columns = part.nonzero()
        assert rows.min() >= 8 and columns.min() >= 8 and rows.max() < 60
    letters = image[..., 0] > 200
    assert letters[:, :300].sum() > 100 and letters[:, 300:].sum() > 100 and not letters[60:].any()


def test_side_by_side_puts_the_runs_next_to_each_other():
    image = compose([np.zeros((60, 8, 3)), np.ones((60, 8, 3))], ["a", "b"], "side by side")
    assert image.shape == (60, 16, 3) and (image[-1, 8:] == 255).all() and (image[-1, :8] == 0).all()


def test_difference_mode_is_one_heat_map_black_where_the_runs_agree():
    frame = Frame(np.full((4, 4, 3), 0.5, np.float32), np.ones((4, 4), np.float32), np.ones((4, 4), np.float32))
    other = Frame(frame.rgb.copy(), frame.depth, frame.opacity)
    other.rgb[0, 0] = 1.0
    (diff,) = panel_images([frame, other], "|difference|", 0.5, 2.0)
    assert diff[1:, 1:].max() == 0.0 and diff[0, 0].max() > 0.9


def test_moving_frames_shrink_to_keep_fifteen_frames_a_second():
    adaptive = AdaptiveResolution(target_fps=15.0, smoothing=1.0)
    adaptive.record(100 * 100, 0.4)  # 4e-5 s a pixel: 1/15 s buys about 1667 pixels
    width, height = adaptive.moving_size(400, 300)
    assert width / height == pytest.approx(4 / 3, rel=0.05)
    assert width * height * 4e-5 <= 1 / 15 * 1.05
    assert adaptive.moving_size(400, 300, panels=2)[0] < width
    adaptive.record(100, 1e-7)
    assert adaptive.moving_size(400, 300) == (400, 300)
    assert fit_size(1000, 500, 64) == (64, 32)


def test_still_frames_start_at_least_at_the_start_size_or_the_training_images():
    assert start_resolution(128, 96) == START_LONG_SIDE == 512
    assert start_resolution(1008, 756) == 1008


def test_live_viewer_renders_only_within_its_share_of_the_wall_time(monkeypatch):
    from taichi_pvd.viewer import session as session_module

    clock = {"t": 0.0}
    monkeypatch.setattr(session_module.time, "perf_counter", lambda: clock["t"])
    fake = session_module.ViewerSession.__new__(session_module.ViewerSession)
    fake.started, fake.render_seconds, fake._field_version = 0.0, 0.0, 0
    renders = []

    def render_pending():
        renders.append(clock["t"])
        fake.render_seconds += 1.0  # each frame costs a second
        return True

    fake.render_pending = render_pending
    for step in range(1000):  # 1000 steps of 0.1 s
        clock["t"] = step * 0.1
        fake.between_steps()
    assert fake._field_version == 1000
    assert fake.render_seconds <= session_module.LIVE_RENDER_SHARE * clock["t"] + 1.0
    assert len(renders) >= 4


def test_view_without_viser_says_how_to_install_it(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_viser(name, *args, **kwargs):
        if name == "viser" or name.startswith("viser."):
            raise ImportError("no viser")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_viser)
    result = CliRunner().invoke(main, ["view", str(tmp_path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and 'pip install -e ".[viewer]"' in lines[0]


# -- the page in a browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """A hash and a grid run trained 40 steps on a 32x32 demo scene."""
    root = tmp_path_factory.mktemp("viewer")
    scene = write_demo_scene(root / "scene", size=32, n_train=8, n_val=2, n_test=2)
    train(data=scene, model="hash", out=root / "hash", train_overrides=COMMON,
          field_overrides={"log2_table_size": 12, "n_levels": 4, "finest_resolution": 64})
    train(data=scene, model="grid", out=root / "grid", train_overrides=COMMON, field_overrides={"resolution": 32})
    return root / "hash", root / "grid"


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("viser")
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("chromium and chromedriver are not installed")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,800"):
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="pvd-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve():
    """Starts ``pvd-ti view ARGS`` and returns its URL; stops it afterwards."""
    started = []

    def start(*args) -> str:
        port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO), "PVD_ARCH": "cpu"}
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen([sys.executable, "-m", "taichi_pvd_cli", "view", *map(str, args), "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append(proc)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return f"http://127.0.0.1:{port}"
            except OSError:
                assert proc.poll() is None, "pvd-ti view exited"
                time.sleep(0.5)
        raise AssertionError("pvd-ti view did not start serving")

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=30)


def _wait(predicate, timeout=90.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _status(driver) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(e.text for e in driver.find_elements(By.XPATH, "//*[contains(text(), ' a frame') or contains(text(), 'saved to')]"))


def _wait_for_still_frame(driver, what: str) -> None:
    """Wait until the status line reports a full frame and then stays the same for twice the
    time that frame took (a later one, of a camera that moved meanwhile, would have changed it)."""
    last, since = None, time.time()

    def settled():
        nonlocal last, since
        status = _status(driver)
        if status != last:
            last, since = status, time.time()
            return False
        match = re.search(r"(\d+) ms a frame", status)
        return match is not None and time.time() - since > max(1.0, 2e-3 * int(match.group(1)))

    _wait(settled, timeout=180.0, what=what)


def _set_resolution(driver, pixels: int) -> None:
    """Type ``pixels`` into the number box of the resolution slider."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    path = "//*[text()='resolution (px)']/following::input[@type='text' or not(@type)][1]"
    box = _wait(lambda: driver.find_elements(By.XPATH, path), what="the resolution box")[0]
    box.send_keys(Keys.END, Keys.BACKSPACE * 5, str(pixels), Keys.ENTER)


def _canvas_picture(driver) -> np.ndarray:
    """The page's 3D canvas as float [H, W, 3] in [0, 1]."""
    import io

    from selenium.webdriver.common.by import By

    canvas = driver.find_elements(By.TAG_NAME, "canvas")[0]
    return np.asarray(Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB"), np.float32) / 255.0


def _save_view(driver, run_dir: Path, count: int) -> dict:
    """Press "save PNG" and return the camera JSON written beside the ``count``-th saved view."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, "//button[contains(., 'save PNG')]").click()
    path = run_dir / f"view-{count:03d}.json"
    _wait(lambda: path.exists() and path.stat().st_size > 0, what=f"{path.name}")
    time.sleep(0.3)
    return json.loads(path.read_text())


def _region(image: np.ndarray) -> np.ndarray:
    """The middle of the canvas, clear of the GUI panel (right) and notifications (top left)."""
    h, w = image.shape[:2]
    return image[int(0.3 * h): int(0.9 * h), int(0.3 * w): int(0.65 * w)]


def _reference(runs, saved: dict, canvas_shape) -> np.ndarray:
    """What the page should show for the saved camera: each run rendered by the library's
    renderer, composed as the viewer composes, scaled to the canvas."""
    camera = ViewCamera.from_dict(saved["camera"])
    width, height = saved["camera"]["width"], saved["camera"]["height"]
    sources = [run_source(load_run(r)) for r in runs]
    frames = [render_frame(s, camera, width, height) for s in sources]
    canvas_width, canvas_height = saved["canvas"]
    picture = compose([upscale(f.rgb, canvas_width, canvas_height) for f in frames], [s.caption() for s in sources],
                      "split", 0.5)
    scaled = Image.fromarray(picture).resize((canvas_shape[1], canvas_shape[0]), Image.BILINEAR)
    return np.asarray(scaled, np.float32) / 255.0


def _drag_and_check(browser, url, runs):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(url)
    _set_resolution(browser, 64)  # small stills keep the test fast
    _wait_for_still_frame(browser, "a rendered frame")
    before = _canvas_picture(browser)
    first = _save_view(browser, runs[0], 0)
    assert max(first["camera"]["width"], first["camera"]["height"]) == 64  # the resolution typed
    assert np.abs(_region(before) - _region(_reference(runs, first, before.shape))).mean() < 0.04

    canvas = browser.find_elements(By.TAG_NAME, "canvas")[0]
    chain = ActionChains(browser).move_to_element_with_offset(canvas, -150, 80).click_and_hold()
    for _ in range(6):
        chain = chain.move_by_offset(40, 5).pause(0.05)
    chain.release().perform()
    _wait_for_still_frame(browser, "a still frame of the moved camera")
    after = _canvas_picture(browser)
    second = _save_view(browser, runs[0], 1)
    assert second["camera"]["c2w"] != first["camera"]["c2w"]
    reference = _reference(runs, second, after.shape)
    changed = np.abs(_region(after) - _region(before)).mean()
    error = np.abs(_region(after) - _region(reference)).mean()
    assert changed > 0.01, "dragging on the canvas did not change the picture"
    assert error < 0.04 and error < 0.5 * changed, (error, changed)


def test_view_page_follows_the_mouse_and_matches_the_renderer(browser, serve, tiny_runs):
    hash_run, _ = tiny_runs
    _drag_and_check(browser, serve(hash_run), [hash_run])


def test_compare_page_splits_two_runs_from_the_same_camera(browser, serve, tiny_runs):
    hash_run, grid_run = tiny_runs
    for old in hash_run.glob("view-*"):
        old.unlink()
    _drag_and_check(browser, serve(hash_run, "--compare", grid_run), [hash_run, grid_run])
