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
    ("foundation", ("taichi_pvd", "taichi_pvd.errors", "taichi_pvd.backend", "taichi_pvd.metrics",
                    "taichi_pvd.option_types")),
    ("data", ("taichi_pvd.data",)),
    ("kernels", ("taichi_pvd.kernels",)),
    ("fields", ("taichi_pvd.fields",)),
    ("rendering", ("taichi_pvd.rendering",)),
    ("io", ("taichi_pvd.io",)),
    ("presets", ("taichi_pvd.presets",)),
    ("training", ("taichi_pvd.training",)),
    ("distill", ("taichi_pvd.distill",)),
    ("jobs", ("taichi_pvd.evaluation", "taichi_pvd.run_info", "taichi_pvd.plots", "taichi_pvd.demo_job")),
]


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (source file, whether it is a package's ``__init__``)."""
    modules = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
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


def import_graph() -> dict[str, dict[str, int]]:
    """Module -> {imported taichi_pvd module: line of the import statement}."""
    modules = _modules()
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


def test_the_import_graph_sees_module_function_level_and_package_imports():
    graph = import_graph()
    assert "taichi_pvd.data.scene" in graph["taichi_pvd.data.transforms"]
    assert "taichi_pvd.rendering.inference" in graph["taichi_pvd.demo_job"]  # inside a method
    assert "taichi_pvd.backend" in graph["taichi_pvd.rendering.inference"]  # from .. import backend
    # `from ..data import generate_rays` runs the package's __init__ and its re-exports.
    assert "taichi_pvd.data" in graph["taichi_pvd.rendering.inference"]
    # Importing a module of another package runs that package's __init__ first.
    assert "taichi_pvd.data" in graph["taichi_pvd.kernels.contraction"]
    assert "taichi_pvd.data" not in graph["taichi_pvd.data.llff"]


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


def test_imports_go_to_the_same_layer_or_below():
    upward = []
    for module, edges in sorted(import_graph().items()):
        here = layer_of(module)
        for imported, line in sorted(edges.items()):
            there = layer_of(imported)
            if here is not None and there is not None and there > here:
                upward.append(f"{module} (line {line}, {LAYERS[here][0]}) imports {imported} "
                              f"({LAYERS[there][0]})")
    order = " -> ".join(name for name, _ in LAYERS)
    assert not upward, f"imports against the layer order {order}:\n" + "\n".join(upward)
