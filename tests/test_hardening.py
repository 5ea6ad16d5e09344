"""One request must not stall a public server: a test per class of the adversarial run (issue 14).

Time budgets are ratios against a normal request measured in the same run, never wall-clock limits.
"""

from __future__ import annotations

import ast
import io
import json
import struct
import threading
import time
import zlib
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageFile, ImageFont
from test_security import _raw_call, _uploaded, good_request, img2img, refused
from workflow_cases import CASES, SIZE_DEFAULTS, run_to_end

from engine.base.images import HeaderOnly, fit_size, normalize_image, open_image, probe_size
from engine.recipes.recipe import MAX_INFOTEXT_CHARS, RECIPE_KEY, Recipe, parse_infotext, png_bytes
from engine.recipes.results import ResultStore
from engine.workflows.grid import fit_text, labelled_grid
from engine.workflows.registry import read_recipe, recipe_from_json, script_for

NORMAL_INFOTEXT = (
    "a cat wizard\nNegative prompt: ugly\nSteps: 50, Sampler: PLMS, CFG scale: 7.5, Seed: 33, Size: 448x296, "
    "Model: stable-diffusion-v1-5, Denoising strength: 0.6"
)


def best_of(fn, rounds: int = 3) -> float:
    """The fastest of a few runs: the least disturbed by other work on a shared machine."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# -- 1. the infotext parser is capped (linear: tests/test_linear_parsing.py) ---------------------------

ADVERSARIAL_INFOTEXTS = {
    "one long key": "a" * (MAX_INFOTEXT_CHARS - 1),
    "colons": "a:" * (MAX_INFOTEXT_CHARS // 2 - 1),
    "commas": "a," * (MAX_INFOTEXT_CHARS // 2 - 1),
    "unclosed quotes": 'k: "a, ' * (MAX_INFOTEXT_CHARS // 7 - 1),
    "backslashes": 'k: "' + "\\" * (MAX_INFOTEXT_CHARS - 10),
    "pairs": ("Key: value, " * 2000)[: MAX_INFOTEXT_CHARS - 1],
    "a web-UI weight of digits": "(a:" + "1" * (MAX_INFOTEXT_CHARS - 10) + "x)",
}


def test_infotext_parsing_keeps_quoted_commas_and_escapes():
    parsed = parse_infotext('a cat\nSteps: 20, Sampler: "DPM++ 2M, Karras", Note: "say \\"hi\\"", Seed: 3')
    assert parsed["sampler"] == "DPM++ 2M, Karras" and parsed["Note"] == 'say "hi"'
    assert parsed["num_inference_steps"] == 20 and parsed["seed"] == 3 and parsed["prompt"] == "a cat"


def test_an_infotext_over_the_cap_is_refused_by_length():
    with pytest.raises(ValueError, match="infotext is 1,048,576 characters long; the limit is 20,000"):
        parse_infotext("x" * 2**20)


def test_recipe_endpoint_answers_crafted_infotexts_as_fast_as_a_normal_one(client, cat_png, server):
    normal = best_of(lambda: client.predict(None, NORMAL_INFOTEXT, api_name="/recipe"))
    for name, text in ADVERSARIAL_INFOTEXTS.items():
        slow = best_of(lambda text=text: _recipe_or_error(client, text), rounds=1)
        assert slow / normal < 10, f"{name}: {slow:.2f}s against {normal:.2f}s for a normal infotext"
    with pytest.raises(AppError, match="the limit is 20,000"):
        client.predict(None, "x" * 2**20, api_name="/recipe")
    assert httpx.get(server + "gradio_api/info", timeout=30).status_code == 200
    good_request(client, cat_png)


def _recipe_or_error(client, text) -> str:
    """The fields read, or the error: a crafted text may be refused (a field of the wrong type)."""
    try:
        return client.predict(None, text, api_name="/recipe")[0]
    except AppError as exc:
        assert "infotext" in str(exc), str(exc)
        return str(exc)


# -- 2. grid labels: bounded per cell, linear in what is drawn ----------------------------------


def test_label_fitting_is_bounded_by_what_can_be_shown():
    font = ImageFont.load_default(size=14)
    short = best_of(lambda: fit_text("w" * 200, font, 120, 2))
    for text in ("w" * 2000, "w" * 200_000, "ab " * 50_000, "🙂" * 20_000):
        lines = fit_text(text, font, 120, 2)
        assert len(lines) == 2 and lines[-1].endswith("…")
        assert all(font.getlength(line) <= 120 for line in lines)
        assert best_of(lambda text=text: fit_text(text, font, 120, 2)) / short < 10


def test_a_grid_of_2000_character_labels_costs_what_a_short_one_does():
    cells = [Image.new("RGB", (256, 256), (i * 40, 0, 0)) for i in range(4)]

    def grid(label: str):
        return labelled_grid(
            cells, cols=2, rows=2, x_name="prompt", x_labels=[label] * 2, y_name="seed", y_labels=[label] * 2
        )

    normal = best_of(lambda: grid("a watercolor painting of a cat"))
    long_word = best_of(lambda: grid("w" * 2000))
    assert long_word / normal < 10, f"{long_word:.3f}s against {normal:.3f}s"
    assert grid("w" * 2000).size == grid("short").size


# -- 3. a recipe read from a PNG can never put code into its script ------------------------------

INJECTIONS = [
    "float32; open('x','w').write('y')",
    "a/b'); import os; os.system('id'); ('",
    '1.0"""\nimport os\n"""',
    "sd15\nimport os",
    "x\u2028import os",
    "{__import__('os')}",
]


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp):
        return _is_literal(node.operand)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return all(_is_literal(item) for item in node.elts)
    if isinstance(node, ast.Dict):
        return all(key is not None and _is_literal(key) for key in node.keys) and all(map(_is_literal, node.values))
    return False


class _BlankLiterals(ast.NodeTransformer):
    def generic_visit(self, node):
        if isinstance(node, ast.expr) and _is_literal(node):
            return ast.Constant(value=None)
        if isinstance(node, ast.Call):  # a pinned revision only adds `revision=` to from_pretrained
            node.keywords = [keyword for keyword in node.keywords if keyword.arg != "revision"]
        return super().generic_visit(node)


def code_shape(script: str) -> str:
    """The script's syntax tree with every literal (text, number, list, dict of those) blanked: what
    runs, whatever the values are."""
    return ast.dump(_BlankLiterals().visit(ast.parse(script)))


@pytest.fixture(scope="module")
def recipes(engine, photo_module) -> dict[str, Recipe]:
    """A real recipe of each workflow, from tiny runs (tests/workflow_cases.py)."""
    return {name: case.recipe(run_to_end(engine, case.request(photo_module))) for name, case in CASES.items()}


@pytest.mark.parametrize("workflow", sorted(CASES))
def test_every_workflows_recipe_passes_its_own_checks_unchanged(recipes, workflow):
    recipe = recipes[workflow]
    assert recipe_from_json(recipe.to_json()) == recipe
    assert read_recipe(png_bytes(Image.new("RGB", (64, 64)), recipe)) == recipe


def _set(data: dict, path: tuple, value) -> dict:
    data = json.loads(json.dumps(data))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("workflow", "path"), [(workflow, path) for workflow, case in CASES.items() for path in case.injectable]
)
def test_crafted_fields_are_refused_or_stay_values(recipes, workflow, path):
    """Each payload in each field: the recipe is refused naming the field, or its script runs the same
    code as the genuine one (the payload is only ever a string literal)."""
    genuine = recipes[workflow].as_dict()
    shape = code_shape(script_for(recipes[workflow]))
    for payload in INJECTIONS:
        crafted = _set(genuine, path, payload)
        try:
            recipe = recipe_from_json(json.dumps(crafted))
        except ValueError as exc:
            assert "recipe field" in str(exc) and str(path[0]) in str(exc), str(exc)
            continue
        assert code_shape(script_for(recipe)) == shape, f"{path} = {payload!r} changed the code"


def _paths(value, path=()) -> list[tuple]:
    """Every key path into a recipe's JSON (list items by index)."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [p for key, child in children for p in [(*path, key), *_paths(child, (*path, key))]]


def _dropped(data: dict, path: tuple) -> dict:
    data = json.loads(json.dumps(data))
    target = data
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return data


@pytest.mark.parametrize("workflow", sorted(CASES))
def test_a_recipe_missing_any_field_is_refused_by_name_or_still_scripts(recipes, workflow):
    """Each field removed, and each set to null: refused naming it, or a script is written. Once a sweep cell
    without its strength and a chain stage with a null input size failed inside the writer (KeyError,
    TypeError) as internal errors."""
    genuine = recipes[workflow].as_dict()
    paths = [path for path in _paths(genuine) if not isinstance(path[-1], int)]
    assert len(paths) > 15
    for path in paths:
        for crafted in (_dropped(genuine, path), _set(genuine, path, None)):
            try:
                recipe = recipe_from_json(json.dumps(crafted))
            except ValueError as exc:  # naming this field, or one whose check depends on it (model_mode)
                assert str(exc).startswith("recipe "), (path, str(exc))
                continue
            assert script_for(recipe).startswith('"""'), path


@pytest.mark.parametrize("workflow", ["img2img", "chain", "depth"])
def test_the_script_writer_alone_keeps_payloads_as_literals(recipes, workflow):
    """Even for a Recipe built in code, past every check, text fields become literals or comments."""
    from dataclasses import replace

    genuine = recipes[workflow]
    stages = genuine.parameters.get("stages")
    if stages:  # a model the catalog does not know loads safetensors-only: the baseline has one too
        unknown = [{**stage, "model": "not-a-catalog-key"} for stage in stages]
        genuine = replace(genuine, parameters={**genuine.parameters, "stages": unknown})
    shape = code_shape(script_for(genuine))
    for payload in INJECTIONS:
        stages = genuine.parameters.get("stages")
        parameters = {**genuine.parameters, "prompt": payload}
        if stages:
            parameters["stages"] = [  # distinct ids: one id twice would share weights (from_pipe), by design
                {**stage, "model": payload, "model_id": f"{payload}{index}"} for index, stage in enumerate(stages)
            ]
        extra = {**genuine.extra, "controlnet_id": payload} if workflow == "depth" else genuine.extra
        crafted = replace(
            genuine,
            model_id=payload,
            app_version=payload,
            dtype=payload,
            generator_device=payload,
            revision=payload,
            parameters=parameters,
            extra=extra,
        )
        assert code_shape(script_for(crafted)) == shape, f"{payload!r} changed the code"


def _png_with_recipe_text(text: str) -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt(RECIPE_KEY, text)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_recipe_endpoint_refuses_a_crafted_png_naming_the_field(client, cat_png, recipes, tmp_path):
    crafted = _set(recipes["img2img"].as_dict(), ("dtype",), "float32; open('x','w').write('y')")
    path = tmp_path / "crafted.png"
    path.write_bytes(_png_with_recipe_text(json.dumps(crafted)))
    text = refused(
        client,
        cat_png,
        lambda: client.predict(handle_file(str(path)), "", api_name="/recipe"),
        "recipe field dtype must be one of bfloat16, float16, float32, got",
    )
    assert "open(" in text and "<" not in text
    markup = _set(recipes["img2img"].as_dict(), ("model",), "<img src=x onerror=alert(1)>")
    path.write_bytes(_png_with_recipe_text(json.dumps(markup)))
    text = refused(
        client,
        cat_png,
        lambda: client.predict(handle_file(str(path)), "", api_name="/recipe"),
        "recipe field model must be one of",
    )
    assert "<img" not in text and "&lt;img" in text


# -- 4. nothing runs outside the queue; previews decode no pixel ---------------------------------


def test_direct_http_posts_cannot_skip_the_queue(server, cat_png):
    response = httpx.post(server + "gradio_api/run/img2img", json={"data": [None, "a cat"]}, timeout=30)
    assert response.status_code == 404 and "join the queue" in response.text


def _png_with_exif_after_pixels(size: tuple[int, int], orientation: int, mode: str = "I;16") -> bytes:
    """A PNG whose eXIf chunk follows its pixel data: Pillow's getexif() decodes the image to find it."""
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG", optimize=True)
    data = buffer.getvalue()
    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(">I", zlib.crc32(b"eXIf" + payload))
    end = data.rindex(b"IEND") - 4
    return data[:end] + chunk + data[end:]


@pytest.fixture()
def no_decoding(monkeypatch):
    """Any pixel decode fails the test."""

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"decoded {self.size} pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_previews_read_headers_only(engine, tmp_path, no_decoding):
    from ui import basic, chain, sweep

    path = tmp_path / "big.png"
    path.write_bytes(_png_with_exif_after_pixels((6300, 4000), orientation=6))
    assert path.stat().st_size < 200_000
    assert probe_size(str(path), name="image", max_input_pixels=10**8) == (4000, 6300)  # upright
    settings = engine.settings
    w, h = fit_size((4000, 6300), multiple=8, max_pixels=settings.max_pixels, min_side=settings.min_side)
    assert f"Output **{w}×{h}** (input 4000×6300)" in basic.plan_text(engine, str(path), "sd15", 0.5, 20)
    values = [str(path), "a cat", "", "sd15", 0.5, 7.5, 20, 1, "seed", "1-4", "", ""]
    assert "**4** cells in **1** pipeline call(s)" in sweep.plan_text(engine, *values)
    text = chain.plan_text(engine, str(path), "image-image-image", "a cat", 1, "", 512, 512, True)
    assert f"{w}×{h}" in text and "⚠️" not in text, text
    # the same file as a mask (an inpainting sweep, a chain's inpaint stage): its header read, no pixel decoded
    masked = [*values, False, "", "", str(path), 4, "Only masked", 32]
    assert "**4** cells in **4** pipeline call(s)" in sweep.plan_text(engine, *masked)
    text = chain.plan_text(engine, str(path), "inpaint-upscale", "a cat", 1, "", 512, 512, True, str(path))
    assert f"1. Stable Diffusion 1.5 (inpaint): {w}×{h}" in text and "⚠️" not in text, text
    assert "What the mask covers is checked when the run starts." in text  # the header says no more


def test_header_only_matches_the_real_normalisation(tmp_path):
    path = tmp_path / "rotated.png"
    path.write_bytes(_png_with_exif_after_pixels((300, 200), orientation=8, mode="RGB"))
    options = dict(multiple=8, max_pixels=40_000, max_input_pixels=10**6, min_side=64)
    real = normalize_image(str(path), **options)
    planned = normalize_image(HeaderOnly(str(path)), **options)
    assert (planned.size, planned.original_size) == (real.size, real.original_size) == ((160, 248), (200, 300))


# -- 5. only accepted formats are opened, by their first bytes ------------------------------------


def _ico_hiding_a_big_png() -> bytes:
    """An ICO whose directory says 16x16 but whose image is a 9000x9000 PNG (Pillow decodes it in open)."""
    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, format="PNG", optimize=True)
    png = buffer.getvalue()
    header = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 6 + 16)
    return header + entry + png


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("icon.ico", _ico_hiding_a_big_png()),
        ("icon.icns", b"icns\x00\x00\x01\x00" + b"\x00" * 64),
        ("layers.psd", b"8BPS\x00\x01" + b"\x00" * 64),
        ("page.pdf", b"%PDF-1.4\n" + b"\x00" * 64),
        ("script.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n" + b"\x00" * 64),
        ("image.png", b"\x00\x00\x01\x00" + b"\x00" * 64),  # an ICO header under a .png name
    ],
)
def test_other_formats_are_refused_before_pillow_opens_them(tmp_path, monkeypatch, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    opened = []
    original = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or original(*a, **k))
    with pytest.raises(ValueError, match=f"image is not an image this app can read \\('{name}'\\); use PNG, JPEG"):
        open_image(str(path), name="image", max_input_pixels=40_000_000)
    assert opened == []


def test_an_ico_upload_gets_a_clear_error(client, cat_png, tmp_path):
    path = tmp_path / "icon.ico"
    path.write_bytes(_ico_hiding_a_big_png())
    refused(client, cat_png, lambda: img2img(client, path), "image is not an image this app can read ('icon.ico')")


# -- 6. sessions hold ids; results live in one bounded store --------------------------------------


def test_the_result_store_is_bounded_by_count_and_bytes():
    from dataclasses import replace

    base = Recipe(
        workflow="img2img",
        model="sd15",
        model_id="a/b",
        pipeline="P",
        scheduler="S",
        scheduler_config={},
        dtype="float32",
        generator_device="cpu",
        seeds=(1,),
        parameters={},
        size=(64, 64),
    )
    store = ResultStore(max_entries=5, max_bytes=3 * 100 * 100 * 3)
    shared = Image.new("RGB", (100, 100))
    ids = [store.put(replace(base, seeds=(i,)), shared) for i in range(5)]
    assert len(store) == 5 and store.bytes == 100 * 100 * 3  # one init shared by five results, counted once
    recipe = replace(base, seeds=(9,))
    assert store.put(recipe, shared) == store.put(recipe, shared)  # the same result again: the same id
    assert store.get(ids[0]) is None and store.get(ids[1]).init is shared  # the oldest went first
    for i in range(4):
        store.put(replace(base, seeds=(20 + i,)), Image.new("RGB", (100, 100)))
    assert store.bytes <= 3 * 100 * 100 * 3 and len(store) <= 5
    assert store.get("../../etc/passwd") is None and store.get(None) is None and store.put(None) == ""


def _images_in(value, seen=None) -> int:
    seen = seen if seen is not None else set()
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, Image.Image):
        return 1
    if isinstance(value, dict):
        return sum(_images_in(v, seen) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_images_in(v, seen) for v in value)
    return 0


def test_api_sessions_keep_no_images(served_app, client, cat_png, engine):
    before = len(engine.results)
    for seed in range(3):
        img2img(client, cat_png, seed=seed)
    assert len(engine.results) >= before + 3 or len(engine.results) == engine.results.max_entries
    app = served_app
    held = [value for session in app.state_holder.session_data.values() for value in session.state_data.values()]
    assert held and _images_in(held) == 0


# -- 7 and 8. disk is bounded; any data dir works -------------------------------------------------


def test_download_and_output_folders_are_pruned(tmp_path):
    from engine.base.settings import Settings
    from ui import outputs

    settings = Settings.from_env({}, models="tiny", data_dir=tmp_path, max_outputs_mb=1)
    for _ in range(3 * outputs.PRUNE_EVERY):
        folder = outputs.download_folder(settings)
        (folder / "grid.png").write_bytes(b"x" * 100_000)
    outputs.prune_disk(settings)
    kept = list(outputs.downloads_dir(settings).iterdir())
    assert sum(f.stat().st_size for d in kept for f in d.iterdir()) <= 2**20 // 2
    assert 1 <= len(kept) <= 6


def test_no_run_leaves_folders_in_the_temp_dir(client, cat_png):
    import tempfile

    def ours():
        names = (p.name for p in Path(tempfile.gettempdir()).iterdir())
        return {name for name in names if name.startswith(("img2img-recipe-", "sweep-"))}

    before = ours()
    img2img(client, cat_png)
    assert ours() == before


def test_a_data_dir_outside_the_working_and_temp_folders_serves_results(cat_png):
    import shutil

    from gradio_client import Client
    from ports import free_port

    import ui
    from engine.base.settings import Settings
    from engine.core import Engine

    data = Path.home() / f".img2img-studio-test-{free_port()}"
    try:
        engine = Engine(Settings.from_env({}, models="tiny", data_dir=data, max_pixels=96 * 64))
        app = ui.build_app(engine)
        port = free_port()
        ui.launch(
            app,
            engine,
            server_name="127.0.0.1",
            server_port=port,
            prevent_thread_lock=True,
            quiet=True,
            sweep_cache=False,
        )
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            gallery, *_ = img2img(client, cat_png)
            assert Image.open(gallery[0]["image"]).size[0] >= 64
        finally:
            app.close()
    finally:
        shutil.rmtree(data, ignore_errors=True)


# -- 9. a closed page or client stops its job ----------------------------------------------------


def test_a_client_that_goes_away_stops_its_job_within_a_step(server, client, cat_png, engine):
    """Queue a 150-step run, wait until it holds the pipeline lock, close its event stream: the job stops
    at its next step and lets go of the lock (each step is slowed to 50 ms, so a full run takes 7.5 s+)."""
    pipe = engine.cache.get("sd15", "img2img")
    calls = []
    hook = pipe.unet.register_forward_hook(lambda *_: calls.append(time.sleep(0.05)))
    try:
        data = [_uploaded(server, cat_png), "a cat", "", "sd15", 1.0, 7.5, 150, 1, 1, False, "", "", *SIZE_DEFAULTS]
        lock = engine.cache.lock
        with httpx.Client(timeout=120) as http:
            event = http.post(server + "gradio_api/call/img2img", json={"data": data}).json()["event_id"]
            with http.stream("GET", server + f"gradio_api/call/img2img/{event}"):  # listening, reading nothing
                deadline = time.monotonic() + 120
                while not calls and time.monotonic() < deadline:  # the job is denoising
                    time.sleep(0.05)
                assert calls, "the job never started"
        deadline = time.monotonic() + 120
        while not lock.acquire(timeout=0.5):
            assert time.monotonic() < deadline, "the job of a closed stream still holds the pipeline lock"
        lock.release()
        assert len(calls) < 100, f"the job ran {len(calls)} of 151 UNet calls after its client left"
    finally:
        hook.remove()
    good_request(client, cat_png)


# -- 10. every odd value gets a clear, titled error ----------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (dict(api_name="/img2img", strength=10**400), "strength must be a finite number, got an integer of about 401"),
        (dict(api_name="/img2img", seed=10**400), "seed must be a whole number in [0, 4294967296) or -1"),
        (
            dict(api_name="/img2img", prompt="(" * 500 + "cat" + ")" * 500, weighted_prompt=True),
            "prompt nests brackets 500 deep",
        ),
    ],
)
def test_odd_basic_values_are_named(client, cat_png, call, message):
    args = dict(prompt="a cat", model="sd15", strength=0.5, num_inference_steps=2, seed=1)
    args.update(call)
    refused(client, cat_png, lambda: client.predict(handle_file(str(cat_png)), **args), message)


def test_a_lone_surrogate_sent_as_raw_json_is_named(server, client, cat_png):
    data = [_uploaded(server, cat_png), "a \ud800 cat", "", "sd15", 0.5, 7.5, 2, 1, 1, False, "", "", *SIZE_DEFAULTS]
    result = _raw_call(server, "img2img", data)  # JSON's "\ud800" escape: no client library sends it
    assert result["event"] == "error"
    assert result["data"]["error"].startswith("prompt holds an invalid character (U+D800 at position 2)")
    good_request(client, cat_png)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"stages": '[{"model": "sd15", "prompt": 123}]'}, "stage 1 prompt must be text, got 123"),
        ({"stages": '[{"model": "sd15", "prompt": null}]'}, "stage 1 prompt must be text, got None"),
        ({"stages": "[" * 40_000 + "]" * 40_000}, "stages is nested too deeply"),
        ({"preset": ["image-image-image"]}, "preset must be one of"),
        ({"preset": {"a": 1}}, "preset must be one of"),
    ],
)
def test_odd_chain_values_are_named(client, cat_png, changes, message):
    args = dict(preset="", prompt="a cat", seed=1, stages="")
    args.update(changes)
    refused(client, cat_png, lambda: client.predict(handle_file(str(cat_png)), api_name="/chain", **args), message)


SWEEP_CALL = dict(
    prompt="a cat", negative_prompt="", model="sd15", strength=0.5, guidance_scale=7.5, num_inference_steps=2, seed=1
)  # a sweep's Basic values; each test adds its axis


def test_an_absurd_sweep_range_is_named(client, cat_png):
    call = dict(SWEEP_CALL, x_axis="seed", x_values="1-" + "9" * 400)
    refused(
        client,
        cat_png,
        lambda: client.predict(handle_file(str(cat_png)), api_name="/sweep", **call),
        "has an end too large to use",
    )


def test_an_axis_outside_the_dropdown_is_named_by_the_engine(client, cat_png):
    call = dict(SWEEP_CALL, x_axis="[" * 3000, x_values="1")
    text = refused(
        client,
        cat_png,
        lambda: client.predict(handle_file(str(cat_png)), api_name="/sweep", **call),
        "x_axis must be one of strength, guidance_scale",
    )
    assert len(text) < 400 and "list of choices" not in text


def test_an_unforeseen_error_is_titled_and_shows_no_internals(monkeypatch, client, cat_png):
    from engine.workflows import basic

    def broken(*args, **kwargs):
        raise KeyError("/srv/secret/path")

    monkeypatch.setattr(basic, "run_img2img", broken)
    with pytest.raises(AppError) as error:
        img2img(client, cat_png)
    assert "Something went wrong inside the app (KeyError)" in str(error.value)
    assert "/srv/secret" not in str(error.value)
    monkeypatch.undo()
    good_request(client, cat_png)


def test_concurrent_bad_and_good_requests_keep_the_server_serving(client, cat_png):
    errors: list[str] = []

    def bad():
        try:
            client.predict(None, "x" * 2**20, api_name="/recipe")
        except AppError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=bad) for _ in range(4)]
    for thread in threads:
        thread.start()
    good_request(client, cat_png)
    for thread in threads:
        thread.join(timeout=120)
    assert len(errors) == 4 and all("the limit is 20,000" in e for e in errors)


def test_raw_api_sessions_are_capped_so_memory_stays_bounded(engine, launch):
    """Each raw /call/ request is a session of its own that nothing ends, and Gradio keeps ~0.4 MB of component
    configs per session: 1,000 calls held 392 MB. STUDIO_MAX_SESSIONS caps them (least recently used dropped)."""
    app = launch(type(engine)(replace(engine.settings, max_sessions=5)))
    base = app.studio_url + "gradio_api/call/recipe"
    try:
        with httpx.Client(timeout=120) as http:
            for number in range(12):
                text = f"a fox {number}\nSteps: 9, Sampler: Euler, CFG scale: 6, Seed: {number}"
                event = http.post(base, json={"data": [None, text]}).json()["event_id"]
                assert f"a fox {number}" in http.get(f"{base}/{event}").text
        assert 1 <= len(app.state_holder.session_data) <= 5
    finally:
        app.close()
