"""SD 1.5's dedicated inpainting checkpoint (`sd15-inpainting`, a 9-channel UNet): its twin keeps the 9 channels, the
Inpaint workflow runs it as itself (nothing derived from img2img weights), equal to plain diffusers'
AutoPipelineForInpainting on the same twin in tiny mode and in hub mode, its scripts reproduce the image, and the
tabs without an inpainting pipeline refuse it by name."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from diffusers import AutoPipelineForInpainting
from huggingface_hub import constants
from PIL import Image, ImageDraw
from scripts import replay

from engine.models.catalog import get_spec, models_for
from engine.models.tiny import build_twin
from engine.recipes.recipe import save_png
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.inpaint import ONLY_MASKED, WHOLE_PICTURE, InpaintRequest
from engine.workflows.registry import read_recipe, script_for

KEY = "sd15-inpainting"
HUB_ID = "stable-diffusion-v1-5/stable-diffusion-inpainting"


def square_mask(size: tuple[int, int], box=(40, 20, 90, 70)) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def request(photo, area: str, **changes) -> InpaintRequest:
    fields = dict(image=photo, mask=square_mask(photo.size), prompt="a dog", model=KEY, num_inference_steps=4)
    fields |= dict(seed=5, inpaint_area=area, padding=8)
    return InpaintRequest(**{**fields, **changes})


def plain_inpaint(twin, plan, *, seed: int) -> np.ndarray:
    """Plain diffusers on the twin's folder: AutoPipelineForInpainting.from_pretrained, the mask blurred with its own
    mask processor, the original pasted back outside the mask for the whole picture (diffusers does that itself only
    around a masked-only crop)."""
    pipe = AutoPipelineForInpainting.from_pretrained(str(twin), dtype=torch.float32)
    assert type(pipe).__name__ == "StableDiffusionInpaintPipeline" and pipe.unet.config.in_channels == 9
    mask = pipe.mask_processor.blur(plan.mask, blur_factor=plan.mask_blur) if plan.mask_blur else plan.mask
    width, height = plan.image.size
    call = dict(prompt=plan.prompt, negative_prompt=None, image=plan.image.image, mask_image=mask)
    call |= dict(strength=plan.strength, guidance_scale=plan.guidance_scale)
    call |= dict(num_inference_steps=plan.num_inference_steps, height=height, width=width)
    if plan.only_masked:
        call["padding_mask_crop"] = plan.padding
    image = pipe(**call, generator=[torch.Generator("cpu").manual_seed(seed)]).images[0]
    if not plan.only_masked:
        image = pipe.image_processor.apply_overlay(mask, plan.image.image, image)
    return np.asarray(image)


def test_the_catalog_offers_it_for_inpainting_only_and_the_twin_keeps_nine_channels(twins):
    spec = get_spec(KEY)
    assert spec.hub_id == HUB_ID and spec.kinds == ("inpaint",) and spec.load_kind == "inpaint"
    assert spec.dedicated_to("inpaint") and not get_spec("sd15").dedicated_to("inpaint")
    assert KEY in models_for("inpaint") and KEY not in models_for("img2img") and KEY not in models_for("text2img")
    folder = build_twin(KEY, twins)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionInpaintPipeline" and index["scheduler"][1] == spec.scheduler
    unet = json.loads((folder / "unet" / "config.json").read_text())
    assert (unet["in_channels"], unet["out_channels"]) == (9, 4)  # latents + mask + masked-image latents -> noise


def test_the_inpaint_tab_names_it_as_the_dedicated_model_and_basic_does_not_offer_it():
    from ui.inpaint import model_info

    made_for, through_auto = model_info().split(". Image models inpainting through AutoPipelineForInpainting")
    assert KEY in made_for and "sd15," not in made_for and "best at strength 1.0" in made_for
    assert "sd15, " in through_auto and KEY not in through_auto


@pytest.mark.parametrize("area", [WHOLE_PICTURE, ONLY_MASKED])
def test_tiny_mode_equals_plain_diffusers_on_the_twin(engine, twins, photo, area):
    plan = engine.plan(request(photo, area))
    assert plan.strength == 1.0  # what the checkpoint is made for
    (result,) = engine.run(plan)
    pipe = engine.cache.peek(KEY, "inpaint")
    assert type(pipe).__name__ == "StableDiffusionInpaintPipeline" and pipe.unet.config.in_channels == 9
    assert engine.cache.loaded()[KEY]["kinds"] == ["inpaint"]  # loaded as itself, nothing derived
    ours = np.asarray(result.images[0])
    assert np.array_equal(ours, plain_inpaint(twins / KEY, plan, seed=5))
    outside = np.asarray(result.mask) == 0
    assert np.array_equal(ours[outside], np.asarray(plan.image.image)[outside])
    assert not np.array_equal(ours, np.asarray(plan.image.image))


@pytest.mark.parametrize("area", [WHOLE_PICTURE, ONLY_MASKED])
def test_hub_mode_loads_it_by_repo_id_and_equals_plain_diffusers_on_the_twin(hub_engine, engine, twins, photo, area):
    plan = hub_engine.plan(request(photo, area, strength=0.9))
    (result,) = hub_engine.run(plan)
    assert result.recipe.model_id == HUB_ID
    assert hub_engine.cache.peek(KEY, "inpaint").unet.config.in_channels == 9
    ours = np.asarray(result.images[0])
    assert np.array_equal(ours, plain_inpaint(build_twin(KEY, twins), plan, seed=5))
    (tiny,) = engine.run(engine.plan(request(photo, area, strength=0.9)))
    assert np.array_equal(ours, np.asarray(tiny.images[0]))


@pytest.mark.parametrize("area", [WHOLE_PICTURE, ONLY_MASKED])
def test_the_exported_script_reproduces_the_image(engine, photo, tmp_path, area):
    (result,) = engine.run(engine.plan(request(photo, area, num_images=2, mask_blur=6, seed=11)))
    recipe = result.recipe.for_image(1)
    png = save_png(result.images[1], recipe, tmp_path / "result.png")
    read = read_recipe(png)
    assert read == recipe and read.model == KEY
    script = script_for(read)
    assert "AutoPipelineForInpainting.from_pretrained(" in script
    (tmp_path / "recipe.py").write_text(script)
    result.init_image.save(tmp_path / "init.png")
    result.plan.mask.save(tmp_path / "mask.png")
    replay(tmp_path / "recipe.py", "replayed.png", "init.png", "mask.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "replayed.png")), np.asarray(result.images[1]))


def test_the_hub_mode_script_loads_it_by_repo_id_and_reproduces_the_image(hub_engine, photo, tmp_path):
    (result,) = hub_engine.run(hub_engine.plan(request(photo, WHOLE_PICTURE, strength=0.9)))
    script = script_for(result.recipe.for_image(0))
    assert f"AutoPipelineForInpainting.from_pretrained('{HUB_ID}', dtype=DTYPE, use_safetensors=None" in script
    (tmp_path / "recipe.py").write_text(script)
    result.init_image.save(tmp_path / "init.png")
    result.plan.mask.save(tmp_path / "mask.png")
    env = {"HF_HUB_CACHE": str(constants.HF_HUB_CACHE), "HF_HUB_OFFLINE": "1"}
    replay(tmp_path / "recipe.py", "out.png", "init.png", "mask.png", fresh=True, env={**os.environ, **env})
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), np.asarray(result.images[0]))


def test_basic_refuses_it_naming_it_and_what_it_serves(engine, photo):
    expected = (
        "model must be one of sd15, .*; got 'sd15-inpainting': Stable Diffusion 1.5 Inpainting: the dedicated "
        "inpainting model has no img2img pipeline, it serves inpaint only"
    )
    with pytest.raises(ValueError, match=expected):
        engine.plan(Img2ImgRequest(image=photo, prompt="a cat", model=KEY))
    with pytest.raises(ValueError, match="has no img2img pipeline"):
        engine.cache.get(KEY, "img2img")
