"""The README's viewer screenshot: ``pvd-ti view RUN --compare RUN2`` served, opened in headless
chromium, the camera turned by a mouse drag, and the page saved once the full-size frame arrived.

Usage (runs of ``pvd-ti demo --out /tmp/demo-runs``, about 4 minutes on a CPU)::

    python benchmarks/viewer_screenshot.py /tmp/demo-runs/hash /tmp/demo-runs/hash-to-grid \\
        --resolution 1200 [--out assets/media/viewer-hash-vs-grid.png] [--size 1200x700] [--drag 240,60]

Takes about 30 s. Needs viser, selenium, chromium and chromedriver. The notice of software WebGL
(chromium without a GPU) is hidden; the PNG is reduced to 256 colours to stay small.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
HIDE_NOTICES = "var s = document.createElement('style'); s.textContent = " \
               "'.mantine-Notifications-root { display: none !important; }'; document.head.appendChild(s);"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(runs: list[Path], port: int) -> subprocess.Popen:
    compare = ["--compare", str(runs[1])] if len(runs) == 2 else []
    command = [sys.executable, "-m", "taichi_pvd_cli", "view", str(runs[0]), *compare, "--port", str(port)]
    proc = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("pvd-ti view exited")
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("pvd-ti view did not start serving")


def _browser(width: int, height: int, profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    for flag in (*FLAGS, f"--window-size={width},{height}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    # The page exactly width x height at one device pixel a CSS pixel (the window's own viewport
    # is smaller than the window by an amount that varies).
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    return driver


def _status(driver) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(e.text for e in driver.find_elements(By.XPATH, "//*[contains(text(), ' a frame')]"))


def _wait_for_still_frame(driver, previous: str, timeout: float = 300.0, settle: float = 4.0) -> str:
    """Wait until the status line reports a full frame other than ``previous`` and stays so for
    ``settle`` seconds; returns it."""
    deadline = time.time() + timeout
    last, since = None, time.time()
    while time.time() < deadline:
        status = _status(driver)
        if status != last:
            last, since = status, time.time()
        elif status and status != previous and time.time() - since >= settle:
            return status
        time.sleep(0.3)
    raise SystemExit(f"no full frame within {timeout:.0f} s (status: {last!r})")


def _set_slider(driver, label: str, value: float) -> None:
    """Type ``value`` into the number box beside the slider labelled ``label``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.XPATH, f"//*[text()='{label}']/following::input[@type='text' or not(@type)][1]")
    box.send_keys(Keys.END, Keys.BACKSPACE * 8, str(value), Keys.ENTER)


def take(runs: list[Path], out: Path, width: int, height: int, drag: tuple[int, int], resolution: int | None) -> Path:
    """Serve ``runs`` in a ``width`` x ``height`` page, set the resolution slider (when given),
    turn the camera by a mouse ``drag`` (pixels) and save the page as ``out`` (PNG)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    port = _free_port()
    server = _serve(runs, port)
    profile = tempfile.mkdtemp(prefix="pvd-chromium-")
    driver = _browser(width, height, profile)
    try:
        driver.get(f"http://127.0.0.1:{port}")
        status = _wait_for_still_frame(driver, "")
        driver.execute_script(HIDE_NOTICES)
        canvas = driver.find_elements(By.TAG_NAME, "canvas")[0]
        steps = 8
        chain = ActionChains(driver).move_to_element(canvas).click_and_hold()
        for _ in range(steps):
            chain = chain.move_by_offset(drag[0] // steps, drag[1] // steps).pause(0.05)
        chain.release().perform()
        if resolution:
            _set_slider(driver, "resolution (px)", resolution)
        _wait_for_still_frame(driver, status)
        page = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        server.terminate()
        server.wait(timeout=30)
    out.parent.mkdir(parents=True, exist_ok=True)
    page.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("compare", type=Path, nargs="?", help="a second run, shown split with the first")
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "media" / "viewer-hash-vs-grid.png")
    parser.add_argument("--size", default="1200x700", help="browser window, WIDTHxHEIGHT pixels")
    parser.add_argument("--drag", default="240,60", help="mouse drag on the canvas that turns the camera, DX,DY px")
    parser.add_argument("--resolution", type=int, default=None, help="resolution slider (px); default: its start")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    dx, dy = (int(v) for v in args.drag.split(","))
    runs = [args.run] + ([args.compare] if args.compare else [])
    out = take(runs, args.out, width, height, (dx, dy), args.resolution)
    print(f"{out} ({out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
