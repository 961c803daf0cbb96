"""The package's layers, checked from its source with ``ast``: no import cycle, and every module
imports only its own layer or lower ones.

Imports at module level and inside functions count (a function-level import is still a
dependency); imports under ``if TYPE_CHECKING:`` count for the layer order but not for cycles
(they never run). The checks are shown to fail on a small synthetic graph too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "comfy_widgets"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# lowest first; a module may import its own layer and the layers before it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("errors", "states", "loops", "examples", "extras")),
    ("workflow", ("workflow",)),
    ("transport", ("transport",)),
    ("records", ("records",)),
    ("results", ("results",)),
    ("engine", ("engine",)),
    ("widgets", ("widgets",)),
    ("top", ("cli", "lab", "magics", "sim")),
]
FACADE = PACKAGE  # comfy_widgets/__init__.py sits above everything
# the engine records through the Recorder protocol only, never through one implementation
ENGINE_MAY_USE_OF_RECORDS = {f"{PACKAGE}.records", f"{PACKAGE}.records.recorder"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(name: str, source: str, is_package: bool, known: set[str]) -> list[tuple[str, bool]]:
    """(imported package module, type-checking only) for every import in ``source``."""
    found: list[tuple[str, bool]] = []
    package = name if is_package else name.rpartition(".")[0]

    def target(module: str) -> str | None:
        while module and module not in known:
            module = module.rpartition(".")[0]
        return module or None

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing_only)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    hit = target(alias.name)
                    if hit:
                        found.append((hit, typing_only))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module.split(".")[0] == PACKAGE:
                for alias in node.names:
                    hit = target(f"{module}.{alias.name}")
                    if hit:
                        found.append((hit, typing_only))
        for child in ast.iter_child_nodes(node):
            visit(child, typing_only)

    visit(ast.parse(source), False)
    return [(m, t) for m, t in found if m != name]


def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, list[tuple[str, bool]]]:
    """module -> its imports, from ``{module: (source, is_package)}``."""
    known = set(sources)
    return {
        name: imports_of(name, source, is_package, known)
        for name, (source, is_package) in sources.items()
    }


def package_graph() -> dict[str, list[tuple[str, bool]]]:
    return import_graph(
        {
            name: (path.read_text(), path.name == "__init__.py")
            for name, path in all_modules().items()
        }
    )


def find_cycle(graph: dict[str, list[tuple[str, bool]]]) -> list[str] | None:
    """One import cycle among runtime imports, as a list of modules, or None."""
    edges = {
        m: sorted({t for t, typing_only in deps if not typing_only}) for m, deps in graph.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for dep in edges.get(module, []):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state:
                cycle = dfs(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state:
            cycle = dfs(module)
            if cycle:
                return cycle
    return None


def layer_of(module: str) -> int | None:
    """Index of the module's layer in LAYERS; None for the facade."""
    if module == FACADE:
        return None
    first = module.split(".")[1]
    for index, (_, members) in enumerate(LAYERS):
        if first in members:
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


def layer_violations(graph: dict[str, list[tuple[str, bool]]]) -> list[str]:
    """Every import of a higher layer (or of the facade) from below it."""
    problems = []
    for module, deps in sorted(graph.items()):
        mine = layer_of(module)
        if mine is None:
            continue
        for dep, _ in deps:
            theirs = layer_of(dep)
            if theirs is None or theirs > mine:
                where = "the facade" if theirs is None else LAYERS[theirs][0]
                problems.append(f"{module} ({LAYERS[mine][0]}) imports {dep} ({where})")
            elif LAYERS[mine][0] == "engine" and LAYERS[theirs][0] == "records":
                if dep not in ENGINE_MAY_USE_OF_RECORDS:
                    problems.append(f"{module} (engine) imports {dep}, not the Recorder protocol")
    return problems


# --- the package ---------------------------------------------------------------------------


def test_every_module_is_in_a_layer():
    for module in all_modules():
        layer_of(module)


def test_no_import_cycle():
    assert find_cycle(package_graph()) is None


def test_layers_import_only_downwards():
    assert layer_violations(package_graph()) == []


def test_nothing_below_widgets_imports_them():
    graph = package_graph()
    widgets = LAYERS.index(next(layer for layer in LAYERS if layer[0] == "widgets"))
    below = [m for m in graph if (layer_of(m) is not None and layer_of(m) < widgets)]
    assert below  # the check looks at something
    offenders = [
        (m, dep) for m in below for dep, _ in graph[m] if dep.startswith(f"{PACKAGE}.widgets")
    ]
    assert offenders == []


def test_the_graph_sees_function_level_and_relative_imports():
    """The parser itself: what a module imports inside a function is found."""
    graph = package_graph()
    client_deps = {dep for dep, _ in graph[f"{PACKAGE}.engine.client"]}
    assert f"{PACKAGE}.engine.job" in client_deps  # imported inside Client.submit
    facade_deps = {dep for dep, _ in graph[FACADE]}
    assert f"{PACKAGE}.widgets.display" in facade_deps  # the facade registers the widgets


# --- the checks fail where they should ------------------------------------------------------


def synthetic(modules: dict[str, str]) -> dict[str, list[tuple[str, bool]]]:
    return import_graph({name: (source, False) for name, source in modules.items()})


def test_a_cycle_through_a_function_level_import_is_caught():
    graph = synthetic(
        {
            f"{PACKAGE}.engine.a": f"from {PACKAGE}.engine import b\n",
            f"{PACKAGE}.engine.b": f"def f():\n    from {PACKAGE}.engine.a import x\n",
        }
    )
    assert find_cycle(graph) is not None


def test_a_type_checking_import_is_no_cycle():
    graph = synthetic(
        {
            f"{PACKAGE}.engine.a": f"from {PACKAGE}.engine import b\n",
            f"{PACKAGE}.engine.b": (
                "from typing import TYPE_CHECKING\n"
                f"if TYPE_CHECKING:\n    from {PACKAGE}.engine.a import x\n"
            ),
        }
    )
    assert find_cycle(graph) is None


@pytest.mark.parametrize(
    ("importer", "source", "reason"),
    [
        ("engine.job", "def show():\n    from {p}.widgets.progress import View\n", "widgets"),
        ("transport.classic", "from {p}.engine.job import Job\n", "engine"),
        ("records.sqlite", "from {p}.results import frame\n", "results"),
        ("engine.job", "from {p}.records.sqlite import Store\n", "Recorder protocol"),
        ("workflow.load", "import {p}\n", "facade"),
        ("results.frame", "from .. import engine\n", "engine"),
    ],
)
def test_an_upward_import_is_caught(importer, source, reason):
    modules = {
        f"{PACKAGE}.{name}": ""
        for name in (
            "engine",
            "engine.job",
            "widgets.progress",
            "transport.classic",
            "records.sqlite",
            "results",
            "results.frame",
            "workflow.load",
        )
    }
    modules[f"{PACKAGE}.{importer}"] = source.format(p=PACKAGE)
    modules[FACADE] = ""
    graph = import_graph(
        {
            name: (text, name in (FACADE, f"{PACKAGE}.engine", f"{PACKAGE}.results"))
            for name, text in modules.items()
        }
    )
    problems = layer_violations(graph)
    assert len(problems) == 1 and reason in problems[0], problems
