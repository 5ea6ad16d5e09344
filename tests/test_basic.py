"""The Basic workflow against raw diffusers on the tiny twins: same seed, same pixels."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import AutoPipelineForImage2Image

from engine.pipelines.calls import CancelToken, GenerationCancelled
from engine.pipelines.schedulers import steps_text
from engine.workflows.basic import Img2ImgRequest

PROMPT = "cat wizard, gandalf, lord of the rings, detailed, fantasy"


def raw_diffusers(folder, image, seeds, *, per_seed=False, **kwargs):
    """What a reader of the guide would write, loading the same twin from disk.

    per_seed: one call per seed (Kandinsky 2.2's prior cannot take a generator list with a negative prompt).
    """
    # the guide's own call on a CPU: float32 (the refiner's text encoder is published as float16)
    pipe = AutoPipelineForImage2Image.from_pretrained(folder, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    if per_seed:
        calls = [[torch.Generator("cpu").manual_seed(s)] for s in seeds]
        kwargs["num_images_per_prompt"] = 1
    else:
        calls = [[torch.Generator("cpu").manual_seed(s) for s in seeds]]
    return [im for generator in calls for im in pipe(image=image, generator=generator, **kwargs).images]


def pixels(image):
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        ("sd15", {}),
        ("sdxl-refiner", {}),
        # diffusers' Kandinsky img2img reads height/width transposed (engine/models/families/kandinsky22.py)
        ("kandinsky22", "size"),
    ],
)
def test_engine_equals_raw_diffusers(engine, photo, model, extra):
    request = Img2ImgRequest(
        image=photo,
        prompt=PROMPT,
        model=model,
        negative_prompt="blurry",
        strength=0.6,
        guidance_scale=6.0,
        num_inference_steps=5,
        seed=1234,
        num_images=2,
    )
    result = engine.img2img(request)
    plan = result.plan
    assert plan.image.size == (136, 96) if model != "kandinsky22" else (128, 128)
    width, height = plan.image.size
    kwargs = {"height": width, "width": height} if extra == "size" else {}  # swapped, as the app passes them
    expected = raw_diffusers(
        engine.twins_dir / model,
        plan.image.image,
        (1234, 1235),
        prompt=PROMPT,
        negative_prompt="blurry",
        strength=0.6,
        guidance_scale=6.0,
        num_inference_steps=5,
        num_images_per_prompt=2,
        per_seed=model == "kandinsky22",
        **kwargs,
    )
    assert len(result.images) == 2
    for ours, theirs in zip(result.images, expected, strict=True):
        assert ours.size == plan.image.size
        assert np.array_equal(pixels(ours), pixels(theirs))
    assert not np.array_equal(pixels(result.images[0]), pixels(result.images[1]))
    assert result.grid.size == (plan.image.size[0] * 3, plan.image.size[1])


def test_kandinsky_output_follows_a_non_square_input(engine, photo):
    # 136x96 rounds to 128x128 at Kandinsky's multiple of 64; a wider input shows any transposition.
    result = engine.img2img(
        Img2ImgRequest(
            image=photo.resize((200, 96)), prompt="a cat", model="kandinsky22", num_inference_steps=4, seed=1
        )
    )
    assert result.plan.image.size == (192, 128)
    assert result.images[0].size == (192, 128)


def test_image_i_of_a_batch_equals_a_single_run_with_seed_plus_i(engine, photo):
    base = dict(image=photo, prompt="a cat", strength=0.5, num_inference_steps=4)
    batch = engine.img2img(Img2ImgRequest(seed=77, num_images=2, **base))
    single = engine.img2img(Img2ImgRequest(seed=78, **base))
    other = engine.img2img(Img2ImgRequest(seed=79, **base))
    # Batched kernels sum in another order: at most a rounding flip of 1/255 in a few pixels.
    difference = np.abs(pixels(batch.images[1]) - pixels(single.images[0]))
    assert difference.max() <= 1 and difference.mean() < 0.01
    assert np.abs(pixels(other.images[0]) - pixels(single.images[0])).max() > 1


@pytest.mark.parametrize(("model", "warmup"), [("sd15", 1), ("sdxl-refiner", 0), ("kandinsky22", 0)])
def test_steps_really_run(engine, photo, model, warmup):
    seen = []
    result = engine.img2img(
        Img2ImgRequest(image=photo, prompt="a cat", model=model, strength=0.29, num_inference_steps=100, seed=0),
        progress=lambda done, total: seen.append((done, total)),
    )
    # int(100 x 0.29) = 28 in floating point; PNDM (SD 1.5's scheduler) repeats one step, and the plan says so
    assert result.plan.denoising_steps == 28 + warmup
    assert result.steps_run == 28 + warmup
    assert seen[-1] == (28 + warmup, 28 + warmup)
    assert [d for d, _ in seen] == list(range(1, 29 + warmup))


@pytest.mark.parametrize("scheduler", [None, "Euler a", "Heun", "DPM2 Karras", "DPM++ 2M", "LMS", "UniPC"])
def test_the_planned_step_count_is_the_count_that_runs(engine, photo, scheduler):
    """The plan, progress bar and summary count the same steps for every scheduler: diffusers' own
    timesteps decide (PNDM repeats one, second-order schedulers call the UNet twice per step)."""
    seen = []
    request = Img2ImgRequest(
        image=photo, prompt="a cat", strength=0.5, num_inference_steps=9, seed=0, scheduler=scheduler
    )
    result = engine.img2img(request, progress=lambda done, total: seen.append(done))
    assert result.plan.denoising_steps == result.steps_run == len(seen)
    assert steps_text("sd15", 9, 0.5, scheduler).startswith(f"**{result.steps_run}**")


def test_weighted_prompt_uses_compel(engine, photo):
    base = dict(image=photo, negative_prompt="blurry", strength=0.7, num_inference_steps=4, seed=5)
    for model in ("sd15", "sdxl-refiner"):
        plain = engine.img2img(Img2ImgRequest(prompt="a cat", model=model, **base)).images[0]
        unweighted = engine.img2img(Img2ImgRequest(prompt="a cat", model=model, weighted_prompt=True, **base))
        weighted = engine.img2img(Img2ImgRequest(prompt="a (cat)1.8", model=model, weighted_prompt=True, **base))
        # Compel without weights reproduces the pipeline's own encoding; a weight changes the image.
        assert np.abs(pixels(unweighted.images[0]) - pixels(plain)).max() <= 1
        assert np.abs(pixels(weighted.images[0]) - pixels(plain)).max() > 1
        assert weighted.recipe.weighted_prompt and weighted.recipe.parameters["prompt"] == "a (cat)1.8"


def test_long_weighted_prompts_are_not_truncated(engine, photo):
    long_prompt = "a cat, " * 60 + "(wizard hat)1.5"
    result = engine.img2img(
        Img2ImgRequest(
            image=photo, prompt=long_prompt, weighted_prompt=True, num_inference_steps=2, strength=1.0, seed=1
        )
    )
    assert result.images[0].size == (136, 96)


def test_stop_ends_the_run_at_the_next_step_and_the_next_run_works(engine, photo):
    token = CancelToken()

    def progress(done, total):
        if done == 2:
            token.cancel()

    request = Img2ImgRequest(image=photo, prompt="a cat", strength=1.0, num_inference_steps=20, seed=3)
    with pytest.raises(GenerationCancelled) as stopped:
        engine.img2img(request, progress=progress, cancel=token)
    assert stopped.value.steps_done == 2
    assert not engine.cache.lock._is_owned()
    token.reset()
    assert len(engine.img2img(request, cancel=token).images) == 1


def test_recipe_records_what_ran(engine, photo):
    result = engine.img2img(
        Img2ImgRequest(image=photo, prompt="a cat", model="kandinsky22", num_inference_steps=4, seed=9)
    )
    recipe = result.recipe
    assert recipe.pipeline == "KandinskyV22Img2ImgCombinedPipeline"
    assert recipe.scheduler == "DDPMScheduler" and recipe.scheduler_config["beta_schedule"] == "linear"
    assert recipe.seeds == (9,) and recipe.dtype == "float32" and recipe.generator_device == "cpu"
    assert recipe.model_mode == "tiny" and recipe.model_id.endswith("kandinsky22")
    assert recipe.parameters["strength"] == 0.3 and recipe.parameters["negative_prompt"] is None
    assert '"workflow": "img2img"' in recipe.to_json()


def test_tiny_mode_does_not_warn_that_clip_cut_the_apps_own_example(settings, tmp_path):
    """The twins' tokenizers are byte-level, so the app's 96-character example prompt passed 77 tokens there and
    diffusers warned of a truncation the real tokenizer never makes. The run's stderr, as a person sees it."""
    from ui.basic import EXAMPLE_PROMPTS

    prompt = EXAMPLE_PROMPTS["chelsea the cat"]
    assert len(prompt) > 77
    code = (
        "import sys; from pathlib import Path; from PIL import Image\n"
        "from engine.base.settings import Settings; from engine.core import Engine\n"
        "from engine.workflows.basic import Img2ImgRequest\n"
        "engine = Engine(Settings.from_env({}, models='tiny', data_dir=Path(sys.argv[1])))\n"
        "request = Img2ImgRequest(image=Image.new('RGB', (64, 64)), prompt=sys.argv[2], num_inference_steps=2)\n"
        "engine.img2img(request)\n"
        "print('done')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(settings.data_dir), prompt], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-2000:]
    assert "truncated because CLIP" not in done.stderr  # diffusers'
    assert "Token indices sequence length" not in done.stderr  # transformers' (the tokenizer's)
