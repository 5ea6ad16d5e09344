"""The current families past the guide (SDXL base 1.0 with its depth ControlNet, SD3.5 Medium, FLUX.1 schnell
and dev) against raw diffusers on their twins, their defaults, and the owner's token for gated repositories."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import AutoPipelineForImage2Image
from PIL import Image

from engine.base.settings import Settings
from engine.models.catalog import get_spec, models_for
from engine.models.tiny import build_t5_tokenizer
from engine.pipelines.device import DevicePolicy, auto_offload, model_dtype
from engine.pipelines.loading import load_failure, load_options
from engine.pipelines.schedulers import steps_run
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.chain import ChainRequest
from engine.workflows.depth import DepthRequest, depth_models, depth_to_control, load_depth_map
from engine.workflows.sweep import SweepRequest

CURRENT = ["sdxl-base", "sd35-medium", "flux-schnell", "flux-dev"]
PROMPT = "a cat wizard in a misty forest"


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def raw_img2img(folder, image, seeds, *, per_seed: bool, **kwargs) -> list[Image.Image]:
    """The diffusers guide's own call on the twin folder, in float32 on the CPU."""
    pipe = AutoPipelineForImage2Image.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    calls = (
        [[torch.Generator("cpu").manual_seed(s)] for s in seeds]
        if per_seed
        else [[torch.Generator("cpu").manual_seed(s) for s in seeds]]
    )
    return [im for gens in calls for im in pipe(image=image, generator=gens, **kwargs).images]


def test_every_current_family_serves_img2img_and_text_to_image():
    img2img = models_for("img2img")
    assert set(CURRENT) <= set(img2img) and set(CURRENT) <= set(models_for("text2img"))
    assert "sdxl-base" in depth_models() and get_spec("sdxl-base").adapter.depth_controlnet == "controlnet-depth-sdxl"


@pytest.mark.parametrize("model", CURRENT)
def test_basic_equals_raw_diffusers_on_the_twin(engine, photo, model):
    spec = get_spec(model)
    negative = "" if not spec.adapter.negative_prompt else "blurry"
    request = Img2ImgRequest(
        image=photo,
        prompt=PROMPT,
        model=model,
        negative_prompt=negative,
        strength=0.6,
        guidance_scale=4.0,
        num_inference_steps=5,
        seed=77,
        num_images=2,
    )
    result = engine.img2img(request)
    width, height = result.plan.image.size
    assert (width % spec.size_multiple, height % spec.size_multiple) == (0, 0)
    pipe_class = type(engine.cache.get(model, "img2img")).__name__
    assert (
        pipe_class
        == {
            "sdxl": "StableDiffusionXLImg2ImgPipeline",
            "sd3": "StableDiffusion3Img2ImgPipeline",
            "flux": "FluxImg2ImgPipeline",
        }[spec.family]
    )
    expected = raw_img2img(
        engine.twins_dir / model,
        result.plan.image.image,
        (77, 78),
        per_seed=spec.adapter.one_call_per_seed,
        prompt=PROMPT,
        negative_prompt=negative or None,
        strength=0.6,
        guidance_scale=4.0,
        num_inference_steps=5,
        num_images_per_prompt=1 if spec.adapter.one_call_per_seed else 2,
        height=height,
        width=width,
    )
    assert [im.size for im in result.images] == [(width, height)] * 2  # the input's size, not the native 1024
    for ours, theirs in zip(result.images, expected, strict=True):
        assert np.array_equal(pixels(ours), pixels(theirs))
    assert not np.array_equal(pixels(result.images[0]), pixels(result.images[1]))
    assert result.steps_run == steps_run(model, 5, 0.6) == 3


def test_flux_schnell_keeps_the_partial_step_as_its_pipeline_does(engine, photo):
    """FLUX.1 schnell's defaults (4 steps at strength 0.95, guidance 0): diffusers' flow-matching img2img runs all
    4 steps where int(4 x 0.95) would say 3; the planned count is the count that runs."""
    defaults = get_spec("flux-schnell").defaults
    assert (defaults.num_inference_steps, defaults.guidance_scale, defaults.strength) == (4, 0.0, 0.95)
    result = engine.img2img(Img2ImgRequest(image=photo, prompt=PROMPT, model="flux-schnell", seed=3))
    assert result.plan.num_inference_steps == 4  # quick mode's 10 steps do not raise a 4-step model's own
    assert result.steps_run == result.plan.denoising_steps == 4
    assert steps_run("sdxl-base", 4, 0.95) == 3  # a UNet pipeline keeps int(4 x 0.95)


def test_family_defaults_follow_the_model_cards():
    sd35, dev, sdxl = get_spec("sd35-medium"), get_spec("flux-dev"), get_spec("sdxl-base")
    assert (sd35.defaults.num_inference_steps, sd35.defaults.guidance_scale) == (40, 4.5)
    assert (dev.defaults.num_inference_steps, dev.defaults.guidance_scale) == (28, 3.5)
    assert sdxl.native_size == sd35.native_size == dev.native_size == 1024
    assert sd35.gated and dev.gated and not get_spec("flux-schnell").gated


def test_flux_refuses_a_negative_prompt_by_name(engine, photo):
    with pytest.raises(ValueError, match=r"negative_prompt 'blurry' cannot be used with FLUX\.1 \[schnell\]"):
        engine.plan(Img2ImgRequest(image=photo, prompt="a cat", model="flux-schnell", negative_prompt="blurry"))
    # a chain stage too: FLUX's pipeline would take it and drop it without a word (true_cfg_scale 1)
    stages = [{"model": "sd15"}, {"model": "flux-dev", "negative_prompt": "blurry"}]
    request = ChainRequest(image=photo, preset="", stages=json.dumps(stages), prompt="a cat", seed=1)
    with pytest.raises(ValueError, match=r"stage 2.*negative_prompt 'blurry' cannot be used with FLUX\.1 \[dev\]"):
        engine.plan(request)


def test_weighting_is_refused_for_t5_families_and_works_for_sdxl_base(engine, photo):
    with pytest.raises(ValueError, match=r"weighted_prompt is not available: Stable Diffusion 3\.5 Medium encodes"):
        engine.plan(Img2ImgRequest(image=photo, prompt="a (cat)1.3", model="sd35-medium", weighted_prompt=True))
    plain = engine.img2img(Img2ImgRequest(image=photo, prompt="a cat", model="sdxl-base", num_inference_steps=3))
    weighted = engine.img2img(
        Img2ImgRequest(
            image=photo, prompt="a (cat)1.5", model="sdxl-base", num_inference_steps=3, weighted_prompt=True
        )
    )
    assert weighted.recipe.weighted_prompt and not np.array_equal(pixels(plain.images[0]), pixels(weighted.images[0]))


@pytest.mark.parametrize("model", ["sd35-medium", "flux-schnell"])
def test_a_sweep_cell_equals_the_basic_run_of_its_values(engine, photo, model):
    """SD3.5 and FLUX.1 run one call per cell, so each cell is its Basic run exactly (SDXL base batches cells:
    tests/test_sweep.py checks it beside the SD 1.5 and refiner batches)."""
    assert not get_spec(model).adapter.batches_cells
    base = Img2ImgRequest(image=photo, prompt=PROMPT, model=model, num_inference_steps=4, strength=0.75, seed=9)
    *_, sweep = engine.run(SweepRequest(base=base, x_axis="seed", x_values="9, 10"))
    assert sweep.finished and len(sweep.done_cells) == 2
    for cell in sweep.done_cells:
        single = engine.img2img(Img2ImgRequest(**{**base.__dict__, "seed": cell.plan.seeds[0]}))
        assert np.array_equal(pixels(sweep.images[cell.index]), pixels(single.images[0])), cell.plan.seeds


@pytest.mark.parametrize("model", ["sd35-medium", "flux-dev"])
def test_a_text_to_image_then_img2img_chain_runs_at_the_asked_size(engine, model):
    stages = [
        {"model": model, "kind": "text2img", "num_inference_steps": 3},
        {"model": model, "num_inference_steps": 4, "strength": 0.5},
    ]
    request = ChainRequest(
        image=None, preset="", stages=json.dumps(stages), prompt="a cat", seed=1, width=128, height=96
    )
    *_, chain = engine.run(request)
    assert chain.finished
    assert [result.image.size for result in chain.results] == [(128, 96), (128, 96)]
    assert [result.passes for result in chain.results][:1] == ["image"]  # no shared latents: decoded between


def test_sdxl_depth_controlnet_equals_raw_diffusers(engine, photo, depth_png, twins):
    from diffusers import ControlNetModel, StableDiffusionXLControlNetImg2ImgPipeline

    *_, state = engine.run(
        DepthRequest(
            image=photo,
            depth_map=str(depth_png),
            model="sdxl-base",
            prompt="a cat made of clay",
            strength=0.7,
            guidance_scale=5.0,
            num_inference_steps=4,
            seed=42,
            controlnet_conditioning_scale=0.6,
            restyle_model="none",
        )
    )
    controlnet = ControlNetModel.from_pretrained(twins / "controlnet-depth-sdxl", dtype=torch.float32)
    raw = StableDiffusionXLControlNetImg2ImgPipeline.from_pretrained(
        twins / "sdxl-base",
        controlnet=controlnet,
        dtype=torch.float32,  # its text encoders are published in fp16
    )
    raw.set_progress_bar_config(disable=True)
    width, height = state.controlnet.size
    ramp = np.asarray(depth_to_control(load_depth_map(depth_png, max_input_pixels=10**6)))
    control = Image.fromarray(ramp).resize((width, height), Image.Resampling.BILINEAR).convert("RGB")
    expected = raw(
        prompt="a cat made of clay",
        image=state.plan.image.image,
        control_image=control,
        height=height,
        width=width,
        strength=0.7,
        guidance_scale=5.0,
        num_inference_steps=4,
        controlnet_conditioning_scale=0.6,
        generator=torch.Generator("cpu").manual_seed(42),
    ).images[0]
    assert state.finished and state.controlnet_recipe.extra["controlnet"] == "controlnet-depth-sdxl"
    assert np.array_equal(pixels(state.controlnet), pixels(expected))


def test_the_t5_twin_tokenizer_is_laid_out_as_t5s():
    tokenizer = build_t5_tokenizer(512, 100)
    ids = tokenizer("a red cat")["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id == 1 and tokenizer.pad_token_id == 0
    assert tokenizer.convert_tokens_to_ids("<extra_id_0>") > max(ids) and tokenizer.model_max_length == 512
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a red cat"


# -- the owner's token, dtypes and memory planning ------------------------------------------------------


def test_hub_mode_sends_only_the_owners_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_implicit_token_that_must_not_be_sent")
    spec, policy = get_spec("flux-dev"), DevicePolicy()
    assert load_options(spec, policy, hub=True)["token"] is False  # explicitly none, not HF_TOKEN
    assert load_options(spec, policy, hub=True, token="hf_owner")["token"] == "hf_owner"
    assert "token" not in load_options(spec, policy, hub=False)  # a twin folder needs none
    settings = Settings.from_env({"STUDIO_HF_TOKEN": "hf_owner_secret"})
    assert settings.hf_token == "hf_owner_secret"
    assert "hf_owner_secret" not in repr(settings)
    assert ("STUDIO_HF_TOKEN", "(set)") in [(name, value) for name, value, _ in settings.describe()]


def test_a_gated_repo_without_access_names_its_licence_page_and_the_token_setting():
    import httpx
    from huggingface_hub.errors import GatedRepoError

    response = httpx.Response(403, request=httpx.Request("GET", "https://huggingface.co/api/models/x"))
    error = GatedRepoError("Access to model black-forest-labs/FLUX.1-dev is restricted.", response=response)
    wrapped = OSError("You are trying to access a gated repo.")
    wrapped.__cause__ = error
    message = load_failure(get_spec("flux-dev"), wrapped)
    assert "https://huggingface.co/black-forest-labs/FLUX.1-dev" in message
    assert "STUDIO_HF_TOKEN" in message


def test_flux_and_sd35_run_in_bfloat16_on_cuda_and_the_rest_in_the_policys_dtype():
    cuda = DevicePolicy(device="cuda", dtype=torch.float16)
    assert model_dtype(get_spec("flux-schnell"), cuda) == model_dtype(get_spec("sd35-medium"), cuda) == torch.bfloat16
    assert model_dtype(get_spec("sdxl-base"), cuda) == torch.float16
    assert model_dtype(get_spec("flux-schnell"), DevicePolicy()) == torch.float32
    assert "variant" not in load_options(get_spec("flux-schnell"), cuda, hub=True)
    assert load_options(get_spec("sdxl-base"), cuda, hub=True)["variant"] == "fp16"


class _Pipe:
    """A pipeline's components as the cache measures them: modules of given sizes (float32 parameters)."""

    def __init__(self, **sizes: int) -> None:
        self.components = {name: torch.nn.Linear(n, 1, bias=False) for name, n in sizes.items()}


def test_auto_offload_plans_resident_model_or_sequential_from_the_largest_component():
    pipe = _Pipe(transformer=600, text_encoder_2=300, vae=20)  # 2400 + 1200 + 80 bytes
    assert auto_offload(pipe, 3680, resident=0, budget=4000) == "none"
    assert auto_offload(pipe, 3680, resident=1000, budget=4000) == "model"  # the transformer alone fits
    assert auto_offload(pipe, 3680, resident=0, budget=2000) == "sequential"  # not even the transformer fits


@pytest.mark.parametrize("model", ["sdxl-base", "sd35-medium", "flux-dev"])
def test_the_exported_script_reproduces_the_image(engine, photo, model, tmp_path):
    from test_recipe import rerun

    result = engine.img2img(Img2ImgRequest(image=photo, prompt=PROMPT, model=model, num_inference_steps=4, seed=21))
    recipe = result.recipe.for_image(0)
    assert recipe.extra["family"] == get_spec(model).family
    assert np.array_equal(rerun(tmp_path, recipe, result.plan.image.image), np.asarray(result.images[0]))


def test_a_depth_script_with_the_sdxl_controlnet_reproduces_the_image(engine, photo, depth_png, tmp_path):
    from scripts import replay

    from engine.workflows.registry import script_for

    request = DepthRequest(
        image=photo, depth_map=str(depth_png), model="sdxl-base", num_inference_steps=4, seed=8, restyle_model="none"
    )
    *_, state = engine.run(request)
    script = script_for(state.controlnet_recipe)
    assert "ControlNetModel.from_pretrained(" in script and "controlnet-depth-sdxl" in script
    (tmp_path / "recipe.py").write_text(script)
    state.plan.image.image.save(tmp_path / "init.png")
    state.depth.save(tmp_path / "control.png")
    replay(tmp_path / "recipe.py", "out.png", "init.png", "control.png")
    assert np.array_equal(pixels(Image.open(tmp_path / "out.png")), pixels(state.controlnet))
