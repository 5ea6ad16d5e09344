"""Family adapters: every quirk of a model family lives in engine/models/families, and the code that exported
scripts copy (engine.pipelines.portable, the families' prompt encoders) stands on its own."""

from __future__ import annotations

import ast
import dis
import inspect
from pathlib import Path

import pytest

import engine.pipelines.portable
from engine.models.catalog import CATALOG
from engine.models.families import Family, get_family, module_name

ROOT = Path(__file__).resolve().parent.parent
DIFFUSION = sorted({spec.family for spec in CATALOG.values() if "depth" not in spec.kinds})


@pytest.mark.parametrize("name", DIFFUSION)
def test_every_catalog_family_has_its_adapter_module(name):
    family = get_family(name)
    assert isinstance(family, Family) and family.name == name
    assert (ROOT / (module_name(name).replace(".", "/") + ".py")).is_file()


def test_an_unknown_family_is_refused_by_name():
    with pytest.raises(ValueError, match=r"'\.\./etc' is not a model family's name"):
        get_family("../etc")
    with pytest.raises(ValueError, match="family 'midas' has no adapter"):
        get_family("midas")


def family_branches(source: str) -> list[int]:
    """Lines comparing a `.family` with a string: a family's quirk written outside its adapter."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names_family = any(isinstance(o, ast.Attribute) and o.attr == "family" for o in operands)
            if names_family and any(isinstance(o, ast.Constant) and isinstance(o.value, str) for o in operands):
                lines.append(node.lineno)
    return lines


def test_no_module_outside_the_adapters_branches_on_a_family_name():
    modules = [p for folder in ("engine", "ui") for p in (ROOT / folder).rglob("*.py") if "families" not in p.parts]
    assert len(modules) > 20
    found = {str(p.relative_to(ROOT)): family_branches(p.read_text()) for p in modules}
    assert {path: lines for path, lines in found.items() if lines} == {}


def test_the_scan_finds_a_family_branch():
    source = 'x = 1\nif job.spec.family == "kandinsky22":\n    pass\nif "sd15" != spec.family:\n    pass\n'
    assert family_branches(source) == [2, 4]


def globals_read(function) -> set[str]:
    """Global names a function (and the functions inside it) reads."""
    names: set[str] = set()
    codes = [inspect.unwrap(function).__code__]
    while codes:
        code = codes.pop()
        names |= {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
        codes += [const for const in code.co_consts if inspect.iscode(const)]
    return names


PORTABLE = [
    *(
        f
        for _, f in inspect.getmembers(engine.pipelines.portable, inspect.isfunction)
        if f.__module__ == "engine.pipelines.portable"
    ),
    *(f for name in DIFFUSION for f in (get_family(name).encode_prompt, get_family(name).weighted_prompt) if f),
]


@pytest.mark.parametrize("function", PORTABLE, ids=lambda f: f"{f.__module__}.{f.__name__}")
def test_portable_functions_read_only_torch_contextlib_and_builtins(function):
    """engine.recipes.script copies these by their source into scripts that import torch and contextlib only."""
    import builtins

    assert globals_read(function) - {"torch", "contextlib"} - set(dir(builtins)) == set()


def test_the_globals_check_sees_a_project_name():
    from engine.workflows.sweep import _encode

    assert "weighted_embeddings" in globals_read(_encode)
