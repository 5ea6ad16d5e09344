"""A public Space anyone can hit: bad input through the HTTP API gets a clear error, and the next good
request succeeds. gradio_client where it can send the value, raw HTTP where it cannot (NaN, inf,
paths that were never uploaded)."""

from __future__ import annotations

import io
import json
import math
import socket
import time
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from workflow_cases import SIZE_DEFAULTS

# The Basic values these tests' sweeps share; each call adds its image, prompt and axes.
SWEEP_BASICS = dict(negative_prompt="", model="sd15", strength=0.5, guidance_scale=7.5, num_inference_steps=2)


def good_request(client, cat_png) -> None:
    """After every bad input: a good request through the same app succeeds."""
    gallery, *_ = client.predict(
        handle_file(str(cat_png)), "a cat", num_inference_steps=2, strength=1.0, seed=1, api_name="/img2img"
    )
    assert Image.open(gallery[0]["image"]).size == (200, 136)


def img2img(client, path, **changes):
    args = dict(prompt="a cat", model="sd15", strength=0.5, num_inference_steps=2, seed=1)
    args.update(changes)
    return client.predict(handle_file(str(path)), api_name="/img2img", **args)


def refused(client, cat_png, call, message: str) -> str:
    with pytest.raises(AppError) as error:
        call()
    text = str(error.value)
    assert message in text, text
    good_request(client, cat_png)
    return text


# -- images -------------------------------------------------------------------------------------


def _png(image: Image.Image, path, **options):
    image.save(path, **options)
    return path


def _bad_files(tmp_path):
    """name -> (file, the message it must get)."""
    files = {}
    huge = _png(Image.new("1", (10000, 10000)), tmp_path / "huge.png", optimize=True)
    assert huge.stat().st_size < 20_000  # a 12 KB file of 100 million pixels
    files["10000x10000"] = (huge, "image is 10000x10000 = 100,000,000 pixels, over the limit of 40,000,000")
    files["bomb"] = (_png(Image.new("1", (15000, 15000)), tmp_path / "bomb.png"), "over the limit of 40,000,000")
    whole = _png(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 136, 3), np.uint8)), tmp_path / "whole.png"
    )
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    files["truncated"] = (truncated, "image is truncated or corrupt")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    files["corrupt"] = (corrupt, "image")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    files["text named .png"] = (text, "image is not an image this app can read ('notes.png')")
    svg = tmp_path / "drawing.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    files["svg"] = (svg, "image is not an image this app can read ('drawing.svg')")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    files["zero bytes"] = (empty, "image is an empty file (0 bytes)")
    files["1x1"] = (_png(Image.new("RGB", (1, 1)), tmp_path / "one.png"), "each side must be at least 64 pixels")
    files["7x7"] = (
        _png(Image.new("RGB", (7, 7)), tmp_path / "seven.png"),
        "image is 7x7; each side must be at least 64",
    )
    return files


@pytest.mark.parametrize(
    "name", ["10000x10000", "bomb", "truncated", "corrupt", "text named .png", "svg", "zero bytes", "1x1", "7x7"]
)
def test_bad_images_get_a_clear_error(client, cat_png, tmp_path, name):
    path, message = _bad_files(tmp_path)[name]
    refused(client, cat_png, lambda: img2img(client, path), message)


def _accepted_files(tmp_path):
    """name -> (file, the output size it must give)."""
    rng = np.random.default_rng(1)
    frames = [Image.fromarray(rng.integers(0, 255, (100, 150, 3), np.uint8)) for _ in range(3)]
    gif = tmp_path / "animated.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    rgba_gif = tmp_path / "rgba.gif"  # an RGBA PNG under a .gif name: read by its content
    Image.fromarray(rng.integers(0, 255, (100, 150, 4), np.uint8), "RGBA").save(rgba_gif, format="PNG")
    deep = tmp_path / "deep.png"
    Image.fromarray(rng.integers(0, 65535, (100, 150), np.uint16)).save(deep)
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(rng.integers(0, 255, (100, 150, 4), np.uint8), "CMYK").save(cmyk)
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: stored 150x100, upright 100x150
    frames[0].save(rotated, exif=exif)
    return {
        "animated gif (first frame)": (gif, (152, 96)),
        "rgba png named .gif": (rgba_gif, (152, 96)),
        "16-bit": (deep, (152, 96)),
        "cmyk": (cmyk, (152, 96)),
        "exif-rotated": (rotated, (96, 152)),
    }


@pytest.mark.parametrize(
    "name", ["animated gif (first frame)", "rgba png named .gif", "16-bit", "cmyk", "exif-rotated"]
)
def test_unusual_but_valid_images_are_normalised(client, tmp_path, name):
    path, size = _accepted_files(tmp_path)[name]
    gallery, *_ = img2img(client, path)
    result = Image.open(gallery[0]["image"])
    assert (result.mode, result.size) == ("RGB", size)


# -- numbers and text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strength": -0.5}, "strength must be in (0, 1], got -0.5"),
        ({"guidance_scale": 1e9}, "guidance_scale must be in [0, 50], got 1000000000.0"),
        ({"seed": 2**64}, "seed must be in [0, 4294967296) or -1 for random, got 18446744073709551616"),
        ({"seed": "abc"}, "seed must be a whole number in [0, 4294967296) or -1 for random, got 'abc'"),
        ({"num_inference_steps": 10**6}, "num_inference_steps must be in [1, 150], got 1000000"),
        ({"num_images": 1000}, "num_images must be in [1, 4], got 1000"),
        ({"strength": 0.01, "num_inference_steps": 50}, "int(50 x 0.01) = 0"),
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": "x" * 2**20}, "prompt is 1,048,576 characters long; the limit is 2,000"),
    ],
)
def test_bad_numbers_and_text_are_named(client, cat_png, changes, message):
    refused(client, cat_png, lambda: img2img(client, cat_png, **changes), message)


def test_control_characters_in_prompts_are_cleaned(client, cat_png):
    gallery, *_ = img2img(client, cat_png, prompt="a cat\x00\x07 in\x1b[31m red")
    recipe = json.loads(Image.open(gallery[0]["image"]).info["img2img-studio"])
    assert recipe["parameters"]["prompt"] == "a cat   in [31m red"


def _raw_call(server: str, api: str, data: list) -> dict:
    """POST a raw JSON body (NaN and Infinity literals included) and read the event's last message."""
    base = server + "gradio_api"
    posted = httpx.post(
        f"{base}/call/{api}",
        content=json.dumps({"data": data}),
        timeout=30,
        headers={"content-type": "application/json"},
    )
    assert posted.status_code == 200, posted.text
    stream = httpx.get(f"{base}/call/{api}/{posted.json()['event_id']}", timeout=120).text
    event = [line for line in stream.splitlines() if line.startswith("event:")][-1].split(":", 1)[1].strip()
    payload = [line for line in stream.splitlines() if line.startswith("data:")][-1].split(":", 1)[1]
    return {"event": event, "data": json.loads(payload)}


def _uploaded(server: str, path) -> dict:
    response = httpx.post(server + "gradio_api/upload", files={"files": (path.name, path.read_bytes(), "image/png")})
    return {"path": response.json()[0], "meta": {"_type": "gradio.FileData"}}


@pytest.mark.parametrize(
    ("index", "value", "message"),
    [
        (4, math.nan, "strength must be a finite number, got nan"),
        (4, math.inf, "strength must be a finite number, got inf"),
        (5, -math.inf, "guidance_scale must be a finite number, got -inf"),
        (7, math.nan, "seed must be a whole number in [0, 4294967296) or -1 for random, got nan"),
    ],
)
def test_nan_and_inf_through_raw_http_are_named(server, client, cat_png, index, value, message):
    data = [_uploaded(server, cat_png), "a cat", "", "sd15", 0.5, 7.5, 2, 1, 1, False, "", "", *SIZE_DEFAULTS]
    data[index] = value
    result = _raw_call(server, "img2img", data)
    assert result["event"] == "error" and result["data"]["error"] == message
    good_request(client, cat_png)


def test_sweeps_and_chains_over_their_limits_are_refused_before_work(client, cat_png, engine):
    loads = engine.cache.loads
    refused(
        client,
        cat_png,
        lambda: client.predict(
            image=handle_file(str(cat_png)),
            prompt="a cat",
            seed=1,
            x_axis="seed",
            x_values="1-10000",
            y_axis="",
            y_values="",
            api_name="/sweep",
            **SWEEP_BASICS,
        ),
        "'1-10000' gives 10000 values; at most 64",
    )
    stages = json.dumps([{"model": "sd15"}] * 50)
    message = "stages has 50 stages; a chain takes at most 5"
    refused(
        client,
        cat_png,
        lambda: client.predict(
            image=handle_file(str(cat_png)), preset="", prompt="a cat", seed=1, stages=stages, api_name="/chain"
        ),
        message,
    )
    assert engine.cache.loads == loads


# -- HTML in prompts and axis values ------------------------------------------------------------

SCRIPT = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def test_html_in_values_comes_back_escaped_in_messages(client, cat_png):
    """Gradio renders error toasts as HTML: the value must arrive escaped, so the page shows it as typed."""
    text = refused(client, cat_png, lambda: img2img(client, cat_png, model=SCRIPT), "model must be one of")
    assert "got \"&lt;script&gt;alert('x')&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;\"" in text
    assert "<" not in text


def test_html_in_axis_values_is_escaped_in_the_plan_and_drawn_as_text(client, cat_png, engine):
    from engine.workflows.basic import Img2ImgRequest
    from engine.workflows.sweep import SweepRequest

    base = Img2ImgRequest(image=str(cat_png), prompt="a cat", num_inference_steps=2)
    sweep_request = SweepRequest(base=base, x_axis="prompt", x_values=f"a cat\n{SCRIPT}")
    planned = engine.plan(sweep_request)
    plan = planned.describe()
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in plan and "<script>" not in plan
    grid, _, cells, _ = client.predict(
        image=handle_file(str(cat_png)),
        prompt="a cat",
        seed=1,
        x_axis="prompt",
        x_values=f"a cat\n{SCRIPT}",
        y_axis="",
        y_values="",
        api_name="/sweep",
        **SWEEP_BASICS,
    )
    assert cells[1]["caption"] == f"prompt={SCRIPT}"  # a caption is text (Gradio shows it as text)
    # the label row is drawn into the image, nothing interpreted: two 200-pixel cells, their gap, no more
    assert Image.open(grid).size == planned.grid_size and planned.grid_size[0] < 2 * 200 + 16


# -- model ids ----------------------------------------------------------------------------------

MODEL_IDS = [
    "../../etc",
    "/etc",
    "a b/c",
    "someone/missing-repo",
    "CompVis/stable-diffusion-v1-4",  # .bin weights only in early revisions
    "deepseek-ai/DeepSeek-V3",  # remote code
    "lpw_stable_diffusion",  # a community pipeline name
]


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_model_ids_are_refused_before_any_loader_sees_them(client, cat_png, engine, model_id, monkeypatch):
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError(f"the Hub was asked for {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    loads = engine.cache.loads
    calls = {
        "img2img model": lambda: img2img(client, cat_png, model=model_id),
        "sweep model": lambda: client.predict(
            image=handle_file(str(cat_png)),
            prompt="a cat",
            seed=1,
            x_axis="seed",
            x_values="1, 2",
            y_axis="",
            y_values="",
            api_name="/sweep",
            **{**SWEEP_BASICS, "model": model_id},
        ),
        "sweep model axis": lambda: client.predict(
            image=handle_file(str(cat_png)),
            prompt="a cat",
            seed=1,
            x_axis="model",
            x_values=f"sd15\n{model_id}",
            y_axis="",
            y_values="",
            api_name="/sweep",
            **SWEEP_BASICS,
        ),
        "chain stage": lambda: client.predict(
            image=handle_file(str(cat_png)),
            preset="",
            prompt="a cat",
            seed=1,
            stages=json.dumps([{"model": model_id}]),
            api_name="/chain",
        ),
        "depth model": lambda: client.predict(
            image=handle_file(str(cat_png)),
            depth_map=None,
            depth_estimator="midas",
            prompt="a cat",
            model=model_id,
            api_name="/depth",
        ),
        "restyle model": lambda: client.predict(
            image=handle_file(str(cat_png)),
            depth_map=None,
            depth_estimator="midas",
            prompt="a cat",
            restyle_model=model_id,
            api_name="/depth",
        ),
        "depth estimator": lambda: client.predict(handle_file(str(cat_png)), model_id, api_name="/estimate_depth"),
    }
    for where, call in calls.items():
        with pytest.raises(AppError) as error:
            call()
        assert "must be one of" in str(error.value) or "not one of" in str(error.value), (where, str(error.value))
    assert engine.cache.loads == loads
    good_request(client, cat_png)


def test_the_owners_token_is_never_sent_implicitly(monkeypatch):
    import app

    monkeypatch.delenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", raising=False)
    monkeypatch.setattr("ui.launch", lambda *args, **kwargs: None)
    app.main(["--models", "tiny", "--data-dir", str(__import__("tempfile").mkdtemp())])
    import os

    assert os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] == "1"


# -- files --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_data", "message"),
    [
        ({"path": "/etc/passwd"}, "Cannot move /etc/passwd to the gradio cache dir because it was not uploaded"),
        ({"path": "../../../../etc/passwd"}, "was not uploaded by a user"),
        (
            {"path": "http://169.254.169.254/latest/meta-data/x.png", "url": "http://169.254.169.254/latest/x.png"},
            "Hostname 169.254.169.254 failed validation",
        ),
        (
            {"path": "http://127.0.0.1:1/x.png", "url": "http://127.0.0.1:1/x.png"},
            "Hostname 127.0.0.1 failed validation",
        ),
    ],
)
def test_files_outside_uploads_and_private_fetches_are_refused(server, client, cat_png, file_data, message):
    data = [
        {**file_data, "meta": {"_type": "gradio.FileData"}},
        "a cat",
        "",
        "sd15",
        0.5,
        7.5,
        2,
        1,
        1,
        False,
        "",
        "",
        *SIZE_DEFAULTS,
    ]
    result = _raw_call(server, "img2img", data)
    assert result["event"] == "error" and message in result["data"]["error"]
    good_request(client, cat_png)


@pytest.mark.parametrize("route", ["file=/etc/passwd", "file=../../../../etc/passwd", "file=%2e%2e/%2e%2e/etc/passwd"])
def test_the_file_route_serves_nothing_outside_the_app(server, route):
    response = httpx.get(server + "gradio_api/" + route, timeout=30)
    assert response.status_code in (403, 404)
    assert "root:" not in response.text


def test_uploads_over_the_size_limit_are_refused(server, settings):
    too_big = io.BytesIO(b"\0" * (settings.max_file_mb * 2**20 + 1))
    response = httpx.post(server + "gradio_api/upload", files={"files": ("big.png", too_big, "image/png")}, timeout=60)
    assert response.status_code == 413
    assert f"{settings.max_file_mb * 2**20}" in response.text


@pytest.mark.parametrize(
    ("method", "route", "body"),
    [
        ("POST", "gradio_api/call/recipe", {"data": [None, "a cat\nSteps: 20, Seed: 1, CFG scale: 7"]}),
        ("GET", "gradio_api/info", None),
        ("GET", "", None),
        ("GET", "gradio_api/queue/status", None),
    ],
)
def test_a_loopback_server_answers_only_loopback_host_names(server, method, route, body):
    """DNS rebinding: a page elsewhere makes the browser send its own name in Host; once only MCP checked it."""
    import httpx

    port = server.rstrip("/").rsplit(":", 1)[1]
    with httpx.Client(timeout=60) as http:
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", f"[::2]:{port}"):
            answer = http.request(method, server + route, json=body, headers={"host": host})
            assert answer.status_code == 421, (host, answer.status_code, answer.text[:200])
            assert "listens on loopback" in answer.json()["error"]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
            answer = http.request(method, server + route, json=body, headers={"host": host})
            assert answer.status_code == 200, (host, answer.status_code, answer.text[:200])


def _stalled_upload(url: str) -> socket.socket:
    """A multipart upload that announces 100,000 bytes, sends a few, then nothing (slowloris)."""
    parts = urlsplit(url)
    connection = socket.create_connection((parts.hostname, parts.port), timeout=60)
    head = (
        f"POST /gradio_api/upload HTTP/1.1\r\nHost: 127.0.0.1:{parts.port}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n--x\r\n"
    )
    connection.sendall(head.encode())
    return connection


def test_an_upload_that_stalls_is_given_up_and_one_client_cannot_hold_many(engine, launch, monkeypatch, caplog):
    """60 slow uploads were still open after 60 s, and an aborted one logged a traceback."""
    from ui import guards

    monkeypatch.setattr(guards, "BODY_IDLE_S", 2.0)
    monkeypatch.setattr(guards, "SLOW_BODY_S", 0.5)
    monkeypatch.setattr(guards, "SLOW_BODIES_PER_CLIENT", 2)
    app = launch(engine)
    try:
        first, second = _stalled_upload(app.studio_url), _stalled_upload(app.studio_url)
        time.sleep(1.0)  # both are slow now
        third = _stalled_upload(app.studio_url)
        assert third.recv(4096).startswith(b"HTTP/1.1 429")  # answered at once, its body never read
        for stalled in (first, second):
            answer = stalled.recv(4096)  # within BODY_IDLE_S of its last byte
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"sent nothing for 2 s" in answer
        for connection in (first, second, third):
            connection.close()
        fine = httpx.post(app.studio_url + "gradio_api/upload", files={"files": ("a.txt", b"hello", "text/plain")})
        assert fine.status_code == 200  # the next upload of the same client goes through
    finally:
        app.close()
    assert not [r for r in caplog.records if r.exc_info], "an aborted upload logged a traceback"


@pytest.mark.parametrize("value", [123, "just text", {"path": 5}, [1, 2], True])
def test_an_image_that_is_no_file_reference_is_named_with_a_title(server, value):
    """Gradio's pydantic check answered these untitled ('1 validation error for ImageData ... pydantic.dev')."""
    base = server + "gradio_api/call/img2img"
    body = {"data": [value, "a cat", "", "sd15", 0.5, 7.5, 2, 1, 1, False, "", "", *SIZE_DEFAULTS]}
    with httpx.Client(timeout=120) as http:
        event = http.post(base, json=body).json()["event_id"]
        answer = http.get(f"{base}/{event}").text
    error = json.loads(answer.split("data:", 1)[1].strip().splitlines()[0])
    assert error["title"] == "Invalid input"
    assert error["error"].startswith("image must be an uploaded file") and "pydantic" not in error["error"]
