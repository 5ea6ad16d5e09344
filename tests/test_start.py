"""The README's run command, tried as a newcomer would: `python app.py`, no flags, on a machine where
the Hugging Face Hub cannot be reached (here: HF_ENDPOINT on a closed loopback port, an empty cache)."""

from __future__ import annotations

import subprocess
import sys

import httpx
from ports import ROOT, clean_env, free_port, serving


def test_python_app_py_serves_the_twins_when_the_hub_cannot_be_reached(tmp_path):
    port = free_port()
    env = clean_env(
        HF_ENDPOINT=f"http://127.0.0.1:{free_port()}",  # nothing listens: the probe fails at once
        HF_HOME=str(tmp_path / "hf"),  # no cached weights
        GRADIO_TEMP_DIR=str(tmp_path / "gradio"),
        STUDIO_PORT=str(port),
        STUDIO_DATA_DIR=str(tmp_path / "data"),
    )
    log = tmp_path / "app.log"
    with serving([], env, log):
        config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=30).text
        assert "Model mode: **tiny** (auto: the Hugging Face Hub cannot be reached (" in config
        logged = log.read_text()
        assert "ConnectError" in logged and "model mode tiny (auto: the Hugging Face Hub" in logged


def test_hub_mode_serves_offline_from_the_twin_cache(tmp_path):
    """docs/models.md's offline hub-mode recipe: write the twin cache with the CLI, then
    `HF_HUB_CACHE=DIR HF_HUB_OFFLINE=1 python app.py --models hub`, and call /img2img with gradio_client."""
    from gradio_client import Client, handle_file
    from PIL import Image
    from skimage import data

    cache = tmp_path / "hub"
    subprocess.run(
        [sys.executable, "-m", "engine.models.tiny", "--hub-cache", str(cache)], cwd=ROOT, check=True, timeout=600
    )
    port = free_port()
    env = clean_env(
        HF_HUB_CACHE=str(cache),
        HF_HUB_OFFLINE="1",
        GRADIO_TEMP_DIR=str(tmp_path / "gradio"),
        STUDIO_PORT=str(port),
        STUDIO_DATA_DIR=str(tmp_path / "data"),
        STUDIO_MAX_PIXELS="16384",
    )
    Image.fromarray(data.chelsea()).resize((128, 96)).save(tmp_path / "cat.png")
    log = tmp_path / "app.log"
    with serving(["--models", "hub"], env, log):
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        gallery, _grid, summary, script, _files = client.predict(
            image=handle_file(str(tmp_path / "cat.png")),
            prompt="a cat wizard",
            model="comic-diffusion",  # a repo that publishes pickled .bin weights only
            num_inference_steps=3,
            seed=4,
            api_name="/img2img",
        )
        assert [item["caption"] for item in gallery] == ["seed 4"] and "Comic-Diffusion" in summary
        assert "from_pretrained('ogkalu/Comic-Diffusion', dtype=DTYPE, use_safetensors=None)" in script
        assert "model mode hub (--models hub)" in log.read_text()
