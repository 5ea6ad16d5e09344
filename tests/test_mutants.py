"""The mutation-testing tool makes real, single changes (tools/mutants.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from tools.mutants import TARGETS, mutants_of, mutated_source, sample

ROOT = Path(__file__).resolve().parents[1]


def test_every_mutant_is_one_change_that_still_compiles():
    for module in TARGETS:
        original = ast.unparse(ast.parse((ROOT / module).read_text()))
        mutants = mutants_of(module)
        assert len(mutants) >= 10, module
        for mutant in sample(mutants, 12):
            source = mutated_source(mutant)
            compile(source, module, "exec")
            assert source != original, mutant
            changed = [a for a, b in zip(original.splitlines(), source.splitlines(), strict=True) if a != b]
            assert len(changed) == 1, (mutant, changed)  # one line differs, nothing else moved
    kinds = {m.change.split(" -> ")[0] for module in TARGETS for m in mutants_of(module)}
    assert {"Lt", "Eq", "Add", "And", "not x", "1", "True"} <= kinds
