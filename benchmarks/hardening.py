"""Adversarial figures in tiny mode (issue 14): what one hostile request costs everyone else.

    python -m benchmarks.hardening [--requests 100]

The app runs in this process on 127.0.0.1 (tiny twins, CPU). Prints, each measured side by side in
this run:
- parser and grid: the slowest crafted /recipe infotext and a grid of 2000-character labels, as
  ratios to a normal request;
- crafted inputs sent and how many came back as a clear, titled error (the rest succeeded);
- memory and disk after N API requests, each in a session of its own (raw /call/ requests);
- the queue after a closed client: a 150-step job whose stream is closed once it runs, then how long
  the next short job waits, against the same short job on an idle queue.
Bounded: N requests, each with a 600 s timeout; nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

from benchmarks.timing import median_ratio, paired_times


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20 if folder.exists() else 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    gradio_tmp = Path(tempfile.mkdtemp(prefix="hardening-gradio-"))
    os.environ["GRADIO_TEMP_DIR"] = str(gradio_tmp)

    import httpx
    from PIL import Image

    import ui
    from engine.base.settings import Settings
    from engine.core import Engine
    from engine.workflows.grid import labelled_grid

    data = Path(tempfile.mkdtemp(prefix="hardening-"))
    engine = Engine(Settings.from_env({}, models="tiny", data_dir=data, max_pixels=256 * 192))
    app = ui.build_app(engine)
    port = _free_port()
    ui.launch(
        app, engine, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, sweep_cache=False
    )
    base = f"http://127.0.0.1:{port}/gradio_api"
    photo = data / "cat.png"
    Image.open(engine.example_images()["chelsea the cat"]).resize((256, 192)).save(photo)
    http = httpx.Client(timeout=600)

    def upload() -> dict:
        with photo.open("rb") as handle:
            path = http.post(f"{base}/upload", files={"files": ("cat.png", handle, "image/png")}).json()[0]
        return {"path": path, "meta": {"_type": "gradio.FileData"}}

    def call(api: str, data: list) -> tuple[str, object]:
        """A raw /call/ request (a session of its own): ("complete" | "error", data)."""
        posted = http.post(
            f"{base}/call/{api}", content=json.dumps({"data": data}), headers={"content-type": "application/json"}
        )
        text = http.get(f"{base}/call/{api}/{posted.json()['event_id']}").text
        event = [line for line in text.splitlines() if line.startswith("event:")][-1].split(":", 1)[1].strip()
        payload = [line for line in text.splitlines() if line.startswith("data:")][-1].split(":", 1)[1]
        return event, json.loads(payload)

    def basic(steps: int = 2, **changes) -> list:
        values = {"prompt": "a cat", "strength": 1.0, "steps": steps, "seed": 1}
        values.update(changes)
        return [
            upload(),
            values["prompt"],
            "",
            "sd15",
            values["strength"],
            7.5,
            values["steps"],
            values["seed"],
            1,
            changes.get("weighted", False),
            "",  # scheduler: the model's own
            "",  # loras: none
        ]

    # 1. parser and grid, as ratios to a normal request
    normal_infotext = "a cat\nSteps: 50, Sampler: PLMS, CFG scale: 7.5, Seed: 33, Size: 448x296"
    crafted = ['k: "a, ' * 2800, "a," * 9999, "a:" * 9999, "Key: value, " * 1600, "(a:" + "1" * 19990 + "x)"]
    worst = 0.0
    for text in crafted:
        times = paired_times(
            lambda t=text: call("recipe", [None, t]), lambda: call("recipe", [None, normal_infotext]), rounds=3
        )
        worst = max(worst, median_ratio(*times))
    print(f"crafted /recipe infotexts (20,000 characters) / normal: worst median ratio {worst:.2f}")
    # a weighted prompt at the limits (16 brackets deep; 1,000 characters of nested groups) against the same
    # request unweighted: Compel's parse before the first step (8 deep once took 82 s)
    for label, prompt in (
        ("16 deep", "(" * 16 + "cat" + ")" * 16),
        ("1,000 characters", ("((((cat)))) " * 84)[:1000]),
    ):
        times = paired_times(
            lambda p=prompt: call("img2img", basic(prompt=p, weighted=True)),
            lambda p=prompt: call("img2img", basic(prompt=p)),
            rounds=3,
        )
        print(f"weighted prompt {label} / unweighted: median ratio {median_ratio(*times):.2f}")
    cells = [Image.new("RGB", (256, 256)) for _ in range(4)]

    def grid(label):
        return labelled_grid(
            cells, cols=2, rows=2, x_name="prompt", x_labels=[label] * 2, y_name="seed", y_labels=[label] * 2
        )

    times = paired_times(lambda: grid("w" * 2000), lambda: grid("a watercolor painting of a cat"), rounds=9)
    print(f"grid with 2000-character labels / short labels: median ratio {median_ratio(*times):.2f}")

    # 2. crafted inputs: each must be a clear, titled error or a success
    image = upload()
    payloads = [
        ("img2img", basic(strength=10**400)),
        ("img2img", basic(seed=10**400)),
        ("img2img", basic(steps=10**400)),
        ("img2img", basic(prompt="a \ud800 cat")),
        ("img2img", basic(prompt="(" * 500 + "x" + ")" * 500, weighted=True)),
        ("img2img", basic(strength=float("nan"))),
        ("img2img", basic(prompt="<img src=x onerror=alert(1)>")),
        ("chain", [image, "", "a cat", 1, '[{"model": "sd15", "prompt": 123}]', 512, 512, True]),
        ("chain", [image, "", "a cat", 1, '[{"model": "sd15", "prompt": null}]', 512, 512, True]),
        ("chain", [image, "", "a cat", 1, "[" * 40000 + "]" * 40000, 512, 512, True]),
        ("chain", [image, ["image-image-image"], "a cat", 1, "", 512, 512, True]),
        ("chain", [image, {"a": 1}, "a cat", 1, "", 512, 512, True]),
        ("sweep", [image, "a cat", "", "sd15", 0.5, 7.5, 2, 1, "seed", "1-" + "9" * 400, "", "", False, "", ""]),
        ("sweep", [image, "a cat", "", "sd15", 0.5, 7.5, 2, 1, "[" * 3000, "1", "", "", False, "", ""]),
        ("recipe", [None, "x" * 2**20]),
        ("recipe", [None, "<img src=x onerror=alert(1)>\nSteps: <b>, Seed: 1, CFG scale: 2"]),
    ]
    clear = 0
    for api, values in payloads:
        event, payload = call(api, values)
        message = payload.get("error") if isinstance(payload, dict) else None
        titled = isinstance(payload, dict) and payload.get("title") not in (None, "Error")
        plain = bool(message) and "Traceback" not in message and "/tmp" not in message
        clear += event == "complete" or (plain and titled)
    print(f"crafted inputs: {len(payloads)} sent, {clear} answered with a clear titled error or a result")

    # 3. memory and disk per N requests, each its own session
    call("img2img", basic())  # warm: the twin loaded, first-call allocations made
    rss0, disk0, gradio0 = _rss_mb(), _folder_mb(data), _folder_mb(gradio_tmp)
    temp0 = len(list(Path(tempfile.gettempdir()).glob("img2img-recipe-*")))
    for seed in range(args.requests):
        event, _ = call("img2img", basic(seed=seed))
        assert event == "complete"
    print(
        f"{args.requests} /img2img requests, one session each: RSS {_rss_mb() - rss0:+.1f} MB, "
        f"data dir {_folder_mb(data) - disk0:+.1f} MB (outputs + downloads, capped at "
        f"{engine.settings.max_outputs_mb} MB), Gradio cache {_folder_mb(gradio_tmp) - gradio0:+.1f} MB "
        f"(swept hourly), new temp folders {len(list(Path(tempfile.gettempdir()).glob('img2img-recipe-*'))) - temp0}, "
        f"results kept {len(engine.results)} ({engine.results.bytes / 2**20:.1f} MB of images)"
    )

    # 4. the queue after a closed client
    started = time.perf_counter()
    call("img2img", basic(steps=4))
    idle = time.perf_counter() - started
    unet_calls = []
    pipe = engine.cache.get("sd15", "img2img")
    hook = pipe.unet.register_forward_hook(lambda *_: unet_calls.append(1))
    posted = http.post(f"{base}/call/img2img", json={"data": basic(steps=150)}).json()["event_id"]
    with http.stream("GET", f"{base}/call/img2img/{posted}"):
        while not unet_calls:
            time.sleep(0.01)
    closed = time.perf_counter()
    call("img2img", basic(steps=4))
    after = time.perf_counter() - closed
    hook.remove()
    print(
        f"closed client: its 150-step job ran {len(unet_calls) - 5} more UNet calls; the next 4-step job took "
        f"{after:.2f}s against {idle:.2f}s on an idle queue (ratio {after / idle:.2f})"
    )
    app.close()


if __name__ == "__main__":
    main()
