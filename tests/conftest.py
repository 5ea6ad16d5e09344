"""Shared fixtures: one tiny-mode engine for the session, twins and examples in a temp folder."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from ports import free_port

# Tests never reach the network and never send a token.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"


@pytest.fixture(scope="session", autouse=True)
def script_worker():
    """The interpreter that replays exported scripts (tests/scripts.py), ended with the session."""
    from scripts import stop_worker

    yield
    stop_worker()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("studio-data")


@pytest.fixture(scope="session")
def settings(data_dir):
    from engine.base.settings import Settings

    return Settings.from_env({}, models="tiny", data_dir=data_dir)


@pytest.fixture(scope="session")
def engine(settings):
    from engine.core import Engine

    return Engine(settings)


@pytest.fixture(scope="session")
def twins(engine):
    """Folder of the twins the engine loads (built on demand)."""
    return engine.twins_dir


@pytest.fixture()
def photo():
    """A real photo (chelsea the cat, 451x300) at a small non-square size for fast runs."""
    from skimage import data

    return Image.fromarray(data.chelsea()).resize((136, 96))


# -- the app, launched once per session on a free loopback port ---------------------------------


def launched(engine):
    """The engine's app, started with its own launch (upload limit, errors shown, MCP when its settings
    say so) on a free loopback port; its URL is `app.studio_url`. Close it with app.close()."""
    import ui

    app = ui.build_app(engine)
    port = free_port()
    ui.launch(
        app, engine, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, sweep_cache=False
    )
    app.studio_url = f"http://127.0.0.1:{port}/"
    return app


@pytest.fixture
def launch():
    """`launched`, for a test that serves an engine of its own (close the app it returns)."""
    return launched


@pytest.fixture(scope="session")
def served_app(engine):
    app = launched(engine)
    yield app
    app.close()


@pytest.fixture(scope="session")
def mcp_server(engine):
    """The app as `python app.py --mcp` serves it (tiny mode): its URL."""
    from dataclasses import replace

    app = launched(type(engine)(replace(engine.settings, mcp=True)))
    yield app.studio_url
    app.close()


@pytest.fixture(scope="session")
def server(served_app):
    return served_app.studio_url


@pytest.fixture(scope="session")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False, download_files=True)


@pytest.fixture(scope="session")
def cat_png(tmp_path_factory, photo_module):
    path = tmp_path_factory.mktemp("upload") / "cat.png"
    photo_module.save(path)
    return path


@pytest.fixture(scope="session")
def depth_png(tmp_path_factory):
    """A left-to-right gradient as an uploaded depth map (64x48 PNG)."""
    path = tmp_path_factory.mktemp("depth") / "depth.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 64), (48, 1)).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def photo_module():
    from skimage import data

    return Image.fromarray(data.chelsea()).resize((200, 136))


@pytest.fixture(scope="session")
def hub_cache_dir(tmp_path_factory):
    """The twins written as a Hugging Face cache under the real repo ids
    (`python -m engine.models.tiny --hub-cache`)."""
    from engine.models.tiny import write_hub_cache

    root = tmp_path_factory.mktemp("hub-cache")
    write_hub_cache(root)
    return root


@pytest.fixture(scope="module")
def hub_cache(hub_cache_dir):
    """huggingface_hub (and so diffusers, transformers and controlnet-aux, which ask it) reads the twin cache as
    its cache, offline, for one test module: what HF_HUB_CACHE=DIR HF_HUB_OFFLINE=1 does for a new process."""
    from huggingface_hub import constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_CACHE", str(hub_cache_dir))
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        yield hub_cache_dir


@pytest.fixture(scope="module")
def hub_engine(hub_cache, tmp_path_factory):
    """An Engine in hub mode on the twin cache (`hub_cache`), for one test module."""
    from engine.base.settings import Settings
    from engine.core import Engine

    engine = Engine(Settings.from_env({}, models="hub", data_dir=tmp_path_factory.mktemp("hub-data")))
    assert engine.mode == "hub"
    yield engine
    engine.cache.clear()
