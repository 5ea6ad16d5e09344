"""docs/ARCHITECTURE.md stays true: every file and name it points to exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "ARCHITECTURE.md").read_text()


def test_every_file_the_map_names_exists_unless_it_is_a_new_one():
    named = re.findall(r"`((?:engine|ui|tests|benchmarks|tools)/[\w/.<>]+\.py)`( \(new\))?", DOC)
    assert len(named) > 15
    missing = [path for path, new in named if not new and "<" not in path and not (ROOT / path).is_file()]
    assert missing == []


def test_every_module_function_the_map_names_exists():
    """`engine/workflows/basic.py`'s names, as the map writes them: `module.py: name` or `module: name`."""
    named = re.findall(r"`((?:engine|ui)/[\w/]+)\.py: (\w+)`", DOC)
    assert len(named) >= 3
    missing = [
        f"{module}: {name}"
        for module, name in named
        if not hasattr(importlib.import_module(module.replace("/", ".")), name)
    ]
    assert missing == []


def test_the_engine_imports_no_gradio():
    """The layer rule the map states: every engine module imports without Gradio (a script can use the engine)."""
    import subprocess
    import sys

    modules = sorted(
        str(path.relative_to(ROOT).with_suffix("")).replace("/", ".")
        for path in (ROOT / "engine").rglob("*.py")
        if path.name != "__init__.py" or path.parent.name == "families"
    )
    assert "engine.workflows.registry" in modules and "engine.models.families.sd15" in modules
    report = "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gradio'))"
    code = f"import sys; import {', '.join(modules)}; {report}"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
