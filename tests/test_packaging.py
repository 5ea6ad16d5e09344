"""The project's metadata: one version (engine.__version__), read by pyproject.toml and written into recipes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_built_package_carries_the_one_version_and_the_requirements(tmp_path):
    import engine
    from engine.recipes.recipe import APP_VERSION

    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        source.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for package in ("engine", "ui"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), "."]
    subprocess.run(build, cwd=source, check=True, timeout=300, capture_output=True)
    (wheel,) = out.glob("img2img_studio-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
        packed = set(archive.namelist())
    shipped = {
        str(path.relative_to(ROOT))
        for package in ("engine", "ui")
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert {"engine/models/families/sd15.py", "engine/models/hub_repos/README.md"} <= shipped
    assert shipped - packed == set()  # every module and data file of the app is in the wheel
    assert f"\nVersion: {engine.__version__}\n" in metadata
    assert engine.__version__ == APP_VERSION  # what every recipe records
    requires = [line.removeprefix("Requires-Dist:") for line in metadata.splitlines() if "Requires-Dist:" in line]
    required = {re.match(r"\s*([A-Za-z0-9_.-]+)", line).group(1) for line in requires}
    assert {"torch", "diffusers", "gradio"} <= required


def test_the_code_needs_no_python_newer_than_3_10():
    """ZeroGPU Spaces run Python 3.10 or 3.12 (this machine has only 3.11): vermin reads every module and
    names any syntax, module or function newer than 3.10 (it fails on `import tomllib`, a 3.11 module)."""
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    assert vermin, "vermin is in requirements-dev.txt"
    folders = ["engine", "ui", "app.py", "tools", "benchmarks", "tests"]
    result = subprocess.run(
        [vermin, "--target=3.10-", "--violations", "--no-tips", "--eval-annotations", *folders],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
