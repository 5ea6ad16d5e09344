"""Load test in tiny mode: many gradio_client sessions submitting jobs across every tab at once.

    python -m benchmarks.load [--jobs 48] [--clients 16] [--queue-size 32]

The app runs in this process on 127.0.0.1 (tiny twins, CPU). Each client is its own session; jobs are
submitted all at once, round-robin over the endpoints, and each job's latency is measured from
submission to result. Prints jobs, concurrency, completed, queue-full refusals, other failures and
p50/p95 latency. Bounded: at most --jobs jobs, each with a 600 s timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=48)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--queue-size", type=int, default=32)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")

    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError

    import ui
    from engine.base.settings import Settings
    from engine.core import Engine

    data = Path(tempfile.mkdtemp(prefix="load-"))
    settings = replace(Settings.from_env({}, models="tiny", data_dir=data), queue_size=args.queue_size)
    engine = Engine(settings)
    app = ui.build_app(engine)
    port = _free_port()
    ui.launch(
        app, engine, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, sweep_cache=False
    )
    url = f"http://127.0.0.1:{port}/"

    photo = data / "cat.png"
    Image.open(engine.example_images()["chelsea the cat"]).resize((128, 96)).save(photo)
    depth = data / "depth.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 64), (48, 1)).astype(np.uint8)).save(depth)
    image = handle_file(str(photo))
    stages = json.dumps([{"model": "sd15", "num_inference_steps": 4}, {"model": "comic-diffusion"}])
    finished: dict[int, float] = {}

    def done(i):  # the moment a job's result arrives, whatever order they are collected in
        return [lambda *outputs: finished.__setitem__(i, time.perf_counter())]

    calls = {
        "img2img": lambda c, i: c.submit(
            image, "a cat", "", "sd15", 0.5, 7.5, 8, i, api_name="/img2img", result_callbacks=done(i)
        ),
        "sweep": lambda c, i: c.submit(
            image,
            "a cat",
            "",
            "sd15",
            0.5,
            7.5,
            8,
            i,
            "guidance_scale",
            "3, 7",
            "",
            "",
            api_name="/sweep",
            result_callbacks=done(i),
        ),
        "chain": lambda c, i: c.submit(image, "", "a cat", i, stages, api_name="/chain", result_callbacks=done(i)),
        "depth": lambda c, i: c.submit(
            image,
            handle_file(str(depth)),
            "midas",
            "a cat",
            "",
            0.5,
            7.5,
            8,
            i,
            0.8,
            "none",
            api_name="/depth",
            result_callbacks=done(i),
        ),
        "estimate_depth": lambda c, i: c.submit(
            image, "depth-anything-v2-small", api_name="/estimate_depth", result_callbacks=done(i)
        ),
    }
    names = list(calls)
    # warm every model once, so the figures are about queueing, not first loads
    warm = Client(url, verbose=False)
    for index, name in enumerate(names):
        calls[name](warm, 10_000 + index).result(timeout=600)

    clients = [Client(url, verbose=False) for _ in range(args.clients)]
    started = time.perf_counter()
    submitted = []
    for index in range(args.jobs):
        name = names[index % len(names)]
        submitted.append((index, name, time.perf_counter(), calls[name](clients[index % len(clients)], index)))
    latencies, full, failures = [], 0, []
    for index, name, at, job in submitted:
        try:
            job.result(timeout=600)
            latencies.append(finished.get(index, time.perf_counter()) - at)
        except QueueError:
            full += 1
        except AppError as error:
            failures.append(f"{name}: {error}")
    wall = time.perf_counter() - started
    app.close()

    q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
    print(f"jobs {args.jobs}, clients {args.clients} (concurrent sessions), queue max_size {args.queue_size}")
    print(f"completed {len(latencies)}, queue full {full}, failed {len(failures)}")
    print(f"latency p50 {statistics.median(latencies):.2f} s, p95 {q[18]:.2f} s, max {max(latencies):.2f} s")
    print(f"wall {wall:.1f} s, throughput {len(latencies) / wall:.2f} jobs/s")
    for failure in failures[:10]:
        print("  FAILED", failure)


if __name__ == "__main__":
    main()
