"""The benchmark tooling: the README's results tables are those the results JSON gives, and the
time-to-quality figures read the first time each curve reaches a level."""

import subprocess
import sys
from pathlib import Path

from benchmarks.make_tables import time_to_quality_table
from benchmarks.time_to_quality import first_time_at, level_times

ROOT = Path(__file__).resolve().parent.parent


def test_readme_tables_are_up_to_date_with_the_results():
    result = subprocess.run([sys.executable, "benchmarks/make_tables.py", "--check"], cwd=ROOT)
    assert result.returncode == 0, "README.md is stale: run python benchmarks/make_tables.py"


def test_levels_are_timed_at_the_first_record_reaching_them():
    history = [{"elapsed_s": 1.0, "val_psnr_db": None}, {"elapsed_s": 2.0, "val_psnr_db": 30.5},
               {"elapsed_s": 3.0, "val_psnr_db": 31.2}, {"elapsed_s": 4.0, "val_psnr_db": 30.9}]
    assert first_time_at(history, "val_psnr_db", 31.0) == 3.0
    assert first_time_at(history, "val_psnr_db", 32.0) is None
    scratch = [{"elapsed_s": 10.0 * i, "val_psnr_db": 28.0 + i / 2} for i in range(1, 11)]
    figures = level_times(scratch, history, {"31dB": 31.0, "32dB": 32.0})
    assert figures["31dB"] == {"psnr_db": 31.0, "scratch_seconds": 60.0, "distill_seconds": 3.0, "speedup": 20.0}
    assert figures["32dB"]["distill_seconds"] is None and figures["32dB"]["speedup"] is None


def test_time_to_quality_table_has_a_column_pair_per_distillation():
    levels = {"31dB": {"psnr_db": 31.0, "scratch_seconds": 120.0, "distill_seconds": 20.0, "speedup": 6.0}}
    runs = [{"label": label, "distill_seconds": s, "distilled_test_psnr_db": 32.0, "teacher_test_psnr_db": 34.0,
             "levels": levels} for label, s in (("short", 60.0), (None, 240.0))]
    record = {"scene": "lego", "card": "NVIDIA H100", "commit": "scratch abc1234, distill abc1234", "scratch_test_psnr_db": 32.5, "scratch_train_seconds": 300.0,
              "note": "alone", "distillations": runs}
    lines = time_to_quality_table(record)
    assert "hash -> mlp, short, 60 s (s) | speed-up | hash -> mlp, 240 s run (s) | speed-up" in lines[2]
    assert "short, 60 s: 32.00 dB (teacher 34.00 dB); 240 s run: 32.00 dB (teacher 34.00 dB)" in lines[-1]
    assert lines[4] == "| 31.00 dB (31dB) | 120 | 20 | 6.00 | 20 | 6.00 |"
