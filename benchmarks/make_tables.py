"""Write the results pages from ``benchmarks/results/*.json``: nobody types a figure by hand.

Usage: ``python benchmarks/make_tables.py [--check] [--root DIR]``

- ``README.md``: the "Results at a glance" block between ``<!-- results:begin -->`` and
  ``<!-- results:end -->``;
- ``benchmarks/RESULTS.md``: the whole file.

``--check`` writes nothing and exits 1 when either file differs from what would be written.
``--root`` is the repository to read and write (default: this one).

Which run is the current one:

- training: the latest run (by date) of each architecture in ``train-lego-h100.json``, with the
  settings its command passed;
- distillation: for each teacher -> student pair, the latest run with every loss (variant
  ``all``) whose command changed no option other than the seed and ``init_head_from_teacher``;
- time to quality: the latest ``time_to_quality-lego-h100*.json`` (its plot is
  ``assets/media/lego-mlp-time-to-quality.png``, which ``benchmarks/time_to_quality.py``
  rewrites); its ratios are quoted over the distillations at the defaults, as above.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
MODELS = ("hash", "vm", "mlp", "grid")
#: Flags of the benchmark scripts that change a setting (the same names as ``pvd-ti``'s).
SETTING_FLAGS = ("--set", "--train-set", "--distill-set", "--lr", "--batch-rays")
#: ``KEY=VALUE`` settings that say how long a run lasted or which seed it drew, not how it trained.
RUN_KEYS = ("time_limit_s", "snapshot_times_s", "seed")
#: Distillation settings a run may pass and still count as run at the defaults.
DEFAULTS_ALLOW = ("seed", "init_head_from_teacher")
#: Options measured in some runs below and since removed from the library.
REMOVED = ("opacity_entropy_weight", "pixel_jitter", "error_guided_share", "error_tiles")
PLOT = "assets/media/lego-mlp-time-to-quality.png"
LEVELS = (("31dB", "31 dB"), ("32dB", "32 dB"), ("scratch_5min_or_last", "5-minute level"))
GLANCE_SOURCES = {"train": "train-lego-h100.json", "distill": "distill-lego-h100.json",
                  "render": "render_fps-lego-h100.json", "demo": "newcomer-demo-cpu.json"}


# --- reading the records ---------------------------------------------------------------------

def load_results(root: Path) -> dict[str, dict]:
    """Every results file under ``root``, by file name; a run without its own ``command``,
    ``commit`` or ``date`` takes its file's."""
    results = {p.name: json.loads(p.read_text()) for p in sorted((root / "benchmarks" / "results").glob("*.json"))}
    for record in results.values():
        for run in record.get("runs", []):
            for key in ("command", "commit", "date"):
                run.setdefault(key, record[key])
    return results


def settings(command: str) -> list[tuple[str, str]]:
    """The ``(flag, value)`` pairs of ``command`` that change a setting, e.g.
    ``("--set", "finest_resolution=512")`` (a note after two spaces is not part of it)."""
    words = shlex.split(command.split("  (")[0])
    return [(flag, value) for flag, value in zip(words, words[1:]) if flag in SETTING_FLAGS]


def _key(value: str) -> str:
    return value.split("=", 1)[0]


def setting_flags(command: str) -> list[str]:
    """The settings of ``command`` as flags to pass, run length and seed left out; a removed
    option is marked."""
    parts = []
    for flag, value in settings(command):
        if _key(value) not in RUN_KEYS:
            note = " (option since removed)" if _key(value) in REMOVED else ""
            parts.append(f"`{flag} {shlex.quote(value)}`{note}")
    return parts


def shown_settings(command: str) -> str:
    """:func:`setting_flags` as one cell, or ``defaults``."""
    return " ".join(setting_flags(command)) or "defaults"


def common_settings(commands: list[str]) -> tuple[list[str], list[str]]:
    """The setting flags every command passes, and for each command a cell of the others."""
    flags = [setting_flags(c) for c in commands]
    common = [f for f in flags[0] if all(f in other for other in flags[1:])]
    return common, [" ".join(f for f in own if f not in common) or "-" for own in flags]


def seed_of(command: str) -> str:
    """The seed ``command`` passed, or ``0`` (the default)."""
    seeds = [_key_value(v)[1] for _, v in settings(command) if _key(v) == "seed"]
    return seeds[-1] if seeds else "0"


def _key_value(value: str) -> tuple[str, str]:
    key, _, rest = value.partition("=")
    return key, rest


def at_defaults(run: dict) -> bool:
    """Whether a distillation run changed no option other than those of :data:`DEFAULTS_ALLOW`."""
    return all(_key(value) in DEFAULTS_ALLOW for _, value in settings(run["command"]))


def current_training(record: dict) -> dict[str, dict]:
    """The latest run of each architecture, in :data:`MODELS` order."""
    latest = {}
    for run in sorted(record["runs"], key=lambda r: r["date"]):
        latest[run["model"]] = run
    return {m: latest[m] for m in MODELS if m in latest}


def current_distillations(record: dict) -> dict[tuple[str, str], dict]:
    """For each teacher -> student pair, its latest run at the defaults with every loss."""
    latest = {}
    for run in sorted(record["runs"], key=lambda r: r["date"]):
        if run["variant"] == "all" and at_defaults(run):
            latest[(run["teacher"], run["student"])] = run
    return {(t, s): latest[(t, s)] for t in MODELS for s in MODELS if (t, s) in latest}


def distillation_gap(run: dict, scratch: dict[str, dict]) -> tuple[float, float]:
    """The reference a student is held to, the lower of its teacher's test PSNR and its
    architecture's current from-scratch score, and how far below it the student ended (dB)."""
    reference = min(run["teacher_test_psnr_db"], scratch[run["student"]]["test_psnr_db"])
    return reference, reference - run["student_test_psnr_db"]


def time_to_quality_files(results: dict[str, dict]) -> list[str]:
    """The lego time-to-quality files, oldest first (the last is the current run)."""
    names = [n for n in results if n.startswith("time_to_quality-lego-h100")]
    return sorted(names, key=lambda n: results[n]["date"])


def distillation_by_label(results: dict[str, dict], label: str) -> dict:
    """The hash -> mlp run of ``distill-lego-h100.json`` with that label."""
    return next(r for r in results["distill-lego-h100.json"]["runs"]
                if (r["teacher"], r["student"], r.get("label")) == ("hash", "mlp", label))


# --- formatting ------------------------------------------------------------------------------

def link(text: str, name: str, base: str) -> str:
    """``text`` linked to results file ``name`` (``base``: the results folder, relative to the page)."""
    return f"[{text}]({base}{name})"


def source(name: str, base: str, extra: str = "") -> str:
    return f"<sub>From {link(name, name, base)}{extra}.</sub>"


def card(record: dict) -> str:
    return record["card"].replace("NVIDIA ", "").replace(" 80GB HBM3", "")


def short_commits(text: str) -> str:
    """Every commit hash in ``text`` cut to 7 characters."""
    return re.sub(r"\b([0-9a-f]{7})[0-9a-f]{33}\b", r"\1", text)


def label_of(run: dict) -> str:
    return f"`{run['label']}`" if run.get("label") else "unlabelled"


def signed(value: float) -> str:
    """``value`` to two decimals, without a minus sign on a rounded zero."""
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def span(values: list[float], spec: str) -> str:
    """``low-high`` of ``values`` (one value: itself)."""
    low, high = format(min(values), spec), format(max(values), spec)
    return low if low == high else f"{low}-{high}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table."""
    return ["| " + " | ".join(cells) + " |" for cells in [header, ["---"] * len(header), *rows]]


# --- README: results at a glance -------------------------------------------------------------

def glance_training(results: dict[str, dict], base: str) -> list[str]:
    """Per architecture: test PSNR, training time, settings, render speed."""
    train, fps = results[GLANCE_SOURCES["train"]], results[GLANCE_SOURCES["render"]]
    frames = {r["model"]: r for r in fps["runs"]}
    rows = []
    for model, run in current_training(train).items():
        render = frames[model]
        rows.append([f"`{model}`", link(f"{run['test_psnr_db']:.2f} dB", GLANCE_SOURCES["train"], base),
                     link(f"{run['train_seconds']:.0f} s", GLANCE_SOURCES["train"], base),
                     shown_settings(run["command"]),
                     link(f"{render['fps']:.1f} fps", GLANCE_SOURCES["render"], base)])
    views = next(iter(current_training(train).values()))["test_views"]
    size = f"{fps['runs'][0]['width']}x{fps['runs'][0]['height']}"
    return [f"Lego (NeRF-Synthetic) at 400x400 pixels on one {card(train)}: test PSNR over its {views} test "
            f"views after the training time shown, and frames of {size} rendered a second:", "",
            *table(["architecture", "test PSNR", "training time", "settings", "rendering"], rows)]


def glance_distillation(results: dict[str, dict], base: str) -> str:
    """The matrix of 16 pairs in one line: the largest gap and the longest run."""
    name = GLANCE_SOURCES["distill"]
    scratch = current_training(results[GLANCE_SOURCES["train"]])
    pairs = current_distillations(results[name])
    gaps = {pair: distillation_gap(run, scratch)[1] for pair, run in pairs.items()}
    worst = max(gaps, key=gaps.get)
    longest = max(pairs.values(), key=lambda r: r["distill_seconds"])
    within = link(f"{signed(gaps[worst])} dB", name, base)
    slowest = link(f"{longest['distill_seconds']:.0f} s", name, base)
    pairs_text = "all 16" if len(pairs) == 16 else f"{len(pairs)} of the 16"
    return (f"- **Distillation**, {pairs_text} teacher -> student pairs, no training image read: "
            f"every student ends within {within} of the lower of its teacher's score and its architecture's "
            f"score above (the largest gap: {worst[0]} -> {worst[1]}); the longest run took {slowest}.")


def glance_time_to_quality(results: dict[str, dict], base: str) -> str:
    """The current time-to-quality ratios into the mlp, over the runs at the defaults."""
    name = time_to_quality_files(results)[-1]
    record = results[name]
    runs = [r for r in record["distillations"] if at_defaults(distillation_by_label(results, r["label"]))]
    parts = []
    for key, text in LEVELS:
        level = runs[0]["levels"][key]
        ratios = [r["levels"][key]["speedup"] for r in runs if r["levels"][key]["speedup"]]
        what = text if key != "scratch_5min_or_last" else f"the from-scratch run's {text} ({level['psnr_db']:.2f} dB)"
        missed = "" if len(ratios) == len(runs) else f", {len(runs) - len(ratios)} runs never got there"
        parts.append(f"{what} {link(span(ratios, '.1f') + 'x', name, base)} sooner{missed}")
    seconds = span([r["distill_seconds"] for r in runs], ".0f")
    return (f"- **Time to quality into the mlp**: distilled from a hash teacher ({len(runs)} runs of {seconds} s), "
            f"the mlp reaches {', '.join(parts)} than trained from scratch (validation PSNR; "
            "the teacher's training time not counted).")


def glance_demo(results: dict[str, dict], base: str) -> str:
    name = GLANCE_SOURCES["demo"]
    r = results[name]
    wall = link(f"{r['wall_seconds']:.0f} s", name, base)
    teacher = link(f"{r['teacher_test_psnr_db']:.2f} dB", name, base)
    student = link(f"{r['student_test_psnr_db']:.2f} dB", name, base)
    return (f"- **`pvd-ti demo` on {r['cpu_count']} CPU cores**: {wall} from a clean install; test PSNR of the "
            f"teacher {teacher}, of the student {student}.")


def glance(results: dict[str, dict]) -> str:
    """The README block."""
    base = "benchmarks/results/"
    return "\n".join([*glance_training(results, base), "", glance_distillation(results, base),
                      glance_time_to_quality(results, base), glance_demo(results, base), "",
                      "Every table, and where each run comes from: [benchmarks/RESULTS.md](benchmarks/RESULTS.md)."])


# --- RESULTS.md ------------------------------------------------------------------------------

def train_rows(runs: list[dict], name_of) -> list[list[str]]:
    return [[name_of(r), str(r["steps"]), str(r["batch_rays"]), f"{r['train_seconds']:.0f}",
             f"{r['test_psnr_db']:.2f}", f"{r['test_ssim']:.4f}", f"{r['num_parameters']:,}",
             shown_settings(r["command"])] for r in runs]


TRAIN_HEADER = ["architecture", "steps", "rays a step", "time (s)", "test PSNR (dB)", "SSIM", "parameters", "settings"]


def training_section(results: dict[str, dict], base: str) -> list[str]:
    name = "train-lego-h100.json"
    record = results[name]
    runs = current_training(record)
    provenance = "; ".join(f"{m}: {label_of(r)}, commit {r['commit'][:7]}" for m, r in runs.items())
    notes = "; ".join(sorted({r["note"] for r in runs.values() if r.get("note")}))
    return ["## Training from scratch", "",
            f"Lego at 400x400, one {card(record)}, the latest run of each architecture; test PSNR over "
            f"{next(iter(runs.values()))['test_views']} test views, one ray a pixel.", "",
            *table(TRAIN_HEADER, train_rows(list(runs.values()), lambda r: f"`{r['model']}`")), "",
            source(name, base, f" ({len(record['runs'])} runs in all). Runs shown: {provenance}. Notes: {notes}")]


def distillation_section(results: dict[str, dict], base: str) -> list[str]:
    name = "distill-lego-h100.json"
    scratch = current_training(results["train-lego-h100.json"])
    pairs = current_distillations(results[name])
    rows, provenance = [], []
    for (teacher, student), r in pairs.items():
        reference, gap = distillation_gap(r, scratch)
        rows.append([f"{teacher} -> {student}", str(r["steps"]), f"{r['distill_seconds']:.0f}",
                     f"{r['teacher_test_psnr_db']:.2f}", f"{r['student_test_psnr_db']:.2f}",
                     f"{reference:.2f}", signed(gap), shown_settings(r["command"])])
        provenance.append(f"{teacher} -> {student}: {label_of(r)}, commit {r['commit'][:7]}")
    return ["## Distillation matrix", "",
            f"Lego at 400x400, one {card(results[name])}, no training image read; for each pair the latest "
            "run at the defaults. The reference is the lower of the teacher's test PSNR and the student "
            "architecture's from-scratch score in the table above; the gap is how far below it the student "
            "ended (negative: above).", "",
            *table(["teacher -> student", "steps", "time (s)", "teacher (dB)", "student (dB)", "reference (dB)",
                    "gap (dB)", "settings"], rows), "",
            source(name, base, f". Runs shown: {'; '.join(provenance)}")]


def ablation_section(results: dict[str, dict], base: str) -> list[str]:
    """The calls that ran one pair with several loss variants (the paper's ablation switches)."""
    name = "distill-lego-h100.json"
    runs = results[name]["runs"]
    labels = sorted({r["label"] for r in runs if r["variant"] != "all" and r.get("label")
                     and len({q["variant"] for q in runs if q.get("label") == r["label"]}) > 1})
    lines = ["## Ablation of the distillation losses", ""]
    for label in labels:
        call = [r for r in runs if r.get("label") == label]
        first = call[0]
        rows = [[r["variant"], str(r["steps"]), f"{r['distill_seconds']:.0f}", f"{r['student_test_psnr_db']:.2f}",
                 f"{r['student_vs_teacher_psnr_db']:.2f}"] for r in call]
        lines += [f"{first['teacher']} -> {first['student']}, teacher at {first['teacher_test_psnr_db']:.2f} dB; "
                  "`no-feature-loss`, `no-density-clip` and `no-blockwise` each turn one of the paper's "
                  "choices off (`--distill-set feature_loss=false`, `density_clip=false`, `blockwise=false`).", "",
                  *table(["variant", "steps", "time (s)", "student test PSNR (dB)", "student vs teacher (dB)"], rows),
                  "", source(name, base, f", label `{label}`, commit {first['commit'][:7]}"), ""]
    return lines[:-1]


def _level_cell(level: dict, side: str) -> str:
    seconds = level[f"{side}_seconds"]
    if seconds is None:
        return "not reached"
    return f"{seconds:.1f}" + (f" ({level['speedup']:.1f}x)" if side == "distill" else "")


def time_to_quality_section(results: dict[str, dict], base: str) -> list[str]:
    name = time_to_quality_files(results)[-1]
    record = results[name]
    runs = record["distillations"]
    first = runs[0]
    scratch = [["mlp from scratch", "-", "defaults", *(_level_cell(first["levels"][k], "scratch") for k, _ in LEVELS),
                f"{record['scratch_train_seconds']:.0f}", f"{record['scratch_test_psnr_db']:.2f}"]]
    rows = []
    for r in runs:
        run = distillation_by_label(results, r["label"])
        shown = shown_settings(run["command"])
        rows.append(["hash -> mlp", seed_of(run["command"]), f"defaults, {shown}" if at_defaults(run) else shown,
                     *(_level_cell(r["levels"][k], "distill") for k, _ in LEVELS),
                     f"{r['distill_seconds']:.0f}", f"{r['distilled_test_psnr_db']:.2f}"])
    level5 = first["levels"]["scratch_5min_or_last"]["psnr_db"]
    labels = ", ".join(f"`{r['label']}`" for r in runs)
    return ["## Time to quality into the mlp", "",
            f"Lego at 400x400, one {card(record)}: an mlp trained from scratch against mlps distilled from a "
            f"hash teacher ({first['teacher_test_psnr_db']:.2f} dB test PSNR). Seconds of optimisation until the "
            f"validation PSNR first reaches 31 dB, 32 dB and the from-scratch run's 5-minute level "
            f"({level5:.2f} dB), with the speed-up over training from scratch; the distillation's time leaves "
            "out the teacher's training, as in the paper.", "",
            f"![validation PSNR against time: the mlp from scratch and distilled from a hash teacher](../{PLOT})", "",
            *table(["run", "seed", "settings", "31 dB (s)", "32 dB (s)", "5-minute level (s)", "run time (s)",
                    "test PSNR at the end (dB)"], scratch + rows), "",
            source(name, base, f" and {link('distill-lego-h100.json', 'distill-lego-h100.json', base)}, "
                               f"{short_commits(record['commit'])}; labels "
                               f"{labels}. {record['note']}")]


def earlier_time_to_quality(results: dict[str, dict], base: str) -> list[str]:
    """One line per earlier time-to-quality run: its best ratio at each level."""
    rows = []
    for name in time_to_quality_files(results)[:-1]:
        record = results[name]
        best = []
        for key, _ in LEVELS:
            ratios = [r["levels"][key]["speedup"] for r in record["distillations"] if r["levels"][key]["speedup"]]
            best.append(f"{max(ratios):.1f}x" if ratios else "not reached")
        rows.append([link(name, name, base), short_commits(record["commit"]), str(len(record["distillations"])), *best])
    return ["### Earlier time-to-quality runs", "",
            "Each JSON holds its runs' settings, levels and notes; shown here: the best speed-up of its "
            "distillations at each level.", "",
            *table(["file", "commits", "distillations", "31 dB", "32 dB", "5-minute level"], rows)]


def render_section(results: dict[str, dict], base: str) -> list[str]:
    lines = ["## Rendering speed", ""]
    for name in ("render_fps-lego-h100.json", "render_fps-demo-cpu.json"):
        record = results[name]
        runs = record["runs"]
        with_notes = any(r.get("note") for r in runs)
        rows = [[f"`{r['model']}`", f"{r['width']}x{r['height']}", str(r["frames"]), f"{r['fps']:.1f}",
                 *([r.get("note", "")] if with_notes else [])] for r in runs]
        header = ["architecture", "frame", "frames timed", "fps", *(["run"] if with_notes else [])]
        note = f". {record['note']}" if record.get("note") else ""
        lines += [f"{record['scene']}, {card(record)}; orbit frames timed after one warm-up frame:", "",
                  *table(header, rows), "", source(name, base, f", commit {record['commit'][:7]}{note}"), ""]
    return lines[:-1]


def kernels_section(results: dict[str, dict], base: str) -> list[str]:
    name = "kernels-synthetic-h100.json"
    r = results[name]
    bw = r["copy_bandwidth_gb_per_second"]
    rows = [
        ["hash encoding forward", f"{r['hash_points']:,} points x {r['hash_levels']} levels",
         f"{r['hash_forward_ms']:.2f}",
         f"{r['hash_forward_point_levels_per_second'] / 1e9:.2f} G point-levels/s",
         f"{r['hash_forward_min_bytes_gb_per_second']:,.0f} GB/s of compulsory traffic"],
        ["hash encoding forward+backward", "same", f"{r['hash_forward_backward_ms']:.2f}",
         f"{r['hash_forward_backward_point_levels_per_second'] / 1e9:.2f} G point-levels/s", ""],
        [f"grid trilinear forward ({r['grid_resolution']}^3 x {r['grid_channels']})", f"{r['grid_points']:,} points",
         f"{r['grid_forward_ms']:.2f}", f"{r['grid_forward_points_per_second'] / 1e9:.2f} G points/s",
         f"{r['grid_forward_gather_gb_per_second']:,.0f} GB/s of corner gathers "
         f"({r['grid_forward_gather_gb_per_second'] / bw:.0%} of copy)"],
        ["grid trilinear forward+backward", "same", f"{r['grid_forward_backward_ms']:.2f}", "", ""],
        ["march + composite forward/backward",
         f"{r['march_rays']:,} rays, {r['march_samples_per_ray']:.0f} samples a ray",
         f"{r['march_ms'] + r['composite_forward_backward_ms']:.2f}",
         f"{r['march_composite_rays_per_second'] / 1e6:.1f} M rays/s", ""],
    ]
    return ["## Kernels", "",
            f"Synthetic inputs, one {card(r)}; measured copy bandwidth {bw:,.0f} GB/s.", "",
            *table(["kernel", "size", "time (ms)", "throughput", "bandwidth it implies"], rows), "",
            source(name, base, f", commit {r['commit'][:7]}")]


def newcomer_section(results: dict[str, dict], base: str) -> list[str]:
    names = ("newcomer-demo-cpu.json", "newcomer-demo-h100.json")
    records = [results[n] for n in names]

    def row(text: str, get) -> list[str]:
        return [text] + [get(r) for r in records]

    def seconds(key: str):
        return lambda r: f"{r[key]:.1f}"

    rows = [
        row("preset", lambda r: f"`{r['preset']['name']}`"),
        row("wall time, clean install (s)", seconds("wall_seconds")),
        row("wall time, warm kernel cache (s)",
            lambda r: f"{r['warm_rerun']['wall_seconds']:.1f}" if "warm_rerun" in r else "-"),
        row("teacher test PSNR (dB)", lambda r: f"{r['teacher_test_psnr_db']:.2f}"),
        row("student test PSNR (dB)", lambda r: f"{r['student_test_psnr_db']:.2f}"),
        *(row(f"{phase} phase (s)", seconds(f"{phase}_phase_seconds"))
          for phase in ("scene", "train", "distill", "video", "eval")),
        row("first training step (s)", seconds("teacher_first_step_seconds")),
        row("first distillation step (s)", seconds("student_first_step_seconds")),
        row("targets", lambda r: ", ".join(f"{k}={v:g}" for k, v in r["targets"].items())),
        row("targets met", lambda r: "yes" if r["meets_targets"] else "no"),
    ]
    sources = "; ".join(f"{link(n, n, base)} (commit {r['commit'][:7]})" for n, r in zip(names, records))
    return ["## `pvd-ti demo` end to end", "",
            "`benchmarks/newcomer.py` runs `pvd-ti demo` as on a clean install (empty scene and kernel caches).", "",
            *table(["", *(card(r) for r in records)], rows), "",
            f"<sub>From {sources}.</sub>"]


def cpu_training_table(name: str, record: dict, base: str) -> list[str]:
    """A CPU training file: settings every run shares above the table, the others in it."""
    runs = record["runs"]
    common, own = common_settings([r["command"] for r in runs])
    header = [*TRAIN_HEADER[:-1], "test views", "other settings"]
    rows = [[*cells[:-1], str(r["test_views"]), rest]
            for r, cells, rest in zip(runs, train_rows(runs, lambda r: f"`{r['model']}`"), own)]
    notes = "; ".join(r["note"] for r in runs if r.get("note"))
    return [f"Training, {record['scene']}; settings of every run: {' '.join(common) or 'defaults'}.", "",
            *table(header, rows), "",
            source(name, base, f", commit {short_commits(record['commit'])}" + (f". {notes}" if notes else ""))]


def cpu_scenes_section(results: dict[str, dict], base: str) -> list[str]:
    lines = ["## CPU runs on other scenes", "",
             "Two CPU cores. The forward-facing and unbounded scenes are the generated captures of "
             "`pvd-ti scene forward-facing` and `pvd-ti scene unbounded`; lego is read at a quarter of its size.", ""]
    for name in ("train-forward-facing-demo-cpu.json", "train-unbounded-demo-cpu.json", "train-lego-cpu.json"):
        lines += [*cpu_training_table(name, results[name], base), ""]
    name = "distill-forward-facing-demo-cpu.json"
    record = results[name]
    rows = [[f"{r['teacher']} -> {r['student']}", str(r["steps"]), f"{r['distill_seconds']:.0f}",
             f"{r['teacher_test_psnr_db']:.2f}", f"{r['student_test_psnr_db']:.2f}", str(r["test_views"]),
             shown_settings(r["command"])] for r in record["runs"]]
    lines += [f"Distillation, {record['scene']}:", "",
              *table(["teacher -> student", "steps", "time (s)", "teacher (dB)", "student (dB)", "test views",
                      "settings"], rows), "",
              source(name, base, f", commit {record['commit'][:7]}")]
    return lines


#: Failing GPU tests named in the table; the rest are counted (a crashed CUDA context fails
#: every test after the first).
MAX_FAILING_NAMED = 3


def gpu_checks_section(results: dict[str, dict], base: str) -> list[str]:
    """The ``pytest -m cuda`` set as last run on a GPU, and hand-written backwards against Taichi's
    autodiff; empty where neither has been recorded."""
    lines = []
    for name in sorted(n for n in results if n.startswith("cuda-tests-")):
        r = results[name]
        outcome = ", ".join(f"{r.get(k, 0)} {k}" for k in ("passed", "failed", "errors", "skipped"))
        failing = r.get("failed_tests", []) + r.get("error_tests", [])
        named = "; ".join(failing[:MAX_FAILING_NAMED]) + (
            f"; {len(failing) - MAX_FAILING_NAMED} more" if len(failing) > MAX_FAILING_NAMED else "")
        lines += [f"`pytest -m cuda` on one {card(r)}: {outcome} in {r['duration_s']:.0f} s"
                  + (f" (not passing, in order: {named})" if failing else "") + ".", "",
                  source(name, base, f", commit {short_commits(r['commit'])}"), ""]
    for name in sorted(n for n in results if n.startswith("autodiff_vs_handwritten-")):
        r = results[name]
        rows = [[text, f"{r[f'{case}_handwritten_ms']:.3f}", f"{r[f'{case}_autodiff_ms']:.3f}",
                 f"{r[f'{case}_autodiff_over_handwritten']:.1f}x",
                 f"{r[f'{case}_max_difference_over_max_gradient']:.1e}"]
                for case, text in ((k[: -len("_handwritten_ms")], k[: -len("_handwritten_ms")].replace("_", " "))
                                   for k in r if k.endswith("_handwritten_ms"))]
        lines += [f"Hand-written backward kernels against Taichi's autodiff of the forward kernel, one {card(r)}, "
                  f"{r['points']:,} points or {r['rays']:,} rays (up to {r['max_samples_per_ray']} samples a ray); "
                  "medians:", "",
                  *table(["kernel", "hand-written (ms)", "autodiff (ms)", "autodiff / hand-written",
                          "largest difference / largest gradient"], rows), "",
                  source(name, base, f", commit {short_commits(r['commit'])}"), ""]
    return ["## GPU checks", "", *lines[:-1]] if lines else []


def batch_scaling_section(results: dict[str, dict], base: str) -> list[str]:
    """Each ``batch_scaling`` file: one plan's wall time on N GPUs against one GPU (none yet: no lines)."""
    names = [name for name in results if name.startswith("batch_scaling-")]
    if not names:
        return []
    rows = [[f"`{results[n]['plan']}`", card(results[n]), str(results[n]["jobs"]), str(results[n]["gpus"]),
             f"{results[n]['wall_seconds_n_gpus']:.0f}", f"{results[n]['wall_seconds_one_gpu']:.0f}",
             f"x{results[n]['speedup']:.2f}", link(results[n]["commit"][:7], n, base)] for n in names]
    return ["## Batch scaling", "",
            "`pvd-ti batch` of one plan by torchrun on N GPUs, then alone on one GPU of the same machine "
            "(`benchmarks/batch_scaling.py`); wall time from start to summary, Taichi's kernel cache shared.", "",
            *table(["plan", "card", "jobs", "GPUs", "N GPUs (s)", "one GPU (s)", "speed-up", "commit"], rows)]


def export_section(results: dict[str, dict], base: str) -> list[str]:
    """Mesh, point and volume export of a teacher and its students (``export-lego-*.json``, from
    ``benchmarks/export.py``); nothing while no such file exists."""
    lines = []
    for name in sorted(n for n in results if n.startswith("export-lego-")):
        record = results[name]
        rows = [[f"`{r['model']}`", r["role"], f"no mesh: {r['error']}", "", "", "", "", ""] if "error" in r else
                [f"`{r['model']}`", r["role"], f"{r['mesh_seconds']:.1f}", f"{r['vertices']:,}",
                 f"{r['chamfer_to_teacher']:.4f} ({r['chamfer_to_teacher_box_percent']:.2f}%)" if "chamfer_to_teacher" in r
                 else "-", f"{r['points_seconds']:.1f}", f"{r['points']:,}", f"{r['volume_seconds']:.1f}"]
                for r in record["runs"]]
        first = record["runs"][0]
        lines += [f"{record['scene']}, {card(record)}; meshes at resolution {first['resolution']}, threshold "
                  f"{first['threshold']:g}, the faces the training views see; points from the training views; "
                  f"volumes at resolution {first['volume_resolution']}:", "",
                  *table(["architecture", "role", "mesh (s)", "vertices", "Chamfer to the teacher's mesh (% of box)",
                          "points (s)", "points", "volume (s)"], rows), "",
                  source(name, base, f", commit {record['commit'][:7]}"), ""]
    return ["## Export", "", *lines[:-1]] if lines else []


#: Real captures of ``../shared/data`` with their GPU records (``train-<scene>-<card>.json``).
CAPTURES = ("fern", "garden")


def captures_section(results: dict[str, dict], base: str) -> list[str]:
    """Per real capture recorded on a GPU: training from scratch (with samples a ray) and the
    distillations of its hash teacher against the lower of teacher and from-scratch score;
    nothing while no such record exists."""
    lines = []
    for scene in CAPTURES:
        for name in sorted(n for n in results if n.startswith(f"train-{scene}-") and not n.endswith("-cpu.json")):
            record = results[name]
            runs = current_training(record)
            rows = [[f"`{r['model']}`", str(r["steps"]), f"{r['train_seconds']:.0f}",
                     f"{r['samples_per_ray_after_warmup']:.1f}", f"{r['test_psnr_db']:.2f}", f"{r['test_ssim']:.4f}",
                     shown_settings(r["command"]), r.get("note", "")] for r in runs.values()]
            views = next(iter(runs.values()))["test_views"]
            lines += [f"{scene}, one {card(record)}, trained from scratch; test PSNR over its {views} held-out "
                      "views, one ray a pixel; samples a ray averaged after the occupancy grid's warm-up:", "",
                      *table(["architecture", "steps", "time (s)", "samples a ray", "test PSNR (dB)", "SSIM",
                              "settings", "note"], rows), "",
                      source(name, base, f", commit {short_commits(', '.join(sorted({r['commit'] for r in runs.values()})))}"),
                      ""]
            distilled = name.replace("train-", "distill-", 1)
            if distilled not in results:
                continue
            rows = []
            for (teacher, student), r in current_distillations(results[distilled]).items():
                reference, gap = distillation_gap(r, runs) if student in runs else (r["teacher_test_psnr_db"], None)
                rows.append([f"{teacher} -> {student}", str(r["steps"]), f"{r['distill_seconds']:.0f}",
                             f"{r['teacher_test_psnr_db']:.2f}", f"{r['student_test_psnr_db']:.2f}",
                             f"{reference:.2f}" + ("" if student in runs else " (teacher only)"),
                             signed(gap) if gap is not None else "-", r.get("note", "")])
            lines += [f"{scene}, distilled from the hash teacher above; the reference is the lower of the "
                      "teacher's score and the student architecture's from-scratch score:", "",
                      *table(["teacher -> student", "steps", "time (s)", "teacher (dB)", "student (dB)",
                              "reference (dB)", "gap (dB)", "note"], rows), "",
                      source(distilled, base, f", commit {results[distilled]['commit'][:7]}"), ""]
    return ["## Real captures", "", *lines[:-1]] if lines else []


def viewer_section(results: dict[str, dict], base: str) -> list[str]:
    """A distillation's steps a second with and without a viewer client moving the camera
    (``viewer_overhead-*.json``) and ``pvd-ti view``'s frames a second while it moves
    (``viewer_fps-*.json``); nothing while neither exists."""
    names = sorted(n for n in results if n.startswith("viewer_overhead-"))
    rows = [[results[n]["scene"], card(results[n]), f"{results[n]['teacher']} -> {results[n]['student']}",
             str(results[n]["steps"]), f"{results[n]['steps_per_second_without_viewer']:.3g}",
             f"{results[n]['steps_per_second_with_viewer']:.3g}",
             f"{(1 - results[n]['with_over_without']) * 100:.1f}%", str(results[n]["frames_sent"]),
             link(results[n]["commit"][:7], n, base)] for n in names]
    fps_names = sorted(n for n in results if n.startswith("viewer_fps-"))
    fps_rows = [[results[n]["scene"], card(results[n]), str(results[n]["panels"]),
                 "x".join(map(str, results[n]["canvas"])), f"{results[n]['frames_per_second_moving']:.1f}",
                 "x".join(map(str, results[n]["moving_frame_size"])), str(results[n]["still_long_side"]),
                 link(results[n]["commit"][:7], n, base)] for n in fps_names]
    lines = []
    if rows:
        lines += ["`distill --view` with a client that moves the camera every 50 ms the whole run, against the "
                  "same distillation with no client (`benchmarks/viewer_overhead.py`):", "",
                  *table(["scene", "card", "pair", "steps", "steps/s without", "steps/s with", "fewer steps",
                          "frames sent", "commit"], rows), ""]
    if fps_rows:
        lines += ["`pvd-ti view` with a client that moves the camera every 50 ms (at most 20 frames a second), "
                  "after a warm-up (`benchmarks/viewer_fps.py`): frames a second while moving and the size of "
                  "each panel the viewer rendered them at:", "",
                  *table(["scene", "card", "panels", "canvas", "frames/s moving", "moving panel size",
                          "still long side", "commit"], fps_rows), ""]
    return ["## Live viewer", "", *lines[:-1]] if lines else []


SECTIONS = (training_section, distillation_section, ablation_section, time_to_quality_section,
            earlier_time_to_quality, render_section, kernels_section, newcomer_section, cpu_scenes_section,
            captures_section, export_section, viewer_section, gpu_checks_section, batch_scaling_section)


def results_page(results: dict[str, dict]) -> str:
    """The whole of ``benchmarks/RESULTS.md``."""
    base = "results/"
    head = ["# Benchmark results", "",
            "Generated by `python benchmarks/make_tables.py` from `benchmarks/results/*.json`; do not edit. "
            "Each JSON entry records the card, the commit, the date and the exact command of its run. Settings "
            "are the flags the run passed on top of the library defaults, run length and seed left out; "
            "`pvd-ti train` and `pvd-ti distill` take the same flags (`benchmarks/distill.py` prefixes a "
            "student field option with its architecture: `--set grid.resolution=64`)."]
    blocks = [head] + [block for block in (section(results, base) for section in SECTIONS) if block]
    return "\n\n".join("\n".join(block) for block in blocks) + "\n"


# --- writing ---------------------------------------------------------------------------------

def readme_text(readme: str, block: str) -> str:
    """``readme`` with ``block`` between the markers."""
    if BEGIN not in readme or END not in readme:
        sys.exit(f"README.md lacks the {BEGIN} / {END} markers")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a page is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this one)")
    args = parser.parse_args(argv)
    results = load_results(args.root)
    readme = args.root / "README.md"
    pages = {readme: readme_text(readme.read_text(), glance(results)),
             args.root / "benchmarks" / "RESULTS.md": results_page(results)}
    stale = [path for path, text in pages.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(args.root)} is stale: run python benchmarks/make_tables.py", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(pages[path])
        print(f"wrote {path.relative_to(args.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
