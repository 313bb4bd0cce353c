"""benchmarks/cuda_tests.py runs the CUDA test set in a session of its own and records it; where
no GPU is visible, that session collects every CUDA test and skips it."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cuda_test_set_is_collected_skipped_and_recorded_without_a_gpu(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cuda_tests.py"), "--out-dir", str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    (path,) = tmp_path.glob("cuda-tests-*.json")
    record = json.loads(path.read_text())
    assert record["tests"] >= 20 and record["skipped"] == record["tests"]
    assert record["failed"] == record["errors"] == 0
    assert record["skip_reasons"] == ["no CUDA GPU is visible to torch"]
    assert record["pytest_command"].startswith("PVD_TEST_ARCH=cuda python -m pytest -m cuda tests/cuda")
    assert {"card", "commit", "command", "date", "duration_s"} <= record.keys()
