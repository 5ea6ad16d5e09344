"""Inpaint: each inpaint family equal to plain diffusers' AutoPipelineForInpainting on the twins, the original kept
outside the blurred mask, masks as the web UI and painting tools write them, bad input named, scripts that
reproduce the image."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import AutoPipelineForInpainting
from PIL import Image, ImageDraw
from readers import sd_parsers_read
from scripts import replay

from engine.recipes.recipe import save_png
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.chain import ChainRequest
from engine.workflows.inpaint import ONLY_MASKED, WHOLE_PICTURE, InpaintRequest
from engine.workflows.registry import read_recipe, script_for
from engine.workflows.sweep import SweepRequest


def square_mask(size: tuple[int, int], box=(40, 20, 90, 70)) -> Image.Image:
    """White where to inpaint: a square over the cat's head (chelsea at 136x96)."""
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def plain_inpaint(twin, plan, *, seed: int) -> np.ndarray:
    """What plain diffusers makes of a plan: the twin loaded by AutoPipelineForInpainting, the mask blurred with
    its own mask processor, the original pasted back outside the mask (diffusers does that itself only around a
    masked-only crop)."""
    pipe = AutoPipelineForInpainting.from_pretrained(str(twin), dtype=torch.float32)
    mask = pipe.mask_processor.blur(plan.mask, blur_factor=plan.mask_blur) if plan.mask_blur else plan.mask
    width, height = plan.image.size
    call = dict(prompt=plan.prompt, image=plan.image.image, mask_image=mask, strength=plan.strength)
    call |= dict(guidance_scale=plan.guidance_scale, num_inference_steps=plan.num_inference_steps)
    if plan.only_masked:
        call["padding_mask_crop"] = plan.padding
    if plan.spec.adapter.negative_prompt:
        call["negative_prompt"] = None
    image = pipe(**call, height=height, width=width, generator=[torch.Generator("cpu").manual_seed(seed)]).images[0]
    if not plan.only_masked:
        image = pipe.image_processor.apply_overlay(mask, plan.image.image, image)
    return np.asarray(image)


@pytest.mark.parametrize(
    ("model", "area"),
    [
        ("sd15", WHOLE_PICTURE),
        ("sd15", ONLY_MASKED),
        ("sdxl-base", WHOLE_PICTURE),
        ("sd35-medium", ONLY_MASKED),
        ("flux-schnell", WHOLE_PICTURE),
    ],
)
def test_each_family_equals_plain_diffusers_and_keeps_the_original_outside_the_mask(engine, twins, photo, model, area):
    request = InpaintRequest(
        image=photo,
        mask=square_mask(photo.size),
        prompt="a dog",
        model=model,
        strength=0.9,
        num_inference_steps=4,
        seed=5,
        inpaint_area=area,
        padding=8,
    )
    plan = engine.plan(request)
    (result,) = engine.run(plan)
    ours = np.asarray(result.images[0])
    assert np.array_equal(ours, plain_inpaint(twins / model, plan, seed=5))
    outside = np.asarray(result.mask) == 0  # outside the blurred mask: the original, pixel for pixel
    assert outside.sum() > ours.shape[0] * ours.shape[1] // 2
    assert np.array_equal(ours[outside], np.asarray(plan.image.image)[outside])
    assert not np.array_equal(ours, np.asarray(plan.image.image))  # and inside it, something new


def test_a_painted_layer_and_a_black_and_white_mask_inpaint_the_same(engine, photo):
    """A brush layer (transparent, painted opaque in any colour) is read by its alpha; a black and white mask by
    its brightness; a mask of another size is stretched to the image's and the note says so."""
    layer = Image.new("RGBA", photo.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle((40, 20, 90, 70), fill=(255, 0, 0, 255))  # red paint
    painted = engine.plan(InpaintRequest(image=photo, mask=layer, prompt="a dog", seed=1))
    white = engine.plan(InpaintRequest(image=photo, mask=square_mask(photo.size), prompt="a dog", seed=1))
    assert painted.mask.tobytes() == white.mask.tobytes()
    big = square_mask(photo.size).resize((272, 192), Image.Resampling.NEAREST)
    stretched = engine.plan(InpaintRequest(image=photo, mask=big, prompt="a dog", seed=1))
    assert stretched.mask.size == photo.size
    assert stretched.notes == ("The mask (272x192) is not the image's size (136x96): it was stretched to it.",)
    full = engine.plan(InpaintRequest(image=photo, mask=Image.new("L", (5, 5), 255), prompt="a dog", seed=1))
    assert "The mask covers the whole image: this is img2img with an inpainting pipeline." in full.notes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mask": None}, "mask is required"),
        ({"mask": Image.new("L", (136, 96), 0)}, "mask is empty (136x96, nothing white or opaque)"),
        ({"mask": b"not an image"}, "mask"),
        ({"mask": "m" * 5000}, "mask file 'mmm"),  # a path no file system takes: named, not an OSError
        (
            {"inpaint_area": "Only the cat"},
            "inpaint_area must be one of Whole picture, Only masked; got 'Only the cat'",
        ),
        ({"mask_blur": 65}, "mask_blur"),
        ({"padding": -1}, "padding"),
        ({"model": "kandinsky22"}, "model must be one of"),
        ({"model": "flux-schnell", "negative_prompt": "blurry"}, "negative_prompt"),
    ],
)
def test_bad_input_is_refused_naming_the_parameter(engine, photo, change, message):
    request = InpaintRequest(image=photo, mask=square_mask(photo.size), prompt="a dog", seed=1)
    for name, value in change.items():
        request = InpaintRequest(**{**request.__dict__, name: value})
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        engine.plan(request)


@pytest.mark.parametrize(("area", "grow"), [(WHOLE_PICTURE, 0), (ONLY_MASKED, 0), (WHOLE_PICTURE, 24)])
def test_the_script_reproduces_the_image_from_the_png_init_and_mask(engine, photo, tmp_path, area, grow):
    request = InpaintRequest(
        image=photo,
        mask=square_mask(photo.size),
        prompt="a dog",
        num_inference_steps=4,
        seed=11,
        num_images=2,
        inpaint_area=area,
        mask_blur=6,
        padding=4,
        expand_left=grow,
        expand_fill="noise",
    )
    (result,) = engine.run(engine.plan(request))
    recipe = result.recipe.for_image(1)
    png = save_png(result.images[1], recipe, tmp_path / "result.png")
    read = read_recipe(png)
    assert read == recipe
    assert (read.extra["inpaint_area"], read.extra["mask_blur"], read.extra["padding"]) == (area, 6, 4)
    infotext = Image.open(png).info["parameters"]  # the web UI's names, which its readers parse
    read_back = sd_parsers_read(png).metadata
    if area == ONLY_MASKED:
        assert "Denoising strength: 0.8, Mask blur: 6, Inpaint area: Only masked, Masked area padding: 4" in infotext
        assert (read_back["Mask blur"], read_back["Inpaint area"], read_back["Masked area padding"]) == (
            "6",
            area,
            "4",
        )
    else:  # as the web UI writes a whole-picture inpaint: the area (its default) and the padding unsaid
        assert "Denoising strength: 0.8, Mask blur: 6, Workflow: inpaint" in infotext
        assert "Inpaint area" not in read_back and read_back["Mask blur"] == "6"
    (tmp_path / "recipe.py").write_text(script_for(read))
    result.init_image.save(tmp_path / "init.png")
    result.plan.mask.save(tmp_path / "mask.png")
    replay(tmp_path / "recipe.py", "replayed.png", "init.png", "mask.png", fresh=True)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "replayed.png")), np.asarray(result.images[1]))


@pytest.mark.parametrize("fill", ["edge", "noise", "#336699"])
def test_an_outpaint_grows_the_canvas_and_keeps_the_image_outside_the_overlap(engine, twins, photo, fill):
    request = InpaintRequest(
        image=photo, mask=None, prompt="a garden", expand_right=60, expand_up=8, expand_fill=fill, seed=4
    )
    request = InpaintRequest(**{**request.__dict__, "num_inference_steps": 3, "overlap": 16, "mask_blur": 0})
    plan = engine.plan(request)
    assert plan.image.size == (136 + 64, 96 + 8) and plan.expand == (0, 64, 8, 0)  # 60 rounded up to 64
    assert "Outpaint sides rounded up to multiples of 8." in plan.notes
    canvas, mask = np.asarray(plan.image.image), np.asarray(plan.mask)
    assert np.array_equal(canvas[8:, :136], np.asarray(photo))  # the image, where it was put
    new_area = np.ones(mask.shape, dtype=bool)
    new_area[8:, :136] = False
    if fill == "#336699":
        assert (canvas[new_area] == [0x33, 0x66, 0x99]).all()
    if fill == "edge":
        assert np.array_equal(canvas[8:, 136:], np.repeat(canvas[8:, 135:136], 64, axis=1))
    # painted: the new area and 16 px of the image beside each grown side; kept: the rest
    assert mask[new_area].min() == 255 and mask[8 + 16 :, : 136 - 16].max() == 0
    assert mask[8:24, :120].min() == 255 and mask[24:, 120:136].min() == 255
    (result,) = engine.run(plan)
    ours = np.asarray(result.images[0])
    assert np.array_equal(ours, plain_inpaint(twins / "sd15", plan, seed=4))
    assert np.array_equal(ours[8 + 16 :, : 136 - 16], np.asarray(photo)[16:, :120])  # the image, outside the overlap


def test_an_outpaint_past_the_output_cap_is_refused_with_the_size(engine, photo):
    from dataclasses import replace

    from engine.core import Engine

    small = Engine(replace(engine.settings, max_output_pixels=19_000))
    expected = (
        "expand_left/right/up/down: the canvas would be 200x96 (19200 pixels), past STUDIO_MAX_OUTPUT_PIXELS (19000)"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        small.plan(InpaintRequest(image=photo, mask=None, prompt="a", expand_left=64))
    with pytest.raises(
        ValueError, match=re.escape("expand_fill must be edge, noise or a colour as #rrggbb; got 'red'")
    ):
        engine.plan(InpaintRequest(image=photo, mask=None, prompt="a", expand_left=8, expand_fill="red"))
    with pytest.raises(ValueError, match="expand_up"):
        engine.plan(InpaintRequest(image=photo, mask=None, prompt="a", expand_up=2000))


def test_masks_are_read_by_their_transparency_only_where_some_of_it_is_transparent(engine, photo):
    """A black and white mask saved with alpha (opaque but one pixel at 254) is read by its brightness; a 16-bit
    mask is scaled by its range, so a near-black pixel is not inpainted."""
    rgba = square_mask(photo.size).convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 254))
    plan = engine.plan(InpaintRequest(image=photo, mask=rgba, prompt="a dog", seed=1))
    assert np.array_equal(np.asarray(plan.mask) >= 128, np.asarray(square_mask(photo.size)) == 255)
    deep = np.zeros((96, 136), dtype=np.uint16)
    deep[20:71, 40:91] = 65535
    deep[0:10, 0:10] = 200  # near black in 16 bits
    plan = engine.plan(InpaintRequest(image=photo, mask=Image.fromarray(deep), prompt="a dog", seed=1))
    assert np.array_equal(np.asarray(plan.mask) >= 128, np.asarray(square_mask(photo.size)) == 255)


def test_an_outpaint_past_the_working_size_is_scaled_to_fit_and_an_overlap_too_wide_is_refused(engine, photo):
    pixels = engine.settings.working_pixels
    plan = engine.plan(InpaintRequest(image=photo, mask=None, prompt="a", expand_right=1024, expand_up=512, seed=1))
    assert plan.image.size[0] * plan.image.size[1] <= pixels
    assert any(note.startswith("The grown canvas would have been") for note in plan.notes), plan.notes
    with pytest.raises(ValueError, match=r"overlap 50 would repaint the whole image \(136x96 at the working size\)"):
        engine.plan(InpaintRequest(image=photo, mask=None, prompt="a", expand_up=8, expand_down=8, overlap=50))


def test_the_page_sends_what_was_painted_else_the_uploaded_mask(engine, photo, tmp_path):
    """The Inpaint tab's click: painted strokes (any colour, on transparent layers) become the run's mask; with
    nothing painted, the uploaded mask goes (or none), never the strokes of an earlier run."""
    from ui.inpaint import split_editor

    photo.save(tmp_path / "photo.png")
    stroke = Image.new("RGBA", photo.size, (0, 0, 0, 0))
    ImageDraw.Draw(stroke).rectangle((40, 20, 90, 70), fill=(255, 0, 0, 255))
    stroke.save(tmp_path / "stroke.png")
    Image.new("RGBA", photo.size, (0, 0, 0, 0)).save(tmp_path / "empty.png")
    split = split_editor(engine)
    background, painted = split(
        {"background": str(tmp_path / "photo.png"), "layers": [str(tmp_path / "stroke.png")]}, None
    )
    assert background == str(tmp_path / "photo.png")
    assert Image.open(painted).tobytes() == square_mask(photo.size).tobytes()
    empty = {"background": str(tmp_path / "photo.png"), "layers": [str(tmp_path / "empty.png")]}
    assert split(empty, "uploaded.png") == (str(tmp_path / "photo.png"), "uploaded.png")
    assert split(empty, None) == (str(tmp_path / "photo.png"), None)


def test_an_inpaint_sweep_makes_each_cell_as_plain_diffusers_and_its_script_replays_it(engine, twins, photo, tmp_path):
    """A sweep over an image and its mask: every cell is an inpaint run (equal to plain diffusers with that cell's
    mask blur and inpaint area), its recipe the Inpaint workflow's, and the cell's script reproduces it."""
    base = InpaintRequest(
        image=photo, mask=square_mask(photo.size), prompt="a dog", strength=0.9, num_inference_steps=3, seed=7
    )
    request = SweepRequest(
        base=base, x_axis="mask_blur", x_values="0, 8", y_axis="inpaint_area", y_values="Whole picture\nOnly masked"
    )
    plan = engine.plan(request)
    assert [cell.plan.mask_blur for cell in plan.cells] == [0, 8, 0, 8]
    assert [cell.plan.only_masked for cell in plan.cells] == [False, False, True, True]
    assert len(plan.calls) == 4  # an inpaint cell is a call of its own
    *_, progress = engine.run(plan)
    assert progress.finished and progress.table()[3]["mask_blur"] == 8
    for cell in plan.cells:
        image = progress.images[cell.index]
        assert np.array_equal(np.asarray(image), plain_inpaint(twins / "sd15", cell.plan, seed=7)), cell.caption
    recipe = progress.recipes[3]
    assert recipe.workflow == "inpaint" and recipe.extra["mask_blur"] == 8
    png = save_png(progress.images[3], recipe, tmp_path / "cell.png")
    (tmp_path / "recipe.py").write_text(script_for(read_recipe(png)))
    plan.cells[3].plan.image.image.save(tmp_path / "init.png")
    plan.cells[3].plan.mask.save(tmp_path / "mask.png")
    replay(tmp_path / "recipe.py", "replayed.png", "init.png", "mask.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "replayed.png")), np.asarray(progress.images[3]))


@pytest.mark.parametrize(
    ("base", "axis", "message"),
    [
        ("inpaint", "scheduler", "x_axis 'scheduler' does not apply to an inpainting sweep (with a mask); its axes"),
        ("inpaint", "lora_weight", "x_axis 'lora_weight' does not apply to an inpainting sweep"),
        ("img2img", "mask_blur", "x_axis 'mask_blur' does not apply to a sweep without a mask; its axes"),
    ],
)
def test_a_sweep_refuses_an_axis_its_base_has_not(engine, photo, base, axis, message):
    if base == "inpaint":
        request = InpaintRequest(image=photo, mask=square_mask(photo.size), prompt="a dog")
    else:
        request = Img2ImgRequest(image=photo, prompt="a dog")
    with pytest.raises(ValueError, match=re.escape(message)):
        engine.plan(SweepRequest(base=request, x_axis=axis, x_values="1, 2"))


def test_an_inpaint_sweep_over_models_takes_inpaint_models_and_an_outpaint_grows_once(engine, photo):
    base = InpaintRequest(image=photo, mask=None, prompt="a garden", expand_right=32, seed=3)
    plan = engine.plan(SweepRequest(base=base, x_axis="model", x_values="sd15\ncomic-diffusion"))
    assert [cell.plan.spec.key for cell in plan.cells] == ["sd15", "comic-diffusion"]
    canvas = engine.plan(base).image.image
    for cell in plan.cells:  # the canvas grown once from the base seed, the same for every cell
        assert cell.plan.image.image.tobytes() == canvas.tobytes() and cell.plan.expand is None
    with pytest.raises(ValueError, match="x_values for axis 'model': model must be one of"):
        engine.plan(SweepRequest(base=base, x_axis="model", x_values="sd15\nkandinsky22"))


def test_a_chain_inpaints_what_its_previous_stage_made_as_plain_diffusers_and_its_script_replays_it(
    engine, twins, photo, tmp_path
):
    """img2img -> inpaint: the inpaint stage receives the restyled image (decoded), repaints the mask's white part
    as plain diffusers does on the twin, keeps the rest of what it received, and the chain's script (given its
    init and mask.png) reproduces the final image."""
    stages = [
        {"model": "sd15", "num_inference_steps": 3, "strength": 0.6},
        {"model": "sd15", "kind": "inpaint", "prompt": "a dog", "num_inference_steps": 4, "mask_blur": 6},
    ]
    mask = square_mask(photo.size)
    *_, last = engine.chain(ChainRequest(image=photo, preset="", stages=stages, seed=9, mask=mask))
    assert last.finished and [stage.receives for stage in last.plan.stages] == [None, "image"]
    restyled, inpainted = (result.image for result in last.results)
    pipe = AutoPipelineForInpainting.from_pretrained(str(twins / "sd15"), dtype=torch.float32)
    blurred = pipe.mask_processor.blur(mask, blur_factor=6)
    call = dict(prompt="a dog", image=restyled, mask_image=blurred, strength=last.plan.stages[1].strength)
    call |= dict(guidance_scale=last.plan.stages[1].guidance_scale, num_inference_steps=4, height=96, width=136)
    plain = pipe(**call, generator=[torch.Generator("cpu").manual_seed(9)]).images[0]
    plain = pipe.image_processor.apply_overlay(blurred, restyled, plain)
    assert np.array_equal(np.asarray(inpainted), np.asarray(plain))
    outside = np.asarray(blurred) == 0
    assert np.array_equal(np.asarray(inpainted)[outside], np.asarray(restyled)[outside])
    recipe = last.results[-1].recipe
    assert recipe.parameters["stages"][1]["mask_blur"] == 6
    assert last.plan.script_inputs["mask.png"].tobytes() == mask.tobytes()
    png = save_png(inpainted, recipe, tmp_path / "final.png")
    (tmp_path / "recipe.py").write_text(script_for(read_recipe(png)))
    last.plan.init.image.save(tmp_path / "init.png")
    mask.save(tmp_path / "mask.png")
    replay(tmp_path / "recipe.py", "replayed.png", "init.png", "mask.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "replayed.png")), np.asarray(inpainted))


def test_the_inpaint_upscale_preset_repaints_then_upscales(engine, photo):
    small = photo.resize((96, 64))  # sides of at least 64 (STUDIO_MIN_SIDE's default)
    *_, last = engine.chain(
        ChainRequest(image=small, preset="inpaint-upscale", seed=2, mask=square_mask((96, 64), (8, 8, 40, 30)))
    )
    assert last.finished and [r.image.size for r in last.results] == [(96, 64), (384, 256)]
    assert [stage.kind for stage in last.plan.stages] == ["inpaint", "upscale"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"preset": "inpaint-upscale", "mask": None}, "stage 1 inpaints and needs a mask: upload one"),
        ({"preset": "image-image-image"}, "mask is given but no stage inpaints"),
        ({"preset": "inpaint-upscale", "mask": Image.new("L", (8, 8), 0)}, "mask is empty (136x96"),
        (
            {"preset": "", "stages": '[{"model": "sd15", "kind": "inpaint", "mask_blur": 99}]'},
            "stage 1 (sd15): mask_blur must be",
        ),
        ({"preset": "", "stages": '[{"model": "kandinsky22", "kind": "inpaint"}]'}, "has no inpaint pipeline"),
    ],
)
def test_a_chain_refuses_a_mask_it_cannot_use_naming_it(engine, photo, changes, message):
    request = ChainRequest(image=photo, preset="", stages=None, seed=1, mask=square_mask(photo.size))
    with pytest.raises(ValueError, match=re.escape(message)):
        engine.plan(replace(request, **changes))


def test_the_recipe_tab_says_an_inpaint_script_reads_its_mask(engine, photo, tmp_path):
    from ui.recipe import read_source

    (result,) = engine.run(
        engine.plan(InpaintRequest(image=photo, mask=square_mask(photo.size), prompt="a dog", num_inference_steps=2))
    )
    png = save_png(result.images[0], result.recipe.for_image(0), tmp_path / "inpainted.png")
    found, fields = read_source(str(png), "")
    assert found is not None and fields.values["prompt"] == "a dog"
    assert any(
        "Its script also reads mask.png (python recipe.py result.png init.png mask.png)" in note
        for note in fields.notes
    ), fields.notes
    basic = engine.img2img(Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=2))
    _, plain = read_source(str(save_png(basic.images[0], basic.recipe.for_image(0), tmp_path / "basic.png")), "")
    assert not any("also reads" in note for note in plain.notes)


@pytest.mark.parametrize("area", [WHOLE_PICTURE, ONLY_MASKED])
def test_colour_match_brings_the_repaint_to_the_images_colours_and_the_script_replays_it(
    engine, photo, tmp_path, area
):
    """Colour match (the web UI's colour correction): the repaint's CIELAB colour histograms matched to the image's,
    its lightness kept; the original is still kept outside the mask, and the script reproduces it."""
    from skimage import color

    from engine.pipelines.portable import color_matched

    request = InpaintRequest(
        image=photo, mask=square_mask(photo.size), prompt="a dog", num_inference_steps=3, seed=2, inpaint_area=area
    )
    (plain,) = engine.run(engine.plan(request))
    (matched,) = engine.run(engine.plan(replace(request, color_match=True)))
    init, mask = matched.init_image, matched.mask
    expected = engine.cache.get("sd15", "inpaint").image_processor.apply_overlay(
        mask, init, color_matched(plain.images[0], init)
    )
    assert np.array_equal(np.asarray(matched.images[0]), np.asarray(expected))
    outside = np.asarray(mask) == 0
    assert np.array_equal(np.asarray(matched.images[0])[outside], np.asarray(init)[outside])
    inside = np.asarray(mask) == 255
    assert not np.array_equal(np.asarray(matched.images[0])[inside], np.asarray(plain.images[0])[inside])
    lab = color.rgb2lab(np.asarray(color_matched(plain.images[0], init)))  # lightness kept, colours the image's
    assert np.abs(lab[..., 0] - color.rgb2lab(np.asarray(plain.images[0]))[..., 0]).mean() < 0.5
    recipe = read_recipe(save_png(matched.images[0], matched.recipe.for_image(0), tmp_path / "matched.png"))
    assert recipe.extra["color_match"] is True and "color_match" not in plain.recipe.extra
    (tmp_path / "recipe.py").write_text(script_for(recipe))
    init.save(tmp_path / "init.png")
    matched.plan.mask.save(tmp_path / "mask.png")
    replay(tmp_path / "recipe.py", "replayed.png", "init.png", "mask.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "replayed.png")), np.asarray(matched.images[0]))
    with pytest.raises(ValueError, match="color_match must be true or false, got 'yes'"):
        engine.plan(replace(request, color_match="yes"))


def test_an_inpaint_sweeps_progress_bar_counts_every_cell_from_the_start(engine, photo):
    base = InpaintRequest(image=photo, mask=square_mask(photo.size), prompt="a dog", num_inference_steps=2, seed=1)
    plan = engine.plan(SweepRequest(base=base, x_axis="seed", x_values="1-3"))
    seen: list[tuple[int, int]] = []
    *_, last = engine.sweep(plan, progress=lambda done, total: seen.append((done, total)))
    assert last.finished and seen[-1][0] == seen[-1][1]
    assert {total for _, total in seen} == {seen[-1][1]}, seen  # one total from the first step: no bar full per cell
