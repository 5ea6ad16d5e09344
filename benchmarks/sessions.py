"""Memory held per raw API call, with Gradio's default session capacity and with STUDIO_MAX_SESSIONS (issue 32).

    python -m benchmarks.sessions [--calls 1500] [--cap 500]

Two apps in tiny mode on 127.0.0.1, one after the other in this process: the first keeps Gradio's default of
10,000 sessions, the second STUDIO_MAX_SESSIONS=--cap. Each gets --calls raw `/gradio_api/call/recipe`
requests (each a session of its own, as curl or a script without a client makes them); prints the RSS added
per 1,000 calls and the sessions held. Bounded: --calls requests per app, each with a 120 s timeout.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from benchmarks.hardening import _free_port, _rss_mb


def measure(engine, calls: int, sessions: int) -> tuple[float, int]:
    """(MB of RSS added per 1,000 calls, sessions held at the end) for an app keeping `sessions` sessions."""
    import httpx

    import ui

    engine = type(engine)(replace(engine.settings, max_sessions=sessions))
    app = ui.build_app(engine)
    port = _free_port()
    ui.launch(app, engine, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    base = f"http://127.0.0.1:{port}/gradio_api/call/recipe"
    try:
        with httpx.Client(timeout=120) as http:

            def call(number: int) -> None:
                text = f"a fox {number}\nSteps: 9, Sampler: Euler, CFG scale: 6, Seed: {number}"
                event = http.post(base, json={"data": [None, text]}).json()["event_id"]
                http.get(f"{base}/{event}").raise_for_status()

            for number in range(20):  # warm: imports, first-call caches
                call(number)
            gc.collect()
            before = _rss_mb()
            for number in range(calls):
                call(number)
            gc.collect()
            added = _rss_mb() - before
        return added * 1000 / calls, len(app.state_holder.session_data)
    finally:
        app.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1500)
    parser.add_argument("--cap", type=int, default=500)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="sessions-gradio-")

    from engine.base.settings import Settings
    from engine.core import Engine

    engine = Engine(Settings.from_env({}, models="tiny", data_dir=Path(tempfile.mkdtemp(prefix="sessions-"))))
    for label, sessions in (("Gradio's default", 10_000), (f"STUDIO_MAX_SESSIONS={args.cap}", args.cap)):
        per_1000, held = measure(engine, args.calls, sessions)
        print(f"{label}: {args.calls} raw /recipe calls, RSS +{per_1000:.0f} MB per 1,000 calls, {held} sessions held")


if __name__ == "__main__":
    main()
