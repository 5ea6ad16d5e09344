"""Mutation testing of the engine's core modules: do the tests notice when the code is wrong?

Each mutant changes one operator or constant in one module (< to <=, == to !=, + to -, and to or, a whole
number n to n + 1, True to False, a `not` dropped), in a copy of the project, and runs that module's
fast tests there. A mutant the tests fail on is killed; one they pass is a survivor, printed with its
line so a test can be written for it (or the mutant shown to be equivalent). The working tree is never
written.

    python -m tools.mutants                      # every target, up to 30 mutants each
    python -m tools.mutants --max 0 engine/workflows/grid.py   # every mutant of one module
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module -> the tests that exercise it without loading a model (seconds per run, not minutes)
TARGETS: dict[str, list[str]] = {
    "engine/workflows/grid.py": ["tests/test_grid.py"],
    "engine/base/images.py": ["tests/test_images.py", "tests/test_properties.py"],
    "engine/workflows/checks.py": ["tests/test_requests.py", "tests/test_properties.py"],
    "engine/pipelines/schedulers.py": ["tests/test_properties.py"],
}

SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
    ast.And: ast.Or,
    ast.Or: ast.And,
}


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int  # the index-th mutation point of the module, in ast.walk order
    line: int
    change: str


def _points(tree: ast.Module) -> list[tuple[ast.AST, str]]:
    """Every place one mutation applies, with what it does; docstrings and type annotations are left alone."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skip.add(id(body[0].value))  # a docstring
        for annotation in (getattr(node, "annotation", None), getattr(node, "returns", None)):
            if annotation is not None:
                skip.update(id(n) for n in ast.walk(annotation))
    points: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare):
            first = type(node.ops[0])
            if first in SWAPS:
                points.append((node, f"{first.__name__} -> {SWAPS[first].__name__}"))
        elif isinstance(node, ast.BinOp | ast.BoolOp) and type(node.op) in SWAPS:
            points.append((node, f"{type(node.op).__name__} -> {SWAPS[type(node.op)].__name__}"))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            points.append((node, f"{node.value} -> {node.value + 1}"))
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            points.append((node, f"{node.value} -> {not node.value}"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            points.append((node, "not x -> x"))
    return points


def mutants_of(module: str) -> list[Mutant]:
    tree = ast.parse((ROOT / module).read_text())
    return [Mutant(module, i, getattr(node, "lineno", 0), change) for i, (node, change) in enumerate(_points(tree))]


def mutated_source(mutant: Mutant) -> str:
    """The module's source with that one change (as ast.unparse writes it)."""
    tree = ast.parse((ROOT / mutant.module).read_text())
    node, _ = _points(tree)[mutant.index]
    if isinstance(node, ast.Compare):
        node.ops[0] = SWAPS[type(node.ops[0])]()
    elif isinstance(node, ast.BinOp | ast.BoolOp):
        node.op = SWAPS[type(node.op)]()
    elif isinstance(node, ast.Constant):
        node.value = (not node.value) if type(node.value) is bool else node.value + 1
    elif isinstance(node, ast.UnaryOp):
        replacement = node.operand
        for parent in ast.walk(tree):  # put the operand where the `not` was
            for field, value in ast.iter_fields(parent):
                if value is node:
                    setattr(parent, field, replacement)
                elif isinstance(value, list) and node in value:
                    value[value.index(node)] = replacement
    return ast.unparse(tree)


def sample(items: list[Mutant], limit: int) -> list[Mutant]:
    """`limit` mutants spread evenly over the module (all of them with limit 0)."""
    if limit <= 0 or len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def run(mutants: list[Mutant], timeout: int) -> tuple[list[Mutant], list[Mutant]]:
    """Run each mutant's tests in a copy of the project; returns (killed, survived)."""
    killed: list[Mutant] = []
    survived: list[Mutant] = []
    with tempfile.TemporaryDirectory(prefix="mutants-") as scratch:
        copy = Path(scratch) / "project"
        ignore = shutil.ignore_patterns(".git", ".venv*", "__pycache__", "data", "docs", "*.egg-info", "build")
        shutil.copytree(ROOT, copy, ignore=ignore)
        for mutant in mutants:
            target = copy / mutant.module
            original = target.read_text()
            target.write_text(mutated_source(mutant))
            started = time.perf_counter()
            try:
                tests = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TARGETS[mutant.module]]
                result = subprocess.run(tests, cwd=copy, capture_output=True, timeout=timeout)
                alive = result.returncode == 0
            except subprocess.TimeoutExpired:
                alive = False  # a mutant that hangs the tests is caught by them
            finally:
                target.write_text(original)
            (survived if alive else killed).append(mutant)
            verdict = "SURVIVED" if alive else "killed"
            seconds = time.perf_counter() - started
            print(f"{verdict:8} {mutant.module}:{mutant.line} {mutant.change} ({seconds:.0f}s)", flush=True)
    return killed, survived


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", default=list(TARGETS), help="modules to mutate (default: all)")
    parser.add_argument("--max", type=int, default=30, help="mutants per module, spread evenly (0: all)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds one test run may take")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in TARGETS]
    if unknown:
        parser.error(f"no tests are mapped for {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    chosen = [m for module in args.modules for m in sample(mutants_of(module), args.max)]
    killed, survived = run(chosen, args.timeout)
    print(f"\n{len(chosen)} mutants: {len(killed)} killed, {len(survived)} survived")
    for module in args.modules:
        mine = [m for m in chosen if m.module == module]
        alive = [m for m in survived if m.module == module]
        print(f"  {module}: {len(mine) - len(alive)}/{len(mine)} killed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
