"""Basic's output size: follow the input, resize to, resize by, and the web UI's three resize modes
(engine.pipelines.portable.resize_image), checked in validate, recorded, replayed by the script, served by the API."""

import numpy as np
import pytest
from PIL import Image
from pixels import noise_image
from test_basic import PROMPT, pixels, raw_diffusers
from test_recipe import rerun

from engine.pipelines.portable import resize_image
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.registry import recipe_from_json, script_for

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def stripes(width: int, height: int, *, across: bool) -> Image.Image:
    """Three equal bands, red | green | blue (left to right, or top to bottom with across=False)."""
    image = Image.new("RGB", (width, height))
    for index, colour in enumerate((RED, GREEN, BLUE)):
        if across:
            image.paste(colour, (index * width // 3, 0, (index + 1) * width // 3, height))
        else:
            image.paste(colour, (0, index * height // 3, width, (index + 1) * height // 3))
    return image


def colours_of(array: np.ndarray) -> set:
    """The pure colours an area holds (pixels within 40 of red, green or blue)."""
    found = set()
    for colour in (RED, GREEN, BLUE):
        if (np.abs(array.astype(int) - colour).max(axis=-1) < 40).any():
            found.add(colour)
    return found


# -- the resize modes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["Just resize", "Crop and resize", "Resize and fill"])
@pytest.mark.parametrize("size", [(128, 64), (64, 128), (96, 96), (120, 80)])
def test_every_mode_makes_the_size_asked(mode, size):
    image = noise_image(150, 90, seed=3)
    result = resize_image(image, mode, *size)
    assert (result.mode, result.size) == ("RGB", size)


def test_just_resize_stretches_with_lanczos():
    image = noise_image(150, 90, seed=3)
    expected = image.resize((64, 128), Image.Resampling.LANCZOS)
    assert np.array_equal(pixels(resize_image(image, "Just resize", 64, 128)), pixels(expected))


def test_crop_and_resize_covers_the_size_and_keeps_the_centre():
    # a wide image into a square: scaled to the square's height, its left and right cut off
    result = np.asarray(resize_image(stripes(300, 100, across=True), "Crop and resize", 96, 96))
    assert colours_of(result) == {GREEN}
    # the same on noise: the scaled image's centre, exactly (288x96 scaled, its middle 96 columns kept)
    image = noise_image(300, 100, seed=5)
    scaled = image.resize((288, 96), Image.Resampling.LANCZOS)
    assert np.array_equal(
        pixels(resize_image(image, "Crop and resize", 96, 96)), pixels(scaled.crop((96, 0, 192, 96)))
    )
    # a tall image into a wide size: its top and bottom cut off
    assert colours_of(np.asarray(resize_image(stripes(90, 300, across=False), "Crop and resize", 128, 64))) == {GREEN}


def test_resize_and_fill_keeps_the_whole_image_inside_and_fills_from_its_edges():
    # a wide image into a square: fitted to the width (96x32), centred, bands above and below
    image = noise_image(300, 100, seed=5)
    result = pixels(resize_image(image, "Resize and fill", 96, 96))
    fitted = pixels(image.resize((96, 32), Image.Resampling.LANCZOS))
    assert np.array_equal(result[32:64], fitted)  # the whole image, unchanged, in the middle
    top, bottom = result[:32], result[64:]
    assert (top == top[0]).all() and (bottom == bottom[0]).all()  # each band is one row stretched
    # ...the edge row: bicubic from the fitted image's first and last rows
    assert np.abs(top[0] - fitted[0]).mean() < np.abs(top[0] - fitted[-1]).mean()
    assert np.abs(bottom[0] - fitted[-1]).mean() < np.abs(bottom[0] - fitted[0]).mean()
    # every colour of a striped image stays in the picture; a tall one gets bands left and right
    assert colours_of(np.asarray(resize_image(stripes(300, 100, across=True), "Resize and fill", 96, 96))) == {
        RED,
        GREEN,
        BLUE,
    }
    tall = pixels(resize_image(noise_image(100, 300, seed=6), "Resize and fill", 96, 96))
    assert (tall[:, :32] == tall[:, :1]).all() and (tall[:, 64:] == tall[:, 64:65]).all()
    assert np.array_equal(tall[:, 32:64], pixels(noise_image(100, 300, seed=6).resize((32, 96), Image.LANCZOS)))


def test_the_same_aspect_in_any_mode_is_a_plain_resize():
    image = noise_image(150, 100, seed=2)
    expected = pixels(image.resize((96, 64), Image.Resampling.LANCZOS))
    for mode in ("Crop and resize", "Resize and fill"):
        assert np.array_equal(pixels(resize_image(image, mode, 96, 64)), expected)


# -- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"output_size": "Resize"}, "output_size must be one of Follow input, Resize to, Resize by; got 'Resize'"),
        ({"output_size": "Resize to", "resize_mode": "crop"}, "resize_mode must be one of Just resize, Crop and"),
        ({"resize_mode": 2}, "resize_mode must be one of Just resize, Crop and resize, Resize and fill; got 2"),
        ({"output_size": "Resize to", "width": 500.5}, "width must be a whole number, got 500.5"),
        ({"output_size": "Resize to", "height": 10}, "height must be in [64, 4096], got 10"),
        ({"output_size": "Resize to", "width": "wide"}, "width must be a number, got 'wide'"),
        (
            {"output_size": "Resize to", "width": 4096, "height": 4096},
            "width x height 4096x4096 makes 4096x4096 = 16,777,216 pixels, over the working size of 1,048,576",
        ),
        ({"output_size": "Resize by", "scale_by": 5}, "scale_by must be in [0.05, 4], got 5.0"),
        ({"output_size": "Resize by", "scale_by": float("nan")}, "scale_by must be a finite number, got nan"),
        (
            {"output_size": "Resize by", "scale_by": 0.3},
            "scale_by 0.3 (of the 136x96 input) makes 40x32; each side must be at least 64 pixels",
        ),
        (
            {"output_size": "Resize by", "scale_by": 4},
            "scale_by 4 (of the 136x96 input) makes 544x384 = 208,896 pixels, over the working size of 65,536",
        ),
    ],
)
def test_bad_sizes_name_the_parameter_and_the_value(settings, photo, changes, message):
    from dataclasses import replace

    if "4096x4096" not in message:  # the quick working size (256x256) makes the scale's cap easy to reach
        settings = replace(settings, max_pixels=65_536)
    with pytest.raises(ValueError) as error:
        Img2ImgRequest(image=photo, prompt="a cat", **changes).validate(settings)
    assert message in str(error.value)


def test_values_the_choice_does_not_read_are_not_checked(settings, photo):
    """Following the input reads no width or scale (the controls are hidden then); resize to reads no scale."""
    plan = Img2ImgRequest(image=photo, prompt="a cat", width=1, scale_by=99).validate(settings)
    assert plan.output is None and plan.image.size == (136, 96)
    plan = Img2ImgRequest(image=photo, prompt="a cat", output_size="Resize to", width=100, height=64, scale_by=99)
    assert plan.validate(settings).image.size == (96, 64)


@pytest.mark.parametrize(
    ("changes", "size", "note"),
    [
        ({"output_size": "Resize to", "width": 100, "height": 130}, (96, 128), "resized from 136x96 to 96x128"),
        ({"output_size": "Resize by", "scale_by": 1.5}, (208, 144), "resized from 136x96 to 208x144"),  # 204x144
        ({"output_size": "Resize by", "scale_by": 1.0}, (136, 96), None),
    ],
)
def test_sizes_are_rounded_to_the_models_multiple(settings, photo, changes, size, note):
    plan = Img2ImgRequest(image=photo, prompt="a cat", resize_mode="Crop and resize", **changes).validate(settings)
    assert plan.image.size == size
    assert plan.image.image.size == size
    if note:
        assert plan.image.notes == (f"{note} (crop and resize)",)


# -- a run, its recipe and its script -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "size"),
    [
        ({"output_size": "Resize to", "width": 96, "height": 128, "resize_mode": "Crop and resize"}, (96, 128)),
        ({"output_size": "Resize by", "scale_by": 1.2, "resize_mode": "Resize and fill"}, (160, 112)),
    ],
)
def test_a_resized_run_equals_diffusers_on_the_same_resized_init_and_its_script_replays_it(
    engine, photo, tmp_path, changes, size
):
    request = Img2ImgRequest(
        image=photo, prompt=PROMPT, strength=0.6, guidance_scale=6.0, num_inference_steps=4, seed=77, **changes
    )
    result = engine.img2img(request)
    init = resize_image(photo, changes["resize_mode"], *size)
    assert result.init_image.size == size and np.array_equal(pixels(result.init_image), pixels(init))
    expected = raw_diffusers(
        engine.twins_dir / "sd15",
        init,
        (77,),
        prompt=PROMPT,
        strength=0.6,
        guidance_scale=6.0,
        num_inference_steps=4,
    )
    assert np.array_equal(pixels(result.images[0]), pixels(expected[0]))

    recipe = result.recipe.for_image(0)
    assert recipe.size == size
    assert {k: recipe.extra[k] for k in ("output_size", "resize_mode")} == {
        "output_size": changes["output_size"],
        "resize_mode": changes["resize_mode"],
    }
    assert recipe_from_json(recipe.to_json()) == recipe
    assert f"Size: {size[0]}x{size[1]}" in recipe.infotext() and "resize" not in recipe.infotext().lower()
    script = script_for(recipe)
    assert "def resize_image(" in script and repr(changes["resize_mode"]) in script
    # the script reproduces the image from the app's init.png, and from the original upload (resized as the app did)
    ours = np.asarray(result.images[0])
    assert np.array_equal(rerun(tmp_path / "init", recipe, result.init_image), ours)
    assert np.array_equal(rerun(tmp_path / "upload", recipe, photo), ours)


def test_following_the_input_records_and_scripts_as_before(engine, photo):
    result = engine.img2img(Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=2, seed=1))
    assert not {"output_size", "resize_mode", "resize_to", "scale_by"} & set(result.recipe.extra)
    script = script_for(result.recipe)
    assert "resize_image" not in script and "init_image.resize((136, 96), Image.Resampling.LANCZOS)" in script


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"resize_mode": "__import__('os')"}, "recipe field extra.output_size must be one of"),
        (
            {"output_size": "Resize to", "resize_mode": "x'); import os; ('", "resize_to": [96, 128]},
            "recipe field extra.resize_mode must be one of Crop and resize, Just resize, Resize and fill",
        ),
        (
            {"output_size": "Resize by", "resize_mode": "Just resize", "scale_by": "2"},
            "recipe field extra.scale_by must be a number in [0.05, 4], got '2'",
        ),
        (
            {"output_size": "Resize to", "resize_mode": "Just resize", "resize_to": [96]},
            "recipe field extra.resize_to must be [width, height]",
        ),
    ],
)
def test_a_crafted_recipes_resize_fields_are_refused_by_name(engine, photo, extra, message):
    import json

    result = engine.img2img(Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=2, seed=1))
    data = json.loads(result.recipe.to_json())
    data["extra"].update(extra)
    with pytest.raises(ValueError) as error:
        recipe_from_json(json.dumps(data))
    assert message in str(error.value)


# -- the UI's plan text and the API -------------------------------------------------------------------------


def test_the_plan_text_says_the_output_size(engine, cat_png):
    from ui.basic import plan_text

    common = (engine, str(cat_png), "sd15", 0.5, 4, None)
    assert "Output **200×136** (input 200×136)" in plan_text(*common)
    text = plan_text(*common, "Resize to", 250, 130, 1.0, "Crop and resize")
    assert "Output **248×128** (resize to 250×130, rounded to multiples of 8; crop and resize, input 200×136)" in text
    text = plan_text(*common, "Resize by", 512, 512, 1.2, "Resize and fill")
    assert "Output **240×160** (resize by 1.2 = 240×163, rounded to multiples of 8; resize and fill" in text
    # the engine's working size on this CPU (256x256) caps it, before any work
    assert "⚠️ width x height 512x512 makes 512x512 = 262,144 pixels, over the working size of 65,536" in plan_text(
        *common, "Resize to", 512, 512, 1.0, "Just resize"
    )
    assert "Output **256×128** (resize to 256×128; just resize)" in plan_text(
        engine, None, "sd15", 0.5, 4, None, "Resize to", 256, 128, 1.0, "Just resize"
    )
    assert "⚠️ scale_by must be in [0.05, 4], got 9.0" in plan_text(*common, "Resize by", 512, 512, 9, "Just resize")


def test_the_api_takes_the_size_arguments_last_and_keeps_positional_callers(client, cat_png):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    info = client.view_api(return_format="dict", print_info=False)
    names = [p["parameter_name"] for p in info["named_endpoints"]["/img2img"]["parameters"]]
    assert names[-5:] == ["output_size", "width", "height", "scale_by", "resize_mode"]
    # a positional caller of before (image .. seed) still gets the input's size
    gallery, *_ = client.predict(handle_file(str(cat_png)), "a cat", "", "sd15", 1.0, 7.5, 2, 5, api_name="/img2img")
    with Image.open(gallery[0]["image"]) as image:
        assert image.size == (200, 136)
    gallery, _, summary, script, _ = client.predict(
        handle_file(str(cat_png)),
        "a cat",
        num_inference_steps=2,
        strength=1.0,
        seed=5,
        output_size="Resize to",
        width=128,
        height=192,
        resize_mode="Resize and fill",
        api_name="/img2img",
    )
    with Image.open(gallery[0]["image"]) as image:
        assert image.size == (128, 192)
    assert "resized from 200x136 to 128x192 (resize and fill)" in summary and "def resize_image(" in script
    with pytest.raises(AppError, match="resize_mode must be one of Just resize"):
        client.predict(
            handle_file(str(cat_png)), "a cat", output_size="Resize to", resize_mode="fill", api_name="/img2img"
        )
