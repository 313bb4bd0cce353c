"""The jobs of a batch and an order they may run in: each after the jobs it depends on (a
distillation after its teacher)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import JobGraphError


@dataclass(frozen=True)
class Job:
    """One run of a batch: training a teacher, or distilling a teacher into a student."""

    name: str
    """``<scene>/<model>`` for a teacher, ``<scene>/<teacher>-to-<student>`` for a distillation;
    also the run folder's path under the batch's output folder."""
    scene: str
    """Name of the plan's scene."""
    data: Path | None
    """The scene folder, or ``None`` for the embedded demo scene."""
    model: str
    """Architecture trained (a teacher) or distilled into (a student)."""
    source: str | None = None
    """The teacher's architecture of a distillation; ``None`` for a teacher."""
    depends_on: tuple[str, ...] = ()
    """Names of the jobs that must be done first (a distillation's teacher)."""
    preset: str | None = None
    """Preset name (``None``: the library's choice, as ``pvd-ti train`` makes it)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Training options (:class:`~taichi_pvd.training.config.TrainConfig` names) of a teacher,
    distillation options (:class:`~taichi_pvd.distill.config.DistillConfig` names) of a student."""
    fields: dict[str, Any] = field(default_factory=dict)
    """Field options of the architecture trained or distilled into."""
    test_views: int | None = None
    """Test views the finished run is scored on (``None``: the whole test split)."""

    @property
    def is_distillation(self) -> bool:
        return self.source is not None

    @property
    def folder(self) -> Path:
        """The run folder relative to the batch's output folder."""
        return Path(self.name)


class JobGraph:
    """Jobs in an order where each comes after the jobs it depends on (the given order where
    it allows).

    Raises :class:`JobGraphError` for two jobs of one name, a dependency on a job that is not
    there, or a cycle.
    """

    def __init__(self, jobs: Iterable[Job]):
        by_name: dict[str, Job] = {}
        for job in jobs:
            if job.name in by_name:
                raise JobGraphError(f"two jobs are named {job.name}")
            by_name[job.name] = job
        for job in by_name.values():
            missing = [d for d in job.depends_on if d not in by_name]
            if missing:
                raise JobGraphError(f"job {job.name} depends on {', '.join(missing)}, which is not in the batch")
        self._jobs = by_name
        self.order: tuple[Job, ...] = tuple(by_name[name] for name in _topological(by_name))

    def __getitem__(self, name: str) -> Job:
        return self._jobs[name]

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self):
        return iter(self.order)


def _topological(jobs: dict[str, Job]) -> list[str]:
    """Job names, each after its dependencies (depth-first, in the given order); a cycle raises
    :class:`JobGraphError` naming it."""
    order: list[str] = []
    finished: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> None:
        if name in finished:
            return
        if name in path:
            cycle = path[path.index(name):] + [name]
            raise JobGraphError(f"jobs wait for each other in a cycle: {' -> '.join(cycle)}")
        path.append(name)
        for dependency in jobs[name].depends_on:
            visit(dependency)
        path.pop()
        finished.add(name)
        order.append(name)

    for name in jobs:
        visit(name)
    return order
