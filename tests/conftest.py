"""Test session set-up: every test runs the kernels on the CPU, except the CUDA set.

The tests marked ``cuda`` (``tests/cuda/``) run on a GPU, in a process of their own, since
Taichi runs on one backend per process: ``PVD_TEST_ARCH=cuda python -m pytest -m cuda tests/cuda``
(``benchmarks/cuda_tests.py`` runs it and records the outcome). That session starts Taichi on
CUDA and leaves the CPU test modules out; the default session starts it on the CPU, never
touches CUDA, and skips the ``cuda`` tests.
"""

import os

import pytest

CUDA_SESSION = os.environ.get("PVD_TEST_ARCH", "cpu").strip().lower() == "cuda"
os.environ["PVD_ARCH"] = "cuda" if CUDA_SESSION else "cpu"

from taichi_pvd import backend  # noqa: E402

if CUDA_SESSION:
    import torch

    # The CPU test modules start Taichi on the CPU when imported.
    collect_ignore_glob = ["test_*.py"]
    if torch.cuda.is_available():
        backend.init("cuda")
else:
    backend.init("cpu")


def pytest_collection_modifyitems(config, items):
    if CUDA_SESSION:
        reason = None if torch.cuda.is_available() else "no CUDA GPU is visible to torch"
    else:
        reason = ("CUDA tests run in a session of their own: PVD_TEST_ARCH=cuda python -m pytest -m cuda "
                  "tests/cuda (benchmarks/cuda_tests.py)")
    for item in items:
        if item.get_closest_marker("cuda") is None:
            continue
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
