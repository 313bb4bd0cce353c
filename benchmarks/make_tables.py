"""Build the README's results tables from ``benchmarks/results/*.json`` (never typed by hand).

Usage: ``python benchmarks/make_tables.py [--check]``: rewrites the part of README.md between
``<!-- results:begin -->`` and ``<!-- results:end -->``; ``--check`` exits 1 if it is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _f(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _short(card: str) -> str:
    return card.replace("NVIDIA ", "")


def _note(run: dict) -> str:
    """The last column: whether the run shared its GPU, or that its JSON entry has a note."""
    note = run.get("note", "")
    if not note:
        return ""
    return "shared GPU" if ("shared" in note or "side by side" in note) else "see note in the JSON"


def _commit(run: dict, record: dict) -> str:
    """The run's commit (merged files keep one per run), else the file's."""
    return str(run.get("commit", record["commit"]))[:7]


def _offsets(run: dict) -> str:
    """Test PSNR with each ray's samples averaged over several shifts, and how many, or '-'."""
    shifted = run.get("sample_offsets")
    return "-" if shifted is None else f"{shifted['test_psnr_db']:.2f} ({shifted['renders_per_ray']} offsets)"


def train_table(record: dict) -> list[str]:
    lines = [f"**Training from scratch** ({record['scene']}, {_short(record['card'])}, test PSNR over "
             f"{record['runs'][0].get('test_views', '?')} test views; `benchmarks/train.py`)", "",
             "| model | steps | rays/step | train time (s) | test PSNR (dB) | SSIM | PSNR, 2x2 rays a pixel (dB) | "
             "PSNR, sample offsets averaged (dB) | parameters | commit | |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    order = {"hash": 0, "vm": 1, "mlp": 2, "grid": 3}
    for r in sorted(record["runs"], key=lambda r: (order.get(r["model"], 9), r.get("label", ""))):
        rays = r["batch_rays"] if r["batch_rays"] != "default" else 8192
        name = f"{r['model']} ({r['label']})" if r.get("label") else r["model"]
        if r.get("test_views") != record["runs"][0].get("test_views"):
            name += f", {r.get('test_views', '?')} test views"
        lines.append(f"| {name} | {r['steps']} | {rays} | {_f(r['train_seconds'], '.1f')} | "
                     f"{_f(r['test_psnr_db'])} | {_f(r['test_ssim'], '.4f')} | "
                     f"{_f(r.get('supersampled', {}).get('test_psnr_db'))} | {_offsets(r)} | {r['num_parameters']:,} | "
                     f"`{_commit(r, record)}` | {_note(r)} |")
        for snap in r.get("snapshots", []):
            lines.append(f"| {name}, kept at {snap['snapshot_s']:g} s | {snap['steps']} | {rays} | "
                         f"{_f(snap['train_seconds'], '.1f')} | {_f(snap['test_psnr_db'])} | "
                         f"{_f(snap['test_ssim'], '.4f')} | - | - | {r['num_parameters']:,} | `{_commit(r, record)}` | "
                         f"{_note(r)} |")
    return lines


def distill_table(record: dict) -> list[str]:
    lines = [f"**Distillation** ({record['scene']}, {_short(record['card'])}, no training image read; "
             "`benchmarks/distill.py`)", "",
             "| teacher -> student | variant | steps | distill time (s) | test views | teacher PSNR (dB) | "
             "student PSNR (dB) | student vs teacher (dB) | commit | |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in record["runs"]:
        variant = f"{r['variant']} ({r['label']})" if r.get("label") else r["variant"]
        lines.append(f"| {r['teacher']} -> {r['student']} | {variant} | {r['steps']} | "
                     f"{_f(r['distill_seconds'], '.1f')} | {r.get('test_views', '?')} | {_f(r['teacher_test_psnr_db'])} | "
                     f"{_f(r['student_test_psnr_db'])} | {_f(r['student_vs_teacher_psnr_db'])} | "
                     f"`{_commit(r, record)}` | {_note(r)} |")
    return lines


def render_table(record: dict) -> list[str]:
    lines = [f"**Rendering speed** ({record['scene']}, {_short(record['card'])}, `benchmarks/render_fps.py`)", "",
             "| model | frame | fps | fps (live-ray path) | |", "| --- | --- | --- | --- | --- |"]
    for r in record["runs"]:
        lines.append(f"| {r['model']} | {r['width']}x{r['height']} | {_f(r['fps'], '.1f')} | "
                     f"{_f(r['fps_live_rays'], '.1f')} | {_note(record)} |")
    return lines


def kernels_table(record: dict) -> list[str]:
    r = record
    bw = r["copy_bandwidth_gb_per_second"]
    return [
        f"**Kernels** ({_short(r['card'])}, `benchmarks/kernels.py`, commit `{r['commit'][:7]}`; measured copy "
        f"bandwidth {bw:,.0f} GB/s)", "",
        "| kernel | size | time (ms) | throughput | bandwidth it implies |",
        "| --- | --- | --- | --- | --- |",
        f"| hash encoding forward | {r['hash_points']:,} points x {r['hash_levels']} levels | "
        f"{_f(r['hash_forward_ms'])} | {r['hash_forward_point_levels_per_second'] / 1e9:.2f} G point-levels/s | "
        f"{r['hash_forward_min_bytes_gb_per_second']:,.0f} GB/s of compulsory traffic |",
        f"| hash encoding forward+backward | same | {_f(r['hash_forward_backward_ms'])} | "
        f"{r['hash_forward_backward_point_levels_per_second'] / 1e9:.2f} G point-levels/s | |",
        f"| grid trilinear forward ({r['grid_resolution']}^3 x {r['grid_channels']}) | {r['grid_points']:,} points | "
        f"{_f(r['grid_forward_ms'])} | {r['grid_forward_points_per_second'] / 1e9:.2f} G points/s | "
        f"{r['grid_forward_gather_gb_per_second']:,.0f} GB/s of corner gathers ({r['grid_forward_gather_gb_per_second'] / bw:.0%} of copy) |",
        f"| grid trilinear forward+backward | same | {_f(r['grid_forward_backward_ms'])} | | |",
        f"| march + composite fwd/bwd | {r['march_rays']:,} rays, {r['march_samples_per_ray']:.0f} samples/ray | "
        f"{_f(r['march_ms'] + r['composite_forward_backward_ms'])} | "
        f"{r['march_composite_rays_per_second'] / 1e6:.1f} M rays/s | |",
    ]


def newcomer_table(record: dict) -> list[str]:
    keys = [k for k in record if k.endswith(("_db", "_seconds", "_s"))]
    lines = [f"**`pvd-ti demo` end to end** ({_short(record['card'])}, `benchmarks/newcomer.py`, commit "
             f"`{record['commit'][:7]}`)", "", "| figure | value |", "| --- | --- |"]
    lines += [f"| {k} | {_f(record[k]) if isinstance(record[k], float) else record[k]} |" for k in keys]
    if "warm_rerun" in record:
        lines.append(f"| wall_seconds, second run (warm caches) | {_f(record['warm_rerun']['wall_seconds'])} |")
    lines.append(f"| meets the issue's targets ({', '.join(f'{k}={v}' for k, v in record['targets'].items())}) | "
                 f"{'yes' if record.get('meets_targets') else 'no'} |")
    return lines


def _seconds(value: float | None) -> str:
    """Whole seconds to reach a level, or 'not reached'."""
    return _f(value, ".0f") if value else "not reached"


def _run_name(run: dict) -> str:
    """A distillation's column name: its label (when it has one) and its length."""
    return f"{run['label']}, {run['distill_seconds']:.0f} s" if run.get("label") else f"{run['distill_seconds']:.0f} s run"


def time_to_quality_table(record: dict) -> list[str]:
    runs = record["distillations"]
    lines = [f"**Time to quality, mlp** ({record['scene']}, {_short(record['card'])}, {record['commit']}, "
             "`benchmarks/time_to_quality.py`; seconds of optimisation to reach each validation PSNR, "
             "distillation time excluding the teacher's)", "",
             "| level | from scratch (s) | "
             + " | ".join(f"hash -> mlp, {_run_name(r)} (s) | speed-up" for r in runs) + " |",
             "| --- | --- |" + " --- | --- |" * len(runs)]
    for name, first in runs[0]["levels"].items():
        cells = [f"{_seconds(r['levels'][name]['distill_seconds'])} | {_f(r['levels'][name]['speedup'])}"
                 for r in runs]
        lines.append(f"| {first['psnr_db']:.2f} dB ({name}) | {_seconds(first['scratch_seconds'])} | "
                     + " | ".join(cells) + " |")
    lines.append("")
    distilled = "; ".join(f"{_run_name(r)}: {r['distilled_test_psnr_db']:.2f} dB (teacher {r['teacher_test_psnr_db']:.2f} dB)"
                          for r in runs)
    lines.append(f"Test PSNR: from scratch {record['scratch_test_psnr_db']:.2f} dB after {record['scratch_train_seconds']:.0f} s; "
                 f"{distilled}. {record['note']}.")
    return lines


BUILDERS = {"train": train_table, "distill": distill_table, "render_fps": render_table, "kernels": kernels_table,
            "newcomer": newcomer_table, "time_to_quality": time_to_quality_table}


def tables() -> str:
    """All tables, in a fixed order, as markdown."""
    blocks = []
    for name in ("newcomer", "train", "distill", "time_to_quality", "render_fps", "kernels"):
        for path in sorted(RESULTS.glob(f"{name}-*.json")):
            record = json.loads(path.read_text())
            blocks.append("\n".join(BUILDERS[name](record) + ["", f"<sub>from `{path.relative_to(ROOT)}`</sub>"]))
    return "\n\n".join(blocks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"README.md lacks the {BEGIN} / {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{tables()}\n{END}{tail}"
    if args.check:
        sys.exit(0 if new == text else 1)
    readme.write_text(new)


if __name__ == "__main__":
    main()
