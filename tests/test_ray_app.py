"""`python app.py --backend ray` as an owner starts it: 16 visitors at once through gradio_client, none lost.

Runs after tests/test_ray.py has shut its Ray instance down; the app starts a Ray instance of its own
(2 replicas of one CPU each on this 2-core machine) and stops it when the server stops.
"""

from __future__ import annotations

import subprocess
import time

import numpy as np
from gradio_client import Client
from PIL import Image
from pixels import one_thread
from ports import clean_env, free_port, serving
from test_load import GPU_ENDPOINTS, jobs_for_every_tab

from engine.workflows.basic import Img2ImgRequest


def ray_processes(wait: float = 60) -> list[str]:
    """Ray's own processes on this machine, once none are left or after `wait` seconds (a Ray instance
    that is stopping takes a moment)."""
    deadline = time.monotonic() + wait
    while True:
        found = subprocess.run(["pgrep", "-af", "raylet|gcs_server"], capture_output=True, text=True).stdout
        left = [line for line in found.splitlines() if "pgrep" not in line]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def test_sixteen_visitors_at_once_on_two_replicas_all_get_their_results(tmp_path, cat_png, depth_png, engine):
    assert ray_processes() == [], "a Ray instance is already running"
    env = clean_env(STUDIO_PORT=str(free_port()))
    args = ["--backend", "ray", "--replicas", "2", "--models", "tiny", "--data-dir", str(tmp_path / "data")]
    with serving(args, env, tmp_path / "app.log", timeout=300) as page:
        assert "on each of 2 Ray Serve replica(s)" in page
        url = f"http://127.0.0.1:{env['STUDIO_PORT']}/"
        clients = [Client(url, verbose=False) for _ in range(16)]  # sixteen sessions, one job each
        jobs = [
            job
            for number, client in enumerate(clients)
            for job in jobs_for_every_tab(client, cat_png, depth_png, range(number, number + 1))
        ]
        outputs: dict[str, list] = {name: [] for name in GPU_ENDPOINTS}
        for number, (name, job) in enumerate(jobs):
            outputs[name].append((number, job.result(timeout=600)))  # raises on any failure
    assert sum(len(done) for done in outputs.values()) == 16 and set(outputs) == GPU_ENDPOINTS
    assert all(len(cells) == 2 for _, (_, _, cells, _) in outputs["sweep"])
    assert all("Done: seed" in summary for _, (_, _, _, summary, *_) in outputs["chain"])
    assert all(len(images) == 3 for _, (_, images, *_) in outputs["depth"])
    # each Basic result is the one this process makes (one torch thread, as each replica has)
    with one_thread():
        for seed, (gallery, *_) in outputs["img2img"]:
            request = Img2ImgRequest(
                image=Image.open(cat_png),
                prompt="a cat",
                model="sd15",
                strength=1.0,
                guidance_scale=7.5,
                num_inference_steps=2,
                seed=seed,
            )
            expected = engine.img2img(request).images[0]
            assert np.array_equal(np.asarray(Image.open(gallery[0]["image"]).convert("RGB")), np.asarray(expected))
    assert ray_processes() == [], "the Ray instance outlived the server"
