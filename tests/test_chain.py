"""Chains: presets run, latent hand-over equals the guide's code path, guards refuse before any work."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoPipelineForImage2Image
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from workflow_cases import middle_mask

from engine.pipelines.calls import CancelToken
from engine.workflows.chain import PRESETS, ChainRequest, plan_chain, stages_json


@pytest.fixture()
def small(photo):
    return photo.resize((64, 64))


def fast(preset, steps=4):
    """A preset's stages with few steps, as JSON, so tests stay quick."""
    rows = json.loads(stages_json(preset))
    for row in rows:
        row["num_inference_steps"] = steps
    return json.dumps(rows)


def final_of(engine, request):
    *_, last = engine.chain(request)
    assert last.finished, last.stopped
    return last


def test_each_preset_runs(engine, small):
    for preset in ("image-image-image", "text-image-image"):
        image = None if preset.startswith("text") else small
        last = final_of(engine, ChainRequest(image=image, preset="", stages=fast(preset), seed=1, width=96, height=64))
        assert len(last.results) == len(PRESETS[preset])
        assert all(r.image is not None for r in last.results)


def test_upscale_preset_makes_eight_times_the_init_side(engine, small):
    last = final_of(engine, ChainRequest(image=small, preset="image-upscale-superres", seed=2))
    assert [r.image.size for r in last.results] == [(64, 64), (128, 128), (512, 512)]
    assert [r.passes for r in last.results] == ["latent", "image", None]
    assert last.comparison().size == (1024, 512)


def test_latent_handover_equals_the_guides_code(engine, small, twins):
    """The image-image-image chain by hand with raw diffusers and output_type="latent", same seeds."""
    last = final_of(engine, ChainRequest(image=small, preset="", stages=fast("image-image-image", 5), seed=42))
    subject = ChainRequest().prompt
    prompts = [subject, f"{subject}, charliebo artstyle", f"{subject}, pixelartstyle"]
    image = last.plan.init.image
    for index, (key, prompt) in enumerate(zip(("sd15", "comic-diffusion", "pixel-art-style"), prompts, strict=True)):
        pipe = AutoPipelineForImage2Image.from_pretrained(twins / key)  # the fine-tunes publish .bin only
        pipe.set_progress_bar_config(disable=True)
        output_type = "pil" if index == 2 else "latent"
        image = pipe(
            prompt,
            image=image,
            strength=0.8,
            guidance_scale=7.5,
            num_inference_steps=5,
            generator=torch.Generator("cpu").manual_seed(42),
            output_type=output_type,
        ).images
        if output_type == "pil":
            image = image[0]
    assert np.array_equal(np.asarray(last.final), np.asarray(image))


def test_decode_encode_handover_differs_but_keeps_sizes(engine, small):
    request = ChainRequest(image=small, preset="", stages=fast("image-image-image"), seed=3)
    latent = final_of(engine, request)
    decoded = final_of(engine, replace(request, latent_handover=False))
    assert [s.receives for s in decoded.plan.stages] == [None, "image", "image"]
    assert decoded.final.size == latent.final.size
    assert not np.array_equal(np.asarray(decoded.final), np.asarray(latent.final))


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        (["sd15", "comic-diffusion"], ["latent"]),
        (["sd15", "kandinsky22"], ["image"]),  # Kandinsky never receives SD latents
        (["sd15", "sdxl-refiner"], ["image"]),  # other VAE scaling: decode
        (["sd15", "sd-x2-latent-upscaler", "sd-x4-upscaler"], ["latent", "image"]),
        (["sdxl-refiner", "sd-x2-latent-upscaler"], ["image"]),  # the x2 upscaler takes only SD 1.x latents
    ],
)
def test_handover_follows_the_latent_family(settings, small, models, expected):
    plan = plan_chain(ChainRequest(image=small, preset="", stages=[{"model": m} for m in models]), settings)
    assert [s.receives for s in plan.stages[1:]] == expected


def test_oversized_chain_is_refused_with_its_size(settings):
    big = Image.new("RGB", (1024, 1024), (90, 120, 150))
    with pytest.raises(ValueError, match=r"stage 3 \(sd-x4-upscaler\) would make a 8192x8192 image"):
        plan_chain(ChainRequest(image=big, preset="image-upscale-superres"), settings)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"preset": "nope"}, "preset must be one of text-image-image"),
        (
            {"preset": "", "stages": json.dumps([{"model": "sd15"}] * 50)},
            "stages has 50 stages; a chain takes at most 5",
        ),
        ({"preset": "", "stages": "{bad"}, "stages is not valid JSON"),
        ({"preset": "", "stages": '[{"model": "sd15", "colour": 1}]'}, "stage 1 has unknown keys"),
        ({"preset": "", "stages": '[{"model": "../../etc"}]'}, "model must be one of sd15"),
        ({"preset": "", "stages": '[{"model": "sd15"}, {"model": "sd15", "kind": "text2img"}]'}, "only be the first"),
        ({"preset": "", "stages": '[{"model": "sd15", "strength": 2}]'}, r"stage 1 \(sd15\): strength must be in"),
        ({"preset": "", "stages": '[{"model": "sd-x4-upscaler"}]', "image": None}, "needs an init image"),
        ({"preset": "", "stages": ""}, "stages is empty"),
    ],
)
def test_bad_chains_are_refused_before_any_work(settings, small, changes, message):
    request = replace(ChainRequest(image=small), **changes)
    with pytest.raises(ValueError, match=message):
        plan_chain(request, settings)


def test_text_to_image_shares_weights_with_img2img(engine, small):
    final_of(engine, ChainRequest(image=None, preset="", stages=fast("text-image-image", 4), width=64, height=64))
    text2img = engine.cache.peek("sd15", "text2img")
    img2img = engine.cache.get("sd15", "img2img")
    assert text2img.unet is img2img.unet and text2img.vae is img2img.vae


def test_stop_keeps_finished_stages(engine, small):
    token = CancelToken()
    request = ChainRequest(image=small, preset="", stages=fast("image-image-image"), seed=4)
    states = []
    for state in engine.chain(request, cancel=token):
        states.append(state)
        token.cancel()
    assert states[-1].stopped and len(states[-1].results) == 1 and states[-1].final is None


@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(width=st.integers(64, 451), height=st.integers(64, 300))
@example(width=451, height=300)  # the whole cat: 312x208 at the working size, 39x26 latents, once a crash
def test_every_preset_runs_on_odd_photo_sizes(engine, width, height):
    """Each stage is sized to its model's real multiple in the plan: the x2 latent upscaler needs latents of a
    multiple of 4, so SD 1.5 before it works at a multiple of 32 pixels (and the others as before). The upscale
    preset runs to its x2 stage here (the x4 one takes pixels, sized for it; 8x the side is slow on a CPU)."""
    from skimage import data

    photo = Image.fromarray(data.chelsea()).crop((0, 0, width, height))
    for preset in PRESETS:
        image = None if preset.startswith("text") else photo
        rows = json.loads(fast(preset))
        rows = rows[:2] if preset == "image-upscale-superres" else rows[:1] if preset == "inpaint-upscale" else rows
        mask = middle_mask(photo) if any(row.get("kind") == "inpaint" for row in rows) else None
        request = ChainRequest(image=image, preset="", stages=rows, seed=3, width=width, height=height, mask=mask)
        plan = engine.plan(request)
        last = final_of(engine, request)
        assert [r.image.size for r in last.results] == [stage.output_size for stage in plan.stages]
    whole = engine.plan(ChainRequest(image=photo, preset="image-upscale-superres", seed=1))
    assert all(side % 32 == 0 for side in whole.stages[0].output_size), whole.stages[0].output_size


def test_a_later_stage_that_fails_keeps_the_finished_stages_and_says_why(engine, small, caplog):
    """The x2 latent upscaler once crashed on ordinary photo sizes after stage 1 ran; whatever breaks a later stage,
    the finished stages stay (as on Stop) and the failure names the stage and the reason."""
    request = ChainRequest(image=small, preset="", stages=fast("image-image-image"), seed=4)
    plan = engine.plan(request)
    denoiser = engine.cache.get(plan.stages[1].spec.key, plan.stages[1].kind).unet

    def broken(module, args):
        raise RuntimeError("Sizes of tensors must match (simulated)")

    handle = denoiser.register_forward_pre_hook(broken)
    try:
        states = list(engine.chain(plan))
    finally:
        handle.remove()
    last = states[-1]
    assert len(last.results) == 1 and last.results[0].image is not None and last.final is None
    assert not last.finished and last.stopped is None
    why = "something went wrong inside the app (RuntimeError); the server logged it"
    assert last.failed == f"Stage {plan.stages[1].label} failed: {why}"
    assert "Sizes of tensors must match (simulated)" in caplog.text  # the log has the traceback, the page the words
    from ui.chain import summary_text

    assert "The finished stages are kept" in summary_text(last)


def test_a_first_stage_that_fails_is_an_error_as_before(engine, small):
    request = ChainRequest(image=small, preset="", stages=fast("image-image-image"), seed=4)
    plan = engine.plan(request)
    denoiser = engine.cache.get(plan.stages[0].spec.key, plan.stages[0].kind).unet
    handle = denoiser.register_forward_pre_hook(lambda module, args: (_ for _ in ()).throw(RuntimeError("boom")))
    try:
        with pytest.raises(RuntimeError, match="boom"):
            list(engine.chain(plan))
    finally:
        handle.remove()


def test_an_api_caller_of_a_chain_whose_later_stage_failed_gets_the_finished_stages_script(engine, small, tmp_path):
    """/chain's handler, as an API caller meets it: after a later stage failed, the last finished stage's script
    and downloads come back with the stages (the page offers them on selecting a stage; a caller has only these)."""
    from ui.chain import handler

    small.save(tmp_path / "small.png")
    stages = fast("image-image-image")
    plan = engine.plan(ChainRequest(image=small, preset="", stages=stages, seed=4))
    denoiser = engine.cache.get(plan.stages[1].spec.key, plan.stages[1].kind).unet

    def broken(module, args):
        raise RuntimeError("simulated")

    handle = denoiser.register_forward_pre_hook(broken)
    try:
        *_, last = handler(engine)(str(tmp_path / "small.png"), "", "a cat", 4, stages)
    finally:
        handle.remove()
    gallery, final, _, summary, script, downloads, _ = last
    assert len(gallery) == 1 and final is None and "failed" in summary
    assert "# stage 1: sd15 (img2img)" in script and "stage 2" not in script
    assert sorted(Path(path).name for path in downloads) == ["init.png", "recipe.json", "recipe.py"]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_a_presets_stages_json_runs_what_the_preset_runs(settings, small, preset):
    """The Stages box shows a preset as JSON; editing it switches to custom, so the JSON must plan the very stages
    the preset does (a stage's own strength once showed the model's default instead)."""
    image = None if preset.startswith("text") else small
    mask = middle_mask(small) if any(stage.kind == "inpaint" for stage in PRESETS[preset]) else None
    as_preset = plan_chain(ChainRequest(image=image, preset=preset, seed=1, mask=mask), settings)
    as_json = plan_chain(
        ChainRequest(image=image, preset="", stages=stages_json(preset, settings), seed=1, mask=mask), settings
    )
    assert as_json.stages == as_preset.stages
