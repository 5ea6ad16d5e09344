"""ControlNet conditions beyond depth (issue 38, first slice): canny for SD 1.5 in the Depth workflow.

The canny image against OpenCV's own, the result against raw diffusers on the twins, the script, the checks,
and the /depth endpoint with control_type="canny"."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from controlnets import CALL, raw_controlnet_img2img
from gradio_client import handle_file
from PIL import Image

from engine.recipes.recipe import save_png
from engine.workflows.depth import DepthRequest
from engine.workflows.registry import read_recipe, recipe_from_json, script_for

STEPS = 4
CANNY = "controlnet-canny"  # the catalog entry of lllyasviel/control_v11p_sd15_canny


def run(engine, **fields):
    """The last state of a canny run."""
    return list(engine.depth(DepthRequest(control_type="canny", **fields)))[-1]


def opencv_canny(image: Image.Image, low: int, high: int) -> np.ndarray:
    """The ControlNet 1.1 model card's preprocessing, on the image's grey pixels: edges stacked to 3 channels."""
    edges = cv2.Canny(np.asarray(image.convert("L")), low, high)
    return np.concatenate([edges[:, :, None]] * 3, axis=2)


def script_output(state, tmp_path) -> np.ndarray:
    """The image the result's exported script makes from init.png and control.png (the run's own), checked to be
    the recipe the app wrote into its PNG."""
    recipe = state.controlnet_recipe
    (tmp_path / "recipe.py").write_text(script_for(recipe))
    state.plan.image.image.save(tmp_path / "init.png")
    state.depth.save(tmp_path / "control.png")
    save_png(state.controlnet, recipe, tmp_path / "app.png")
    assert read_recipe(tmp_path / "app.png").extra["control_type"] == state.plan.control_type
    done = subprocess.run(
        [sys.executable, str(tmp_path / "recipe.py"), str(tmp_path / "out.png"), str(tmp_path / "init.png")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # control.png, the script's default third argument
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return np.asarray(Image.open(tmp_path / "out.png"))


@pytest.fixture()
def edges_png(tmp_path):
    """A condition image of another size than the photo: white edges on black."""
    edges = np.zeros((30, 50, 3), dtype=np.uint8)
    edges[:, 20] = edges[10] = 255
    path = tmp_path / "edges.png"
    Image.fromarray(edges).save(path)
    return path


def test_the_canny_image_is_opencvs_on_the_init_at_its_working_size(engine, photo):
    plan = engine.plan(
        DepthRequest(image=photo, control_type="canny", canny_low=50, canny_high=150, num_inference_steps=STEPS)
    )
    first = next(engine.depth(plan))
    expected = opencv_canny(plan.image.image, 50, 150)
    assert first.depth.mode == "RGB" and first.depth.size == plan.image.size
    assert np.array_equal(np.asarray(first.depth), expected)
    assert 0 < (expected == 255).mean() < 0.5  # real edges, not a blank or a full image
    assert [caption for _, caption in first.images()] == ["init", "canny (canny)"]


def test_the_family_names_its_controlnet_per_condition_type():
    from engine.models.catalog import get_spec

    sd15 = get_spec("sd15").adapter
    assert sd15.controlnet_for("canny") == CANNY and sd15.controlnet_for("depth") == "controlnet-depth"
    assert sd15.depth_controlnet == "controlnet-depth"  # depth as before
    assert get_spec("sdxl-base").adapter.control_types == ("depth",)
    assert get_spec(CANNY).hub_id == "lllyasviel/control_v11p_sd15_canny"


def test_canny_result_equals_raw_diffusers(engine, photo, twins):
    state = run(engine, image=photo, num_inference_steps=STEPS, seed=42, restyle_model="none", **CALL)
    assert engine.cache.get_controlnet("sd15", CANNY).controlnet is engine.cache.peek(CANNY, "controlnet")
    control = Image.fromarray(opencv_canny(state.plan.image.image, 100, 200))
    expected = raw_controlnet_img2img(twins, CANNY, state.plan.image.image, control, STEPS, 42)
    assert state.finished and state.restyled is None
    assert np.array_equal(np.asarray(state.controlnet), np.asarray(expected))
    extra = state.controlnet_recipe.extra
    assert (extra["controlnet"], extra["control_type"], extra["canny_low"], extra["canny_high"]) == (
        CANNY,
        "canny",
        100,
        200,
    )


def test_the_canny_controlnet_is_not_the_depth_one(engine, photo):
    """Same condition image and seed, the two condition types: different ControlNets, different images."""
    common = dict(image=photo, num_inference_steps=STEPS, seed=5, restyle_model="none")
    canny = run(engine, **common)
    edges = Image.fromarray(opencv_canny(canny.plan.image.image, 100, 200))
    depth = list(engine.depth(DepthRequest(depth_map=np.asarray(edges.convert("L")) / 255.0, **common)))[-1]
    assert np.array_equal(np.asarray(depth.depth), np.asarray(canny.depth))  # the same control image
    assert not np.array_equal(np.asarray(depth.controlnet), np.asarray(canny.controlnet))


def test_an_uploaded_condition_image_is_used_as_it_is(engine, photo, edges_png):
    state = run(engine, image=photo, depth_map=str(edges_png), num_inference_steps=STEPS, restyle_model="none")
    expected = Image.open(edges_png).convert("RGB").resize(state.plan.image.size, Image.Resampling.BILINEAR)
    assert np.array_equal(np.asarray(state.depth), np.asarray(expected))
    assert state.controlnet_recipe.extra["depth_source"] == "uploaded"
    assert [caption for _, caption in state.images()][1] == "canny (uploaded)"


def test_exported_script_reproduces_a_canny_result(engine, photo, tmp_path):
    state = run(
        engine, image=photo, num_inference_steps=STEPS, seed=77, canny_low=40, canny_high=120, restyle_model="none"
    )
    script = script_for(state.controlnet_recipe)
    assert "ControlNet canny img2img" in script and str(engine.twins_dir / CANNY) in script
    assert np.array_equal(script_output(state, tmp_path), np.asarray(state.controlnet))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"canny_low": 0}, r"canny_low must be in \[1, 255\], got 0"),
        ({"canny_high": 256}, r"canny_high must be in \[1, 255\], got 256"),
        ({"canny_low": 10.5}, "canny_low must be a whole number, got 10.5"),
        ({"canny_high": "high"}, "canny_high must be a number, got 'high'"),
        ({"canny_low": 200, "canny_high": 100}, "canny_low must be below canny_high, got 200 and 100"),
        ({"canny_low": 150, "canny_high": 150}, "canny_low must be below canny_high, got 150 and 150"),
        ({"control_type": "lineart"}, "control_type must be one of depth, canny, scribble, tile; got 'lineart'"),
        (
            {"model": "sdxl-base"},
            "control_type 'canny' has no ControlNet for model 'sdxl-base', which has depth",
        ),
        ({"depth_map": np.zeros((4, 4))}, "depth_map must be an image file for control_type 'canny'"),
        ({"control_type": "scribble"}, "depth_map is None: scribble needs a drawing: upload one as depth_map"),
        (
            {"control_type": "scribble", "depth_map": ""},
            "depth_map is '': scribble needs a drawing: upload one as depth_map",
        ),
        (
            {"control_type": "scribble", "depth_map": np.zeros((4, 4))},
            "depth_map must be an image file for control_type 'scribble'",
        ),
        (
            {"control_type": "tile", "model": "sdxl-base"},
            "control_type 'tile' has no ControlNet for model 'sdxl-base', which has depth",
        ),
        (
            {"control_type": "scribble", "model": "sdxl-base"},
            "control_type 'scribble' has no ControlNet for model 'sdxl-base', which has depth",
        ),
        ({"control_type": "softedge"}, "control_type must be one of depth, canny, scribble, tile; got 'softedge'"),
    ],
)
def test_bad_condition_values_are_refused_by_name_before_any_work(engine, photo, fields, message):
    loads = engine.cache.loads
    with pytest.raises(ValueError, match=message):
        engine.plan(DepthRequest(image=photo, **{"control_type": "canny", **fields}))
    assert engine.cache.loads == loads


@pytest.mark.parametrize("control_type", ["canny", "scribble", "tile"])
def test_a_condition_image_that_is_not_an_image_is_named(engine, photo, tmp_path, control_type):
    bad = tmp_path / "edges.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="depth_map is not an image"):
        engine.plan(DepthRequest(image=photo, depth_map=str(bad), control_type=control_type))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"control_type": "lineart"}, "extra.control_type"),
        ({"canny_low": 0}, "extra.canny_low"),
        ({"canny_high": "200"}, "extra.canny_high"),
        ({"canny_low": 200, "canny_high": 100}, "extra.canny_low"),
    ],
)
def test_a_crafted_recipes_canny_fields_are_refused_naming_the_field(engine, photo, extra, field):
    genuine = run(engine, image=photo, num_inference_steps=2, seed=1, restyle_model="none").controlnet_recipe
    data = genuine.as_dict()
    assert recipe_from_json(json.dumps(data)).extra["canny_high"] == 200  # the genuine one reads back
    data["extra"] = {**data["extra"], **extra}
    with pytest.raises(ValueError, match=f"recipe field {field} must be"):
        recipe_from_json(json.dumps(data))


def test_depth_endpoint_takes_control_type_canny(client, cat_png):
    _grid, gallery, used, summary, script, downloads = client.predict(
        image=handle_file(str(cat_png)),
        prompt="a clay cat",
        num_inference_steps=4,
        seed=11,
        restyle_model="none",
        control_type="canny",
        canny_low=60,
        canny_high=180,
        api_name="/depth",
    )
    assert [item["caption"] for item in gallery] == ["init", "canny (canny)", "ControlNet"]
    init = Image.open(gallery[0]["image"])
    assert np.array_equal(np.asarray(Image.open(used).convert("RGB")), opencv_canny(init, 60, 180))
    recipe = read_recipe(gallery[2]["image"])
    assert recipe.extra["controlnet"] == CANNY and (recipe.extra["canny_low"], recipe.extra["canny_high"]) == (60, 180)
    assert "Condition: canny edges, thresholds 60/180" in summary and "ControlNet canny img2img" in script
    control = next(path for path in downloads if path.endswith("control.png"))  # what the script reads
    assert np.array_equal(np.asarray(Image.open(control).convert("RGB")), np.asarray(Image.open(used).convert("RGB")))


# -- second slice: scribble (the user's drawing) and tile (the image itself) -----------------------------------

SCRIBBLE = "controlnet-scribble"  # lllyasviel/control_v11p_sd15_scribble
TILE = "controlnet-tile"  # lllyasviel/control_v11f1e_sd15_tile
CATALOG_KEY = {"scribble": SCRIBBLE, "tile": TILE}


def drawing_png(path, *, dark_lines: bool):
    """A drawing of another size than the photo: white lines on black, or black lines on white."""
    lines = np.zeros((40, 60, 3), dtype=np.uint8)
    lines[:, 25] = lines[12] = lines[30, 5:50] = 255
    Image.fromarray(255 - lines if dark_lines else lines).save(path)
    return path


def resized(path, size) -> np.ndarray:
    """An upload as the run resizes it: RGB, bilinear, to the working size."""
    return np.asarray(Image.open(path).convert("RGB").resize(size, Image.Resampling.BILINEAR))


def run_type(engine, control_type, **fields):
    """The last state of a run of a condition type, without restyle."""
    return list(engine.depth(DepthRequest(control_type=control_type, restyle_model="none", **fields)))[-1]


def test_sd15_names_a_controlnet_for_scribble_and_tile_and_sdxl_does_not():
    from engine.models.catalog import CATALOG, get_spec
    from engine.models.space_card import repo_files

    sd15 = get_spec("sd15").adapter
    assert sd15.controlnet_for("scribble") == SCRIBBLE and sd15.controlnet_for("tile") == TILE
    assert get_spec(SCRIBBLE).hub_id == "lllyasviel/control_v11p_sd15_scribble"
    assert get_spec(TILE).hub_id == "lllyasviel/control_v11f1e_sd15_tile"
    keys = list(CATALOG)  # after every earlier entry, before the edit models: no earlier twin's seed moves
    assert (
        keys[keys.index(SCRIBBLE) :][:2] == [SCRIBBLE, TILE] and keys.index(TILE) == keys.index("flux-kontext-dev") - 1
    )
    assert get_spec("sdxl-base").adapter.controlnet_for("scribble") is None
    # hub mode reads what each repository publishes: tile's main has the fp32 .bin alone
    assert repo_files(TILE) == ["config.json", "diffusion_pytorch_model.bin"]
    assert repo_files(SCRIBBLE) == ["config.json", "diffusion_pytorch_model.fp16.safetensors"]


def test_scribble_result_equals_raw_diffusers_on_the_drawing(engine, photo, twins, tmp_path):
    drawing = drawing_png(tmp_path / "drawing.png", dark_lines=False)
    state = run_type(
        engine, "scribble", image=photo, depth_map=str(drawing), num_inference_steps=STEPS, seed=42, **CALL
    )
    assert engine.cache.get_controlnet("sd15", SCRIBBLE).controlnet is engine.cache.peek(SCRIBBLE, "controlnet")
    condition = resized(drawing, state.plan.image.size)
    assert np.array_equal(np.asarray(state.depth), condition)  # white on black: used as it is
    expected = raw_controlnet_img2img(twins, SCRIBBLE, state.plan.image.image, Image.fromarray(condition), STEPS, 42)
    assert np.array_equal(np.asarray(state.controlnet), np.asarray(expected))
    extra = state.controlnet_recipe.extra
    assert (extra["controlnet"], extra["control_type"], extra["scribble_inverted"]) == (SCRIBBLE, "scribble", False)
    assert not any("inverted" in note for note in state.notes)
    assert [caption for _, caption in state.images()][1] == "scribble (uploaded)"


def test_a_drawing_of_dark_lines_on_light_is_inverted_and_the_notes_say_so(engine, photo, tmp_path):
    from ui.depth import summary_text

    drawing = drawing_png(tmp_path / "drawing.png", dark_lines=True)
    state = run_type(engine, "scribble", image=photo, depth_map=str(drawing), num_inference_steps=2, seed=3)
    expected = 255 - resized(drawing, state.plan.image.size).astype(int)
    assert np.abs(np.asarray(state.depth).astype(int) - expected).max() <= 1  # inverted, then resized
    assert np.asarray(state.depth).mean() < 128  # white lines on black, as the model expects
    assert state.plan.scribble_inverted and state.controlnet_recipe.extra["scribble_inverted"] is True
    assert any("inverted to white lines on black" in note for note in state.notes)
    assert "inverted" in summary_text(state)


def test_tile_result_equals_raw_diffusers_on_the_init_itself(engine, photo, twins):
    state = run_type(engine, "tile", image=photo, num_inference_steps=STEPS, seed=42, **CALL)
    init = state.plan.image.image
    assert np.array_equal(np.asarray(state.depth), np.asarray(init.convert("RGB")))  # the image at its working size
    assert not (engine.twins_dir / TILE / "diffusion_pytorch_model.safetensors").exists()  # main publishes .bin only
    expected = raw_controlnet_img2img(twins, TILE, init, init, STEPS, 42)
    assert np.array_equal(np.asarray(state.controlnet), np.asarray(expected))
    extra = state.controlnet_recipe.extra
    assert (extra["controlnet"], extra["control_type"], extra["depth_source"]) == (TILE, "tile", "init")
    assert [caption for _, caption in state.images()][1] == "tile (init)"


def test_each_condition_type_loads_its_own_controlnet(engine, photo, edges_png):
    """One condition image, one seed, four types: four ControlNets, four different images."""
    common = dict(image=photo, depth_map=str(edges_png), num_inference_steps=STEPS, seed=5)
    states = {kind: run_type(engine, kind, **common) for kind in ("canny", "scribble", "tile")}
    assert len({np.asarray(state.depth).tobytes() for state in states.values()}) == 1  # the same control image
    assert len({np.asarray(state.controlnet).tobytes() for state in states.values()}) == 3


@pytest.mark.parametrize("control_type", ["scribble", "tile"])
def test_exported_script_reproduces_a_scribble_or_tile_result(engine, photo, tmp_path, control_type):
    fields = {"depth_map": str(drawing_png(tmp_path / "d.png", dark_lines=True))} if control_type == "scribble" else {}
    state = run_type(engine, control_type, image=photo, num_inference_steps=STEPS, seed=77, **fields)
    script = script_for(state.controlnet_recipe)
    assert (
        f"ControlNet {control_type} img2img" in script and str(engine.twins_dir / CATALOG_KEY[control_type]) in script
    )
    assert np.array_equal(script_output(state, tmp_path), np.asarray(state.controlnet))


def test_a_crafted_recipes_scribble_fields_are_refused_naming_the_field(engine, photo, tmp_path):
    drawing = drawing_png(tmp_path / "drawing.png", dark_lines=False)
    genuine = run_type(engine, "scribble", image=photo, depth_map=str(drawing), num_inference_steps=2, seed=1)
    data = genuine.controlnet_recipe.as_dict()
    assert recipe_from_json(json.dumps(data)).extra["scribble_inverted"] is False  # the genuine one reads back
    for extra, field in (
        ({"scribble_inverted": "yes"}, "extra.scribble_inverted"),
        ({"control_type": "softedge"}, "extra.control_type"),
    ):
        crafted = {**data, "extra": {**data["extra"], **extra}}
        with pytest.raises(ValueError, match=f"recipe field {field} must be"):
            recipe_from_json(json.dumps(crafted))


def test_the_condition_dropdown_lists_the_types_of_the_chosen_models_family():
    from ui.depth import condition_choices

    sd15 = condition_choices("sd15", "tile")
    assert [value for _, value in sd15.choices] == ["depth", "canny", "scribble", "tile"] and sd15.value == "tile"
    sdxl = condition_choices("sdxl-base", "scribble")
    assert [value for _, value in sdxl.choices] == ["depth"] and sdxl.value == "depth"


def test_depth_endpoint_takes_a_scribble_drawing(client, cat_png, tmp_path):
    drawing = drawing_png(tmp_path / "drawing.png", dark_lines=True)
    _grid, gallery, used, summary, _script, _downloads = client.predict(
        image=handle_file(str(cat_png)),
        depth_map=handle_file(str(drawing)),
        prompt="a clay cat",
        num_inference_steps=2,
        seed=11,
        restyle_model="none",
        control_type="scribble",
        api_name="/depth",
    )
    assert [item["caption"] for item in gallery] == ["init", "scribble (uploaded)", "ControlNet"]
    assert read_recipe(gallery[2]["image"]).extra["controlnet"] == SCRIBBLE
    assert "inverted" in summary and np.asarray(Image.open(used).convert("L")).mean() < 128
