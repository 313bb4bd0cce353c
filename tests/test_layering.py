"""The import structure of ``taichi_pvd``: no import cycle, and every import goes to the same
layer or a lower one.

Imports are read from the source with ``ast`` (module-level and inside functions), so the
test needs no import of the package. ``from pkg import name`` counts as an import of the module
``pkg.name`` when there is one, else of ``pkg``; importing ``a.b.c`` from outside the package
``a.b`` also runs ``a.b``'s ``__init__`` (and its re-exports), so it counts as an import of
``a.b`` too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "taichi_pvd"

#: The layers, lowest first: a module may import modules of its own layer and of the layers
#: below it. An entry names a module, or a package together with every module inside it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("taichi_pvd", "taichi_pvd.errors", "taichi_pvd.advice", "taichi_pvd.backend", "taichi_pvd.metrics",
                    "taichi_pvd.option_types", "taichi_pvd.memory")),
    ("data", ("taichi_pvd.data",)),
    ("kernels", ("taichi_pvd.kernels",)),
    ("fields", ("taichi_pvd.fields",)),
    ("rendering", ("taichi_pvd.rendering",)),
    ("io", ("taichi_pvd.io",)),
    ("presets", ("taichi_pvd.presets",)),
    ("training", ("taichi_pvd.training",)),
    ("distill", ("taichi_pvd.distill",)),
    ("jobs", ("taichi_pvd.evaluation", "taichi_pvd.run_info", "taichi_pvd.plots", "taichi_pvd.demo_job",
              "taichi_pvd.export")),
    ("viewer", ("taichi_pvd.viewer",)),
]


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Module name -> (source file, whether it is a package's ``__init__``) of the package
    :data:`PACKAGE` under ``root``."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    return modules


def _packages_entered(importer: str, target: str, modules: dict) -> list[str]:
    """The packages above ``target`` whose ``__init__`` importing it runs: those that do not
    also contain ``importer`` (whose packages are initialised before it runs)."""
    parts = target.split(".")
    ancestors = [".".join(parts[:i]) for i in range(1, len(parts))]
    return [a for a in ancestors if a in modules and not (importer + ".").startswith(a + ".")]


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """Module -> {imported taichi_pvd module: line of the import statement}, for the package
    under ``root``."""
    modules = _modules(root)
    graph: dict[str, dict[str, int]] = {}
    for name, (path, is_package) in modules.items():
        edges: dict[str, int] = {}
        here = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                           for alias in node.names]
            for target in targets:
                if target != PACKAGE and not target.startswith(PACKAGE + "."):
                    continue
                while target not in modules:  # `import a.b.c` of an attribute path
                    target = target.rsplit(".", 1)[0]
                for imported in [*_packages_entered(name, target, modules), target]:
                    if imported != name:
                        edges.setdefault(imported, node.lineno)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]``, or None when the graph is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for successor in sorted(graph.get(node, {})):
            if state.get(successor) == 1:
                return path[path.index(successor):] + [successor]
            if successor not in state:
                cycle = visit(successor)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def layer_of(module: str) -> int | None:
    """Index in :data:`LAYERS` of the most specific entry holding ``module``, or None."""
    best, best_length = None, -1
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            covers = module == entry or (entry != PACKAGE and module.startswith(entry + "."))
            if covers and len(entry) > best_length:
                best, best_length = index, len(entry)
    return best


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return root


def test_the_import_graph_sees_function_level_relative_and_package_imports(tmp_path):
    root = _write_package(tmp_path, {
        "__init__.py": "",
        "errors.py": "",
        "data/__init__.py": "from taichi_pvd.data.scene import Scene\n",
        "data/scene.py": "from .ndc import NdcSpace\nfrom .. import errors\n",
        "data/ndc.py": "import numpy\n",
        "kernels/__init__.py": "",
        "kernels/marching.py": "def f():\n    from ..data import load_scene\n",
        "kernels/contraction.py": "import taichi_pvd.data.ndc\n",
    })
    graph = import_graph(root)
    assert graph["taichi_pvd.data"] == {"taichi_pvd.data.scene": 1}
    # Relative imports resolve; `from .. import errors` names a module; the package's own
    # __init__ is not entered again from inside it.
    assert graph["taichi_pvd.data.scene"] == {"taichi_pvd.data.ndc": 1, "taichi_pvd.errors": 2}
    assert graph["taichi_pvd.data.ndc"] == {}
    # A function-level import counts; `from pkg import name` of a non-module imports `pkg`.
    assert graph["taichi_pvd.kernels.marching"] == {"taichi_pvd.data": 2}
    # Importing a module of another package runs that package's __init__ (and its re-exports).
    assert graph["taichi_pvd.kernels.contraction"] == {"taichi_pvd.data": 1, "taichi_pvd.data.ndc": 1}


def test_a_re_export_that_closes_a_loop_is_a_cycle(tmp_path):
    root = _write_package(tmp_path, {
        "__init__.py": "",
        "data/__init__.py": "from taichi_pvd.data.scene import Scene\n",
        "data/scene.py": "from taichi_pvd.kernels.contraction import contract\n",
        "kernels/__init__.py": "",
        "kernels/contraction.py": "from taichi_pvd.data.ndc import NdcSpace\n",
        "data/ndc.py": "",
    })
    assert find_cycle(import_graph(root)) == ["taichi_pvd.data", "taichi_pvd.data.scene",
                                              "taichi_pvd.kernels.contraction", "taichi_pvd.data"]


def test_find_cycle_returns_the_loop():
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 1}}) is None


def test_taichi_pvd_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_belongs_to_a_layer():
    unplaced = sorted(m for m in import_graph() if layer_of(m) is None)
    assert not unplaced, f"add these modules to LAYERS in {Path(__file__).name}: {unplaced}"


@pytest.mark.parametrize("module, layer", [("taichi_pvd.kernels.marching", "kernels"),
                                           ("taichi_pvd.data", "data"), ("taichi_pvd", "foundation"),
                                           ("taichi_pvd.demo_job", "jobs"), ("taichi_pvd.datum", None)])
def test_layer_of_takes_packages_whole_and_top_level_modules_by_name(module, layer):
    index = layer_of(module)
    assert (None if index is None else LAYERS[index][0]) == layer


def upward_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    """The imports of ``graph`` that go to a higher layer than their importer's, described."""
    upward = []
    for module, edges in sorted(graph.items()):
        here = layer_of(module)
        for imported, line in sorted(edges.items()):
            there = layer_of(imported)
            if here is not None and there is not None and there > here:
                upward.append(f"{module} (line {line}, {LAYERS[here][0]}) imports {imported} "
                              f"({LAYERS[there][0]})")
    return upward


def test_an_import_from_a_higher_layer_is_reported():
    graph = {"taichi_pvd.data.scene": {"taichi_pvd.data.ndc": 1, "taichi_pvd.errors": 2,
                                       "taichi_pvd.rendering.inference": 3},
             "taichi_pvd.rendering.inference": {"taichi_pvd.kernels.marching": 5}}
    assert upward_imports(graph) == ["taichi_pvd.data.scene (line 3, data) imports "
                                     "taichi_pvd.rendering.inference (rendering)"]


def test_imports_go_to_the_same_layer_or_below():
    upward = upward_imports(import_graph())
    order = " -> ".join(name for name, _ in LAYERS)
    assert not upward, f"imports against the layer order {order}:\n" + "\n".join(upward)
