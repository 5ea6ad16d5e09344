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
    recipe = state.controlnet_recipe
    script = script_for(recipe)
    assert "ControlNet canny img2img" in script and str(engine.twins_dir / CANNY) in script
    (tmp_path / "recipe.py").write_text(script)
    state.plan.image.image.save(tmp_path / "init.png")
    state.depth.save(tmp_path / "control.png")
    save_png(state.controlnet, recipe, tmp_path / "app.png")
    assert read_recipe(tmp_path / "app.png").extra["control_type"] == "canny"
    done = subprocess.run(
        [sys.executable, str(tmp_path / "recipe.py"), str(tmp_path / "out.png"), str(tmp_path / "init.png")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # control.png, the script's default third argument
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), np.asarray(state.controlnet))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"canny_low": 0}, r"canny_low must be in \[1, 255\], got 0"),
        ({"canny_high": 256}, r"canny_high must be in \[1, 255\], got 256"),
        ({"canny_low": 10.5}, "canny_low must be a whole number, got 10.5"),
        ({"canny_high": "high"}, "canny_high must be a number, got 'high'"),
        ({"canny_low": 200, "canny_high": 100}, "canny_low must be below canny_high, got 200 and 100"),
        ({"canny_low": 150, "canny_high": 150}, "canny_low must be below canny_high, got 150 and 150"),
        ({"control_type": "lineart"}, "control_type must be one of depth, canny; got 'lineart'"),
        (
            {"model": "sdxl-base"},
            "control_type 'canny' has no ControlNet for model 'sdxl-base', which has depth",
        ),
        ({"depth_map": np.zeros((4, 4))}, "depth_map must be an image file for control_type 'canny'"),
    ],
)
def test_bad_canny_values_are_refused_by_name_before_any_work(engine, photo, fields, message):
    loads = engine.cache.loads
    with pytest.raises(ValueError, match=message):
        engine.plan(DepthRequest(image=photo, **{"control_type": "canny", **fields}))
    assert engine.cache.loads == loads


def test_a_condition_image_that_is_not_an_image_is_named(engine, photo, tmp_path):
    bad = tmp_path / "edges.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="depth_map is not an image"):
        engine.plan(DepthRequest(image=photo, depth_map=str(bad), control_type="canny"))


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
