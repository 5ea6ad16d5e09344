"""The per-browser history: only ids of results this server wrote are ever turned into files."""

from __future__ import annotations

from dataclasses import replace

from PIL import Image

from engine.recipe import read_recipe
from engine.requests import Img2ImgRequest
from ui import history
from ui.widgets import outputs_dir, png_outputs


def test_results_are_remembered_newest_first_and_capped(settings, engine, photo):
    result = engine.img2img(Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=2, seed=5))
    shown = png_outputs(settings, [(result.images[0], result.recipe, "seed 5")])
    state, gallery = history.remember(settings, "basic", [], shown)
    assert state == [{"id": state[0]["id"], "tab": "basic", "caption": "seed 5"}]
    assert read_recipe(gallery[0][0]).seeds == (5,)  # the PNG still carries its recipe
    many = png_outputs(settings, [(result.images[0], result.recipe, f"n{i}") for i in range(30)])
    state, gallery = history.remember(settings, "sweep", state, many)
    assert len(state) == history.HISTORY_SIZE and state[0]["caption"] == "n0"


def test_inputs_shown_beside_results_are_not_remembered(settings, photo):
    shown = png_outputs(settings, [(photo, None, "init")])
    assert history.remember(settings, "depth", [], shown) == ([], [])


def test_a_crafted_local_storage_names_no_other_file(settings, photo):
    bare = replace(settings, metadata=False)  # a result (it has a recipe), written without the chunks
    ((path, _),) = png_outputs(bare, [(Image.new("RGB", (64, 64)), object(), "x")])
    good = {"id": path.rsplit("/", 1)[-1].removesuffix(".png"), "tab": "basic", "caption": "ok"}
    crafted = [
        {"id": "../../../../etc/passwd"},
        {"id": "/etc/passwd"},
        {"id": "0" * 31 + "g"},
        {"id": "f" * 32},  # well formed, but not a file this server wrote
        {"id": good["id"] + "/.."},
        "not even a dict",
        good,
    ]
    assert history._clean(settings, crafted) == [good]
    assert history.gallery_items(settings, [good]) == [(str(outputs_dir(settings) / f"{good['id']}.png"), "basic: ok")]
    state, _ = history.remember(settings, "basic", crafted, [("/etc/passwd", "x"), ("/tmp/../etc/shadow", "y")])
    assert state == [good]
