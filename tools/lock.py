"""The lock: what the README, CI and a Space install, exact versions with hashes, compiled by uv from the
compatible ranges in pyproject.toml.

    python -m tools.lock             # after a range changes: keeps every pin its range still allows
    python -m tools.lock --upgrade   # every pin to the newest release its range allows (then run the tests)

| lock file | what it holds | for |
|---|---|---|
| requirements-dev.txt | the app's ranges + the `ray` and `dev` extras | the tests, CI |
| requirements.txt | the app's ranges, at requirements-dev.txt's pins | `pip install -r requirements.txt`, a Space |
| requirements-ray.txt | + the `ray` extra, at requirements-dev.txt's pins | the Ray Serve backend |
| requirements-zerogpu.txt | the app's ranges on ZeroGPU: Python 3.12, Linux x86_64, torch 2.11 | a ZeroGPU Space |

The first three are for Linux, Windows and macOS on Python 3.11 and 3.12 (pyproject.toml's
[tool.uv] environments). Each file is whole (no `-r` lines): pip in hash-checking mode installs exactly it,
and the app's locks hold no version CI did not install. tests/test_lock.py fails
when a pin and its range disagree; `python -m tools.latest` tries the newest releases before the lock moves.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tomllib  # novm: the locks are for Python 3.11 and newer, and so is this tool
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python -m tools.lock"

# ZeroGPU supports only some torch releases (https://huggingface.co/docs/hub/spaces-zerogpu) and runs
# Python 3.10 or 3.12; its images bring `spaces` themselves.
ZEROGPU_PINS = ("torch==2.11.0", "torchvision==0.26.0")
ZEROGPU_PYTHON = "3.12"


@dataclass(frozen=True)
class Lock:
    file: str
    extras: tuple[str, ...] = ()
    keeps: str | None = None  # an earlier lock whose pins this one keeps
    python: str = "3.11"  # the oldest Python the lock is for (what this project's machines and CI run)
    platform: str | None = None  # None: every OS and machine (uv's universal resolution)
    pins: tuple[str, ...] = ()  # pins that are not the newest the ranges allow


# The whole set first: the others keep its pins, so every pin in every lock is one CI installed and tested
LOCKS = (
    Lock("requirements-dev.txt", extras=("ray", "dev")),
    Lock("requirements.txt", keeps="requirements-dev.txt"),
    Lock("requirements-ray.txt", extras=("ray",), keeps="requirements-dev.txt"),
    Lock(
        "requirements-zerogpu.txt",
        keeps="requirements.txt",
        python=ZEROGPU_PYTHON,
        platform="x86_64-manylinux_2_28",
        pins=ZEROGPU_PINS,
    ),
)


def read_pins(path: Path) -> dict[str, dict[str, str]]:
    """A lock's pins: package (normalised) -> {version: its environment marker, "" for every environment}.
    Raises ValueError on a requirement that is not one exact version with its hashes."""
    pins: dict[str, dict[str, str]] = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        text, *hashes = line.split(" --hash=")
        requirement = Requirement(text)
        (spec,) = requirement.specifier if len(requirement.specifier) == 1 else (None,)
        if spec is None or spec.operator != "==" or not hashes:
            raise ValueError(f"{path.name}: {text.strip()!r} is not one exact version with hashes")
        marker = str(requirement.marker) if requirement.marker else ""
        pins.setdefault(canonicalize_name(requirement.name), {})[spec.version] = marker
    return pins


def ranges(extras: tuple[str, ...] = ()) -> dict[str, str]:
    """pyproject.toml's compatible ranges for the app and the extras named: package (normalised) -> specifier."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *(line for extra in extras for line in project["optional-dependencies"][extra])]
    return {canonicalize_name(r.name): str(r.specifier) for r in map(Requirement, lines)}


def disagreements(lock: Lock, pins: dict[str, dict[str, str]]) -> list[str]:
    """Where a lock and the ranges it was compiled from disagree: a range with no pin, a pin outside its range,
    a pin the lock itself asks for (ZeroGPU's torch) that it does not hold. Empty when they agree."""
    found = []
    for name, specifier in ranges(lock.extras).items():
        if name not in pins:
            found.append(f"{lock.file}: {name}{specifier} has no pin")
        for version in pins.get(name, {}):
            if version not in Requirement(f"{name}{specifier}").specifier:
                found.append(f"{lock.file}: {name}=={version} is outside its range {specifier}")
    for pin in map(Requirement, lock.pins):
        held = set(pins.get(canonicalize_name(pin.name), {}))
        if not held or not all(version in pin.specifier for version in held):
            found.append(f"{lock.file}: {pin} asked for, {sorted(held) or 'nothing'} held")
    return found


def uv() -> str:
    """uv from this environment (requirements-dev.txt installs it), else from PATH."""
    here = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if here is None:
        raise SystemExit("uv is not installed: pip install -r requirements-dev.txt (or pip install uv)")
    return here


def compile_command(lock: Lock, out: Path, *, upgrade: bool = False) -> list[str]:
    """The `uv pip compile` call that writes `lock` to `out`."""
    command = [uv(), "pip", "compile", "pyproject.toml", "--quiet", "--generate-hashes"]
    command += ["--custom-compile-command", COMMAND, "--python-version", lock.python, "-o", str(out)]
    command += ["--python-platform", lock.platform] if lock.platform else ["--universal"]
    for extra in lock.extras:
        command += ["--extra", extra]
    if upgrade:
        command.append("--upgrade")
    return command


def write(lock: Lock, folder: Path, *, upgrade: bool = False) -> Path:
    """Compile one lock from the pyproject.toml in `folder` into that folder (ROOT: the project's own locks)."""
    out = folder / lock.file
    if lock.keeps:  # uv keeps the pins it finds in the output file where they still resolve: start from those
        shutil.copyfile(folder / lock.keeps, out)
    command = compile_command(lock, out, upgrade=upgrade)
    with tempfile.TemporaryDirectory() as scratch:
        if lock.pins:
            pins = Path(scratch) / "pins.txt"
            pins.write_text("\n".join(lock.pins) + "\n")
            command += ["--constraint", str(pins)]
        subprocess.run(command, cwd=folder, check=True, timeout=900)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compile requirements*.txt from pyproject.toml's ranges with uv.")
    parser.add_argument("--upgrade", action="store_true", help="move every pin to the newest its range allows")
    args = parser.parse_args(argv)
    for lock in LOCKS:
        print(f"{lock.file}: {'upgrading' if args.upgrade else 'refreshing'}", flush=True)
        write(lock, ROOT, upgrade=args.upgrade)
    print("now run the tests: pip install -r requirements-dev.txt && python -m pytest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
