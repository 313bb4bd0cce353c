"""The whole job on the embedded demo scene, as ``pvd-ti demo`` runs it: train a ``hash``
teacher, distil it into a ``grid`` student, render an orbit video of both side by side, score
both on the test split, and write a summary.

Everything goes into one folder (``runs/demo`` by default)::

    runs/demo/
      hash/            the teacher run: checkpoint.pt, metrics.json, history.jsonl, eval/
      hash-to-grid/    the student run, same layout
      orbit/           video.mp4 (or video.gif), depth.mp4, frames/NNNN.png, depth/NNNN.png:
                       teacher | student side by side
      summary.json     the preset, both test PSNR/SSIM figures, the time of every phase

The settings come from a :class:`~taichi_pvd.presets.Preset`. The phases are methods of
:class:`DemoJob` so that a front end can show each one its own way; :meth:`DemoJob.run` runs
them all in order.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import backend
from .data.demo import demo_scene_path
from .errors import OutputFolderUnusable
from .evaluation import Evaluation, ViewScore, evaluate_run
from .io.runs import write_json
from .presets import Preset
from .training.loop import OptimizationLoop, ProgressFn

DEFAULT_OUT = Path("runs") / "demo"
TEACHER_MODEL = "hash"
STUDENT_MODEL = "grid"
SUMMARY_NAME = "summary.json"
#: Length of the orbit video, seconds (the frame rate follows from the preset's frame count).
VIDEO_SECONDS = 4.0


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo writes its results."""

    root: Path
    teacher: Path
    student: Path
    orbit: Path
    summary: Path

    @classmethod
    def under(cls, root: str | os.PathLike) -> DemoPaths:
        """The layout of a demo folder ``root``."""
        root = Path(root)
        return cls(root=root, teacher=root / TEACHER_MODEL,
                   student=root / f"{TEACHER_MODEL}-to-{STUDENT_MODEL}",
                   orbit=root / "orbit", summary=root / SUMMARY_NAME)

    def owned(self) -> tuple[Path, ...]:
        """The entries of the folder that the demo writes (and replaces on a rerun)."""
        return self.teacher, self.student, self.orbit, self.summary


def prepare_demo_dir(paths: DemoPaths) -> bool:
    """Make ``paths.root`` ready for a new demo; returns True when an earlier demo was replaced.

    A folder holding anything the demo does not write is refused with :class:`OutputFolderUnusable`
    (nothing is deleted); an earlier demo's entries are removed.
    """
    root = paths.root
    if root.exists() and not root.is_dir():
        raise OutputFolderUnusable(root, "is a file")
    if not root.exists():
        return False
    foreign = sorted(p.name for p in root.iterdir() if p not in paths.owned())
    if foreign:
        raise OutputFolderUnusable(
            root, f"holds files that are not from an earlier demo ({', '.join(foreign[:3])}"
                  f"{', ...' if len(foreign) > 3 else ''})")
    replaced = False
    for entry in paths.owned():
        if entry.is_dir():
            shutil.rmtree(entry)
            replaced = True
        elif entry.exists():
            entry.unlink()
            replaced = True
    return replaced


def time_first_step(loop: OptimizationLoop, on_done: Callable[[float], None]) -> None:
    """Report how long ``loop``'s first optimizer step takes (seconds, device synchronised).

    The first step is where Taichi compiles the kernels the loop needs (from the offline cache
    after the first run), so its time is that of compilation plus one ordinary step. Later steps
    are not wrapped.
    """
    step = loop.optimizer_step

    def first_step():
        start = time.perf_counter()
        result = step()
        if loop.device.type == "cuda":
            torch.cuda.synchronize()
        del loop.optimizer_step
        on_done(time.perf_counter() - start)
        return result

    loop.optimizer_step = first_step


@dataclass
class DemoSummary:
    """What the demo produced: the figures and the files."""

    paths: DemoPaths
    preset: Preset
    backend: str
    teacher: Evaluation
    student: Evaluation
    video: Path
    depth_video: Path
    seconds: dict[str, float]
    """Wall time of each phase (``scene``, ``teacher``, ``student``, ``video``, ``evaluation``)
    and ``total``, seconds."""
    first_step_seconds: dict[str, float]
    """First optimizer step of the teacher and of the student (kernel compilation included)."""
    load_average: tuple[float, float]
    """1-minute load average of the machine at the start and at the end (other jobs slow the
    demo down; 0 where the OS does not report it)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form, as written to ``summary.json``."""
        return {
            "teacher_model": TEACHER_MODEL,
            "student_model": STUDENT_MODEL,
            "teacher_test_psnr_db": self.teacher.psnr_db,
            "student_test_psnr_db": self.student.psnr_db,
            "teacher_test_ssim": self.teacher.ssim,
            "student_test_ssim": self.student.ssim,
            "test_views": len(self.teacher.views),
            "seconds": self.seconds,
            "first_step_seconds": self.first_step_seconds,
            "backend": self.backend,
            "torch_threads": torch.get_num_threads(),
            "load_average_1min_start": self.load_average[0],
            "load_average_1min_end": self.load_average[1],
            "preset": self.preset.to_dict(),
            "files": {
                "teacher": str(self.paths.teacher),
                "student": str(self.paths.student),
                "video": str(self.video),
                "depth_video": str(self.depth_video),
                "frames": str(self.paths.orbit / "frames"),
            },
        }


def _load_average() -> float:
    try:
        return float(os.getloadavg()[0])
    except OSError:
        return 0.0


class DemoJob:
    """The demo's phases, to be called in order: :meth:`prepare`, :meth:`scene`,
    :meth:`train_teacher`, :meth:`distill_student`, :meth:`render_orbit`, :meth:`evaluate`,
    :meth:`finish`.

    Args:
        preset: the settings (see :mod:`taichi_pvd.presets`).
        out_dir: the demo folder (see the module docstring for its layout).
        seed: seed of training and distillation.
    """

    def __init__(self, preset: Preset, out_dir: str | os.PathLike = DEFAULT_OUT, seed: int = 0):
        self.preset = preset
        self.paths = DemoPaths.under(out_dir)
        self.seed = seed
        self.seconds: dict[str, float] = {}
        self.first_step_seconds: dict[str, float] = {}
        self.scene_path: Path | None = None
        self.evaluations: dict[str, Evaluation] = {}
        self.videos: tuple[Path, Path] | None = None
        self._started = time.perf_counter()
        self._load_start = _load_average()

    def _timed(self, phase: str, start: float) -> None:
        self.seconds[phase] = time.perf_counter() - start

    def validate(self) -> None:
        """Check every setting of the preset (:class:`ConfigError` names a wrong one) before
        anything long starts."""
        from .distill.api import resolve_distill_config
        from .fields import make_config
        from .training.api import resolve_train_config

        resolve_train_config(TEACHER_MODEL, {"seed": self.seed}, self.preset)
        distillation = resolve_distill_config(STUDENT_MODEL, {"seed": self.seed}, self.preset)
        make_config(TEACHER_MODEL, self.preset.field_options(TEACHER_MODEL))
        make_config(STUDENT_MODEL, self.preset.field_options(STUDENT_MODEL, distill_steps=distillation.steps))

    def prepare(self) -> bool:
        """Check the settings, start Taichi and clear an earlier demo from the folder (True if
        one was replaced)."""
        self.validate()
        backend.init()
        self._started = time.perf_counter()
        return prepare_demo_dir(self.paths)

    def scene(self) -> Path:
        """The demo scene at the preset's size, rendered on first use (then cached, see
        :func:`~taichi_pvd.data.demo.demo_scene_path`)."""
        start = time.perf_counter()
        self.scene_path = demo_scene_path(size=self.preset.scene_size)
        self._timed("scene", start)
        return self.scene_path

    def _loop_ready(self, name: str, on_ready: Callable[[OptimizationLoop], None] | None,
                    on_first_step: Callable[[float], None] | None) -> Callable[[OptimizationLoop], None]:
        def ready(loop: OptimizationLoop) -> None:
            def done(seconds: float) -> None:
                self.first_step_seconds[name] = seconds
                if on_first_step is not None:
                    on_first_step(seconds)

            time_first_step(loop, done)
            if on_ready is not None:
                on_ready(loop)

        return ready

    def train_teacher(self, on_progress: ProgressFn | None = None,
                      on_ready: Callable[[OptimizationLoop], None] | None = None,
                      on_first_step: Callable[[float], None] | None = None) -> dict[str, Any]:
        """Train the ``hash`` teacher on the demo scene; returns its final metrics.

        ``on_ready(trainer)`` runs before the first step, ``on_first_step(seconds)`` after it,
        ``on_progress`` as in :func:`taichi_pvd.training.api.train`.
        """
        from .training.api import train

        scene = self.scene_path or self.scene()
        start = time.perf_counter()
        metrics = train(data=scene, model=TEACHER_MODEL, out=self.paths.teacher, preset=self.preset,
                        train_overrides={"seed": self.seed}, overwrite=True, on_progress=on_progress,
                        on_ready=self._loop_ready("teacher", on_ready, on_first_step))
        self._timed("teacher", start)
        return metrics

    def distill_student(self, on_progress: ProgressFn | None = None,
                        on_ready: Callable[[OptimizationLoop], None] | None = None,
                        on_first_step: Callable[[float], None] | None = None) -> dict[str, Any]:
        """Distil the teacher into the ``grid`` student (no training image is read); returns
        the student's final metrics. Callbacks as in :meth:`train_teacher`."""
        from .distill.api import distill

        start = time.perf_counter()
        metrics = distill(source=TEACHER_MODEL, target=STUDENT_MODEL, teacher=self.paths.teacher,
                          out=self.paths.student, preset=self.preset, distill_overrides={"seed": self.seed},
                          overwrite=True, on_progress=on_progress,
                          on_ready=self._loop_ready("student", on_ready, on_first_step))
        self._timed("student", start)
        return metrics

    def render_orbit(self, on_frame: Callable[[int, int], None] | None = None) -> tuple[Path, Path]:
        """Render the preset's number of orbit frames of teacher | student side by side at the
        training image size; returns the colour and depth video paths.
        ``on_frame(done, total)`` is called after each frame."""
        from .io.runs import load_run
        from .rendering.images import PathWriter
        from .rendering.inference import render_path
        from .rendering.view_sets import orbit_views

        start = time.perf_counter()
        device = backend.device()
        runs = [load_run(self.paths.teacher, device), load_run(self.paths.student, device)]
        frames = self.preset.video_frames
        views = orbit_views(runs[0].camera_rig(), frames)
        writer = PathWriter(self.paths.orbit, [f"{TEACHER_MODEL} teacher", f"{STUDENT_MODEL} student"],
                            views.near, views.far, fps=max(frames / VIDEO_SECONDS, 1.0))
        for i, rendered in render_path(runs, views):
            writer.add([f.rgb for f in rendered], [f.depth for f in rendered], [f.opacity for f in rendered])
            if on_frame is not None:
                on_frame(i + 1, len(views))
        self.videos = writer.finish()
        self._timed("video", start)
        return self.videos

    def evaluate(self, on_view: Callable[[str, ViewScore], None] | None = None) -> dict[str, Evaluation]:
        """PSNR/SSIM of teacher and student on every test view (rendered on white); per-view
        PNGs go to ``<run>/eval/test/``. ``on_view(role, score)`` is called after each view,
        ``role`` being ``teacher`` or ``student``. Returns ``{"teacher": ..., "student": ...}``."""
        from .io.runs import load_run

        start = time.perf_counter()
        device = backend.device()
        for role, run_dir in (("teacher", self.paths.teacher), ("student", self.paths.student)):
            callback = None if on_view is None else (lambda score, role=role: on_view(role, score))
            self.evaluations[role] = evaluate_run(load_run(run_dir, device), split="test", on_view=callback)
        self._timed("evaluation", start)
        return self.evaluations

    def finish(self) -> DemoSummary:
        """Write ``summary.json`` and return the :class:`DemoSummary`."""
        if self.videos is None or set(self.evaluations) != {"teacher", "student"}:
            raise RuntimeError("finish() needs render_orbit() and evaluate() to have run")
        self.seconds["total"] = time.perf_counter() - self._started
        summary = DemoSummary(paths=self.paths, preset=self.preset, backend=backend.arch(),
                              teacher=self.evaluations["teacher"], student=self.evaluations["student"],
                              video=self.videos[0], depth_video=self.videos[1], seconds=dict(self.seconds),
                              first_step_seconds=dict(self.first_step_seconds),
                              load_average=(self._load_start, _load_average()))
        write_json(self.paths.summary, summary.to_dict())
        return summary

    def run(self) -> DemoSummary:
        """Every phase in order, without progress reports."""
        self.prepare()
        self.scene()
        self.train_teacher()
        self.distill_student()
        self.render_orbit()
        self.evaluate()
        return self.finish()
