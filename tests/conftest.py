"""Test session set-up: every test runs the kernels on the CPU."""

import os

os.environ["PVD_ARCH"] = "cpu"

from taichi_pvd import backend  # noqa: E402

backend.init("cpu")
