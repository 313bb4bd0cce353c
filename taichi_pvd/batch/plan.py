"""Batch plans: a TOML file listing scenes, the teachers to train on each and the distillations
to make from them (``docs/batch.md`` is the reference of its keys). :func:`load_plan` reads and
checks a plan and returns its jobs as a :class:`~taichi_pvd.batch.graph.JobGraph`.

Options come in three layers, each over the one before: ``[defaults]``, the ``[[scene]]``'s own,
then the ``[[teacher]]`` or ``[[distillation]]`` entry's.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, JobGraphError, PlanError
from ..fields import FIELD_CLASSES, field_class, make_config
from ..option_types import check_option_types
from ..presets import merge_settings, training_preset
from .graph import Job, JobGraph

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Keys of each table of a plan.
_OPTION_TABLES = ("train", "distill", "fields")
_KEYS = {
    "plan": ("defaults", "scene", "teacher", "distillation"),
    "defaults": ("preset", "test_views", *_OPTION_TABLES),
    "scene": ("name", "data", *_OPTION_TABLES),
    "teacher": ("models", "train", "fields"),
    "distillation": ("pairs", "distill", "fields"),
}
#: What a scene name may hold: it names a folder of the output tree.
_SCENE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Plan:
    """A checked plan: its file and its jobs."""

    path: Path
    jobs: JobGraph


def load_plan(path: str | Path) -> Plan:
    """Read and check the plan at ``path``: every key known, every architecture and option
    known and of the right type (as the preset in effect resolves them), every scene's data
    present, every distillation's teacher in the plan, no two jobs of one name.

    Raises :class:`PlanError` saying what is wrong and where."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise PlanError(path, f"cannot be read ({err.strerror})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PlanError(path, f"is not valid TOML ({err})") from None
    try:
        jobs = _jobs(raw, path.parent)
        graph = JobGraph(jobs)
    except (PlanProblem, JobGraphError) as err:
        raise PlanError(path, str(err)) from None
    for job in graph:
        try:
            _check_options(job)
        except ConfigError as err:
            raise PlanError(path, f"job {job.name}: {err}") from None
    return Plan(path=path, jobs=graph)


class PlanProblem(Exception):
    """A problem of a plan's content, raised inside this module and reported as :class:`PlanError`."""


def _table(value: Any, where: str, kind: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PlanProblem(f"{where} must be a table, got {value!r}")
    unknown = sorted(set(value) - set(_KEYS[kind]))
    if unknown:
        raise PlanProblem(f"unknown key(s) {', '.join(unknown)} in {where}; known: {', '.join(_KEYS[kind])}")
    return value


def _entries(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    entries = raw.get(key, [])
    if not isinstance(entries, list):
        raise PlanProblem(f"{key} must be written [[{key}]] (a list of tables)")
    return [_table(entry, f"[[{key}]] #{i + 1}", key) for i, entry in enumerate(entries)]


def _options(table: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = table.get(name, {})
    if not isinstance(value, dict):
        raise PlanProblem(f"{name} in {where} must be a table of options, got {value!r}")
    return value


def _field_options(table: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    value = _options(table, "fields", where)
    for model, options in value.items():
        _architecture(model, f"fields of {where}")
        if not isinstance(options, dict):
            raise PlanProblem(f"fields.{model} in {where} must be a table of field options, got {options!r}")
    return value


def _architecture(name: Any, where: str) -> str:
    if name not in FIELD_CLASSES:
        raise PlanProblem(f"unknown architecture {name!r} in {where}; choose from {', '.join(FIELD_CLASSES)}")
    return name


def _scene_data(scene: dict[str, Any], where: str, root: Path) -> Path | None:
    if "data" not in scene:
        return None
    if not isinstance(scene["data"], str):
        raise PlanProblem(f"data of {where} must be a path, got {scene['data']!r}")
    data = (root / scene["data"]).expanduser()
    if not data.exists():
        raise PlanProblem(f"the data of {where} is missing: {data} does not exist")
    return data.resolve()


def _pairs(value: Any, teachers: list[str], where: str) -> list[tuple[str, str]]:
    if value == "all":
        return [(source, target) for source in teachers for target in FIELD_CLASSES]
    if not isinstance(value, list) or not value:
        raise PlanProblem(f"pairs of {where} must be \"all\" or a list like [\"hash:mlp\"], got {value!r}")
    pairs = []
    for pair in value:
        source, sep, target = str(pair).partition(":")
        if not sep:
            raise PlanProblem(f"pair {pair!r} of {where} must read TEACHER:STUDENT, e.g. \"hash:mlp\"")
        _architecture(source, where)
        _architecture(target, where)
        if source not in teachers:
            raise PlanProblem(f"pair {pair} of {where} needs a {source} teacher: add {source!r} to the models "
                              "of a [[teacher]]")
        pairs.append((source, target))
    return pairs


def _jobs(raw: dict[str, Any], root: Path) -> list[Job]:
    _table(raw, "the plan", "plan")
    defaults = _table(raw.get("defaults", {}), "[defaults]", "defaults")
    preset = defaults.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise PlanProblem(f"preset in [defaults] must be a name, got {preset!r}")
    test_views = defaults.get("test_views")
    if test_views is not None and (type(test_views) is not int or test_views < 1):
        raise PlanProblem(f"test_views in [defaults] must be a positive integer, got {test_views!r}")
    default_fields = _field_options(defaults, "[defaults]")
    scenes = _entries(raw, "scene")
    teachers = _entries(raw, "teacher")
    distillations = _entries(raw, "distillation")
    if not scenes:
        raise PlanProblem("it lists no [[scene]]")
    if not teachers:
        raise PlanProblem("it lists no [[teacher]]")
    teacher_models: list[str] = []
    for i, teacher in enumerate(teachers):
        models = teacher.get("models")
        if not isinstance(models, list) or not models:
            raise PlanProblem(f"[[teacher]] #{i + 1} needs models, a list of architectures like [\"hash\"]")
        teacher_models += [_architecture(m, f"[[teacher]] #{i + 1}") for m in models]
    jobs: list[Job] = []
    for s, scene in enumerate(scenes):
        where = f"[[scene]] #{s + 1}"
        name = scene.get("name")
        if not isinstance(name, str) or not _SCENE_NAME.fullmatch(name):
            raise PlanProblem(f"{where} needs a name made of letters, digits, '.', '_' or '-', got {name!r}")
        data = _scene_data(scene, f"scene {name}", root)
        scene_fields = _field_options(scene, f"scene {name}")

        def fields_of(model: str, entry_fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
            return {**default_fields.get(model, {}), **scene_fields.get(model, {}), **entry_fields.get(model, {})}

        def options_of(kind: str, entry: dict[str, Any], entry_where: str) -> dict[str, Any]:
            merged = merge_settings(_options(defaults, kind, "[defaults]"), _options(scene, kind, f"scene {name}"))
            return merge_settings(merged, _options(entry, kind, entry_where))

        for t, teacher in enumerate(teachers):
            entry_where = f"[[teacher]] #{t + 1}"
            entry_fields = _field_options(teacher, entry_where)
            for model in teacher["models"]:
                jobs.append(Job(name=f"{name}/{model}", scene=name, data=data, model=model, preset=preset,
                                options=options_of("train", teacher, entry_where),
                                fields=fields_of(model, entry_fields), test_views=test_views))
        for d, distillation in enumerate(distillations):
            entry_where = f"[[distillation]] #{d + 1}"
            entry_fields = _field_options(distillation, entry_where)
            for source, target in _pairs(distillation.get("pairs"), teacher_models, entry_where):
                jobs.append(Job(name=f"{name}/{source}-to-{target}", scene=name, data=data, model=target,
                                source=source, depends_on=(f"{name}/{source}",), preset=preset,
                                options=options_of("distill", distillation, entry_where),
                                fields=fields_of(target, entry_fields), test_views=test_views))
    return jobs


def _check_options(job: Job) -> None:
    """Resolve ``job``'s options as its run will (unknown names and wrong types raise
    :class:`ConfigError`)."""
    from ..distill.api import resolve_distill_config
    from ..training.api import resolve_train_config

    preset = training_preset(job.preset, demo_scene=job.data is None)
    check_option_types(field_class(job.model).config_class, job.fields, f"{job.model} field option")
    make_config(job.model, job.fields)
    if job.is_distillation:
        resolve_distill_config(job.model, job.options, preset)
    else:
        resolve_train_config(job.model, job.options, preset)
