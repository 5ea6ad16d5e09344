"""Know before users do: install the newest releases the ranges allow in a fresh venv and run the fast tests.

    python -m tools.latest              # prints what moved against the lock, then what broke (exit 1) or not
    python -m tools.latest --keep DIR   # keep the venv and the tree in DIR to look into a failure
    python -m tools.latest tests/test_lora.py   # only these tests, on the newest releases

It never touches the working tree or its locks: the tracked files are copied to a scratch folder, the lock is
compiled there with every pin upgraded (tools.lock's own command with --upgrade), and that venv installs it.
Not part of .ci/run, which must install the same set every time. Run it before refreshing the lock with
`python -m tools.lock --upgrade`, and whenever a library the app leans on (diffusers, transformers, peft,
gradio, torch) has released; record the result in benchmarks/RESULTS.md ("Newest releases").
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

from tools.lock import LOCKS, ROOT, read_pins, write

DEV = next(lock for lock in LOCKS if "dev" in lock.extras)

# The suite less what proves the app's own serving rather than a library's behaviour (browser, Ray, load,
# mutation testing) and the slow script replays: what a new diffusers, transformers, peft or gradio can break.
SLOW = ("tests/e2e", "tests/test_ray.py", "tests/test_ray_app.py", "tests/test_load.py", "tests/test_mutants.py")


def moved(old: dict[str, dict[str, str]], new: dict[str, dict[str, str]]) -> list[str]:
    """One line per package whose pinned versions differ between two locks."""
    lines = []
    for name in sorted(old.keys() | new.keys()):
        before, after = sorted(old.get(name, {})), sorted(new.get(name, {}))
        if before != after:
            lines.append(f"{name}: {', '.join(before) or '(new)'} -> {', '.join(after) or '(gone)'}")
    return lines


def copy_tree(into: Path) -> Path:
    """The tracked files (and untracked, not ignored ones) of the working tree, as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def failures(output: str) -> list[str]:
    """pytest's FAILED / ERROR lines (-rfE), the test and the first line of what went wrong."""
    return [line for line in output.splitlines() if re.match(r"(FAILED|ERROR) ", line)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install the newest allowed releases and run the fast tests.")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds the tests may take")
    parser.add_argument("tests", nargs="*", help="test files or ids to run instead of the fast tests")
    args = parser.parse_args(argv)
    scratch = Path(args.keep or tempfile.mkdtemp(prefix="studio-latest-"))
    try:
        tree = copy_tree(scratch / "tree")
        write(DEV, tree, upgrade=True)
        changes = moved(read_pins(ROOT / DEV.file), read_pins(tree / DEV.file))
        print(f"{len(changes)} packages would move from {DEV.file}:")
        print("\n".join(f"  {line}" for line in changes) or "  (none: the lock is at the newest)", flush=True)
        venv.create(scratch / "venv", with_pip=True)
        python = str(scratch / "venv" / "bin" / "python")
        started = time.monotonic()
        pip = [python, "-m", "pip", "install", "--quiet", "-r", str(tree / DEV.file)]
        subprocess.run(pip, check=True, timeout=3600)
        print(f"installed in {time.monotonic() - started:.0f} s", flush=True)
        chosen = args.tests or [f"--ignore={path}" for path in SLOW]
        started = time.monotonic()
        tests = subprocess.run(
            [python, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *chosen],
            cwd=tree,
            env={**os.environ, "COLUMNS": "240"},  # pytest cuts its summary lines at the terminal's width
            capture_output=True,
            text=True,
            timeout=args.timeout,
        )
        summary = tests.stdout.strip().splitlines()[-1:] or ["(pytest printed nothing)"]
        print(f"fast tests on the newest releases, {time.monotonic() - started:.0f} s: {summary[0]}")
        broken = failures(tests.stdout)
        print("\n".join(f"  {line}" for line in broken) or "  nothing broke", flush=True)
        if tests.returncode != 0 and not broken:
            print(tests.stdout[-3000:], tests.stderr[-3000:])
        return 0 if tests.returncode == 0 else 1
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
