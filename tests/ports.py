"""A free TCP port on the loopback interface, and app.py started as a newcomer starts it, for the tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without Hugging Face, Studio and Gradio settings, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "STUDIO_", "GRADIO_", "SPACES_"))}
    env.update(values)
    return env


@contextlib.contextmanager
def serving(args: list[str], env: dict[str, str], log: Path, *, timeout: float = 180) -> Iterator[str]:
    """`python app.py ARGS` with `env` (its port in STUDIO_PORT), output to `log`; yields the page's HTML once
    it answers, and stops the server after."""
    import httpx

    url = f"http://127.0.0.1:{env['STUDIO_PORT']}/"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "app.py", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + timeout
            page = None
            while page is None:
                assert process.poll() is None, f"app.py exited: {log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"app.py did not answer within {timeout} s"
                try:
                    page = httpx.get(url, timeout=5).text
                except httpx.HTTPError:
                    time.sleep(0.5)
            yield page
        finally:
            process.terminate()
            process.wait(timeout=60)
