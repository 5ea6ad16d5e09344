"""Imports go down the layers: no import circle among the app's modules, counting the imports a module hides
inside functions and under TYPE_CHECKING (that is how the circles hid).

One circle is left, the recipe layer knowing the workflows (engine.recipe_schema reads every workflow's extras,
engine.script finds a recipe's writer in the registry, and each workflow imports both); it is cut when engine/
moves into its wings (issue 33). Until then it is named here, so a circle that grows or a new one fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RECIPES_KNOW_WORKFLOWS = {
    "engine.basic",
    "engine.chain",
    "engine.depth",
    "engine.recipe",
    "engine.recipe_schema",
    "engine.script",
    "engine.sweep",
    "engine.workflow",
    "engine.workflows",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str) -> dict[str, set[str]]:
    """Each module of a package -> the package's modules it imports anywhere in its source."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
        graph[module_name(path)] = {name for name in names if name.split(".")[0] == package}
    return {module: {name for name in names if name in graph and name != module} for module, names in graph.items()}


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            module, todo = work[-1]
            for name in todo:
                if name not in index:
                    index[name] = low[name] = len(index)
                    stack.append(name)
                    work.append((name, iter(sorted(graph[name]))))
                    break
                if name in stack:
                    low[module] = min(low[module], index[name])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[module])
                if low[module] == index[module]:
                    component = set()
                    while True:
                        name = stack.pop()
                        component.add(name)
                        if name == module:
                            break
                    if len(component) > 1:
                        found.append(component)
    return found


def test_the_circle_finder_finds_a_circle_hidden_in_a_function():
    source = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(source) == [{"a", "b", "c"}]
    assert circles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", ["engine", "ui"])
def test_imports_make_no_circle_but_the_one_being_cut(package):
    found = circles(import_graph(package))
    expected = [RECIPES_KNOW_WORKFLOWS] if package == "engine" else []
    assert found == expected, "an import circle: move the shared piece down a layer, never hide the import"
