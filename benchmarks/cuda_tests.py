"""Run the CUDA test set (``pytest -m cuda``) in a session of its own and record its outcome.

Usage: ``python benchmarks/cuda_tests.py [--out-dir DIR] [PYTEST_ARGS...]``, from anywhere.
Runs ``PVD_TEST_ARCH=cuda python -m pytest -m cuda tests/cuda`` (Taichi starts on CUDA in that
session; see ``tests/conftest.py``), prints pytest's report, and writes
``cuda-tests-<card>.json`` (DESIGN.md's results convention): the counts of passed, failed,
erroneous and skipped tests, the failing tests' names, the skip reasons, the pytest command and
its duration. Exits with pytest's status. Without a GPU every test is skipped.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_result  # noqa: E402

#: Characters of pytest's output kept in the record.
OUTPUT_TAIL_CHARS = 4000


def outcome(junit_xml: Path) -> dict:
    """Counts and names from pytest's JUnit XML report."""
    suite = ElementTree.parse(junit_xml).getroot()
    if suite.tag == "testsuites":
        suite = suite.find("testsuite")
    failed, errors, skip_reasons = [], [], set()
    for case in suite.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None:
            failed.append(name)
        if case.find("error") is not None:
            errors.append(name)
        skipped = case.find("skipped")
        if skipped is not None:
            skip_reasons.add(skipped.get("message", ""))
    tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
    return {
        "tests": tests,
        "passed": tests - len(failed) - len(errors) - skipped,
        "failed": len(failed),
        "errors": len(errors),
        "skipped": skipped,
        "failed_tests": failed,
        "error_tests": errors,
        "skip_reasons": sorted(skip_reasons),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=None)
    args, pytest_args = parser.parse_known_args()
    env = {**os.environ, "PVD_TEST_ARCH": "cuda",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/cuda", "-q", "-rfEs",
                   f"--junitxml={report}", *pytest_args]
        start = time.perf_counter()
        run = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        duration = time.perf_counter() - start
        print(run.stdout, end="")
        figures = outcome(report) if report.exists() else {"tests": 0, "passed": 0, "failed": 0, "errors": 1}
    shown = ["PVD_TEST_ARCH=cuda", "python", *command[1:]]
    shown[shown.index(f"--junitxml={report}")] = "--junitxml=REPORT.xml"
    figures.update({
        "pytest_command": " ".join(shown),
        "pytest_exit_code": run.returncode,
        "duration_s": duration,
        "output_tail": run.stdout[-OUTPUT_TAIL_CHARS:],
    })
    path = write_result("cuda", "tests", figures, args.out_dir)
    print(f"{figures['passed']} passed, {figures['failed']} failed, {figures['errors']} errors, "
          f"{figures.get('skipped', 0)} skipped in {duration:.0f} s; wrote {path}")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
