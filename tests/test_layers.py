"""Imports go down the layers, and the folders are the layers.

    engine/base/       what every layer uses: settings, error wording, image files, fork safety
    engine/models/     what a checkpoint is
    engine/pipelines/  running one pipeline call
    engine/recipes/    what ran, as data and as a script
    engine/workflows/  what a user asks
    engine/*.py        the Engine and its hosting backends
    ui/                Gradio (above all of engine/)

Every import counts, the ones a module hides inside functions and under TYPE_CHECKING too (that is how the
circles hid): none goes up a layer, and none makes a circle inside one. And a workflow owns everything that
names it: no module outside a workflow compares a recipe's or a request's workflow with a name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

WINGS = ("base", "models", "pipelines", "recipes", "workflows")  # bottom to top; engine/*.py above them

WORKFLOW_MODULES = (
    "engine/workflows/basic.py",
    "engine/workflows/sweep.py",
    "engine/workflows/chain.py",
    "engine/workflows/depth.py",
)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str, root: Path = ROOT) -> dict[str, set[str]]:
    """Each module of a package -> the package's modules it imports anywhere in its source."""
    graph: dict[str, set[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
        graph[module_name(path, root)] = {name for name in names if name.split(".")[0] == package}
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


def layer(module: str) -> int:
    """A module's layer: its wing's place in WINGS; the engine package itself is at the bottom, engine/*.py
    at the top."""
    parts = module.split(".")
    if len(parts) == 1:
        return 0
    return WINGS.index(parts[1]) if parts[1] in WINGS else len(WINGS)


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a module to one in a higher layer."""
    return [
        f"{module} -> {name}"
        for module, names in graph.items()
        for name in sorted(names)
        if layer(name) > layer(module)
    ]


def test_no_engine_import_goes_up_a_layer():
    graph = import_graph("engine")
    assert {layer(module) for module in graph} == set(range(len(WINGS) + 1))  # every wing has modules
    assert upward(graph) == []


def test_an_import_up_a_layer_is_found_inside_a_function_and_under_type_checking(tmp_path):
    files = {
        "engine/__init__.py": "",
        "engine/core.py": "from engine.models import catalog\n",
        "engine/pipelines/cache.py": "from engine.models.catalog import CATALOG\n",
        "engine/models/catalog.py": "def f():\n    from engine.pipelines.cache import get\n",
        "engine/models/tiny.py": "if TYPE_CHECKING:\n    from engine.recipes.recipe import Recipe\n",
        "engine/recipes/recipe.py": "",
    }
    for name, source in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
    assert upward(import_graph("engine", tmp_path)) == [
        "engine.models.catalog -> engine.pipelines.cache",
        "engine.models.tiny -> engine.recipes.recipe",
    ]
    assert layer("engine") == layer("engine.base.errors") == 0 and layer("engine.core") == len(WINGS)


def test_the_circle_finder_finds_a_circle_hidden_in_a_function():
    source = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(source) == [{"a", "b", "c"}]
    assert circles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", ["engine", "ui"])
def test_imports_make_no_circle(package):
    graph = import_graph(package)
    assert len(graph) > 10
    assert circles(graph) == [], "an import circle: move the shared piece down a layer, never hide the import"


def workflow_branches(source: str) -> list[int]:
    """Lines comparing a `workflow` (a name or an attribute) with a string: a workflow's business written
    outside it."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names = any(
                (isinstance(o, ast.Attribute) and o.attr == "workflow")
                or (isinstance(o, ast.Name) and o.id == "workflow")
                for o in operands
            )
            if names and any(isinstance(o, ast.Constant) and isinstance(o.value, str) for o in operands):
                lines.append(node.lineno)
    return lines


def test_the_scan_finds_a_workflow_branch():
    source = (
        'if recipe.workflow == "chain":\n    pass\nif workflow != "sweep":\n    pass\nif kind == "depth":\n    pass\n'
    )
    assert workflow_branches(source) == [1, 3]


def test_no_module_outside_a_workflow_branches_on_a_workflow_name():
    """The recipe checks, the script export and the downloads ask the registry (engine.workflows.registry), which asks
    each workflow's registration."""
    modules = [p for folder in ("engine", "ui") for p in sorted((ROOT / folder).rglob("*.py"))]
    found = {str(p.relative_to(ROOT)): workflow_branches(p.read_text()) for p in modules}
    outside = {path: lines for path, lines in found.items() if lines and path not in WORKFLOW_MODULES}
    assert outside == {}
