"""The per-browser history: only ids of results this server wrote are ever turned into files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from PIL import Image

from engine.workflows.basic import Img2ImgRequest
from engine.workflows.registry import read_recipe
from ui import history
from ui.outputs import outputs_dir, png_outputs


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


def test_a_result_png_finds_its_init_by_its_id_or_by_the_init_hash_its_recipe_names(settings, engine, photo, tmp_path):
    from engine.base.images import image_digest
    from engine.recipes.results import ResultStore
    from ui.recipe import held_init

    result = engine.img2img(Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=2, seed=5, num_images=2))
    first, second = (result.recipe.for_image(i) for i in range(2))
    assert first.init_digest == image_digest(result.init_image)  # the init as the pipeline saw it
    ids = [engine.results.put(recipe, result.init_image) for recipe in (first, second)]
    shown = png_outputs(settings, [(result.images[0], first, "a"), (result.images[1], second, "b")], ids)
    assert [path.rsplit("/", 1)[-1] for path, _ in shown] == [f"{key}.png" for key in ids]
    assert held_init(engine, shown[0][0], read_recipe(shown[0][0])) is result.init_image
    renamed = tmp_path / "my cat, final.png"  # a download renamed, or saved again by a browser: found by content
    renamed.write_bytes(Path(shown[1][0]).read_bytes())
    assert held_init(engine, str(renamed), read_recipe(renamed)) is result.init_image
    elsewhere = engine.img2img(Img2ImgRequest(image=photo.rotate(90), prompt="a cat", num_inference_steps=2, seed=5))
    assert held_init(engine, str(renamed), elsewhere.recipe) is None  # its init was never kept here
    assert held_init(engine, str(tmp_path / "../../etc/passwd"), replace(first, extra={})) is None
    store = ResultStore(max_entries=1)  # the hash finds an init only while a result made from it is kept
    store.put(first, result.init_image)
    assert store.init_by_digest(first.init_digest) is result.init_image
    store.put(elsewhere.recipe, elsewhere.init_image)
    assert store.init_by_digest(first.init_digest) is None
    assert store.init_by_digest(elsewhere.recipe.init_digest) is elsewhere.init_image


def test_a_crafted_init_hash_is_refused_naming_the_field(engine, photo):
    import json

    import pytest

    from engine.workflows.registry import recipe_from_json

    result = engine.img2img(Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=2, seed=5))
    data = json.loads(result.recipe.to_json())
    assert recipe_from_json(json.dumps(data)).init_digest == result.recipe.init_digest
    data["extra"]["init_sha256"] = "../../etc/passwd"
    with pytest.raises(ValueError, match=r"extra\.init_sha256 must be 64 hexadecimal digits.*'\.\./\.\./etc/passwd'"):
        recipe_from_json(json.dumps(data))
