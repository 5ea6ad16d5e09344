"""Replaying an exported script as `python recipe.py OUT INIT ...` does.

A fresh interpreter per script costs the import of torch and diffusers every time (most of a replay on the
twins), and proves one thing a shared one does not: that the script needs nothing a former script left
behind in the process. So each workflow keeps replays in a fresh interpreter (`fresh=True`: a user's run,
exactly), and the others run in one worker interpreter per test process that runs each script with runpy
in a new `__main__` namespace, its own sys.argv and working folder: what the script names, it must still
import and define itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

WORKER = r"""
import contextlib, json, os, runpy, sys, traceback
answers = sys.stdout
for line in sys.stdin:
    job = json.loads(line)
    home, environment = os.getcwd(), dict(os.environ)
    try:
        os.environ.update(job["env"])
        os.chdir(job["cwd"])
        sys.argv = [job["script"], *job["args"]]
        with contextlib.redirect_stdout(sys.stderr):  # what the script prints stays out of the answers
            runpy.run_path(job["script"], run_name="__main__")
        answer = {"ok": True}
    except SystemExit as exit:
        answer = {"ok": exit.code in (None, 0), "error": f"exit status {exit.code}"}
    except BaseException:
        answer = {"ok": False, "error": traceback.format_exc()[-4000:]}
    finally:
        os.chdir(home)
        os.environ.clear()
        os.environ.update(environment)
    print(json.dumps(answer), file=answers, flush=True)
"""

_worker: subprocess.Popen | None = None
_lock = threading.Lock()


class ScriptFailed(AssertionError):
    """An exported script raised: its traceback."""


def _started() -> subprocess.Popen:
    global _worker
    if _worker is None or _worker.poll() is not None:
        _worker = subprocess.Popen(
            [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
    return _worker


def replay(
    script: Path,
    *args: str | Path,
    cwd: Path | None = None,
    fresh: bool = False,
    timeout: int = 600,
    env: dict[str, str] | None = None,
) -> None:
    """Run `script` with `args` (paths are taken relative to `cwd`, default the script's folder), with `env`
    added to the environment (STUDIO_MODELS_DIR, say, as its user would set it).

    Raises:
        ScriptFailed: the script raised (or exited non-zero), with its traceback.
    """
    script, where = Path(script).resolve(), Path(cwd or Path(script).parent).resolve()
    argv = [str(arg) for arg in args]
    if fresh:
        done = subprocess.run(
            [sys.executable, str(script), *argv],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
        if done.returncode != 0:
            raise ScriptFailed(done.stderr[-4000:])
        return
    with _lock:
        worker = _started()
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(
            json.dumps({"script": str(script), "args": argv, "cwd": str(where), "env": env or {}}) + "\n"
        )
        line = worker.stdout.readline()
    if not line:
        raise ScriptFailed("the script worker died")
    answer = json.loads(line)
    if not answer["ok"]:
        raise ScriptFailed(answer["error"])


def stop_worker() -> None:
    """End the worker: its input closed, it leaves its loop (conftest calls this when the session ends)."""
    global _worker
    if _worker is not None and _worker.poll() is None and _worker.stdin is not None:
        _worker.stdin.close()
        _worker.wait(timeout=60)
    _worker = None
