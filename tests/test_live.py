"""Live previews: each family's latent-to-RGB projection, made only when someone watches, the result unchanged."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image
from test_basic import PROMPT, pixels, raw_diffusers

import engine.pipelines.calls as calls
from engine.models.catalog import CATALOG
from engine.models.families import get_family
from engine.pipelines.calls import CancelToken, GenerationCancelled, StepReporter, step_callback_kwargs
from engine.pipelines.live import LivePreview, LiveView, latent_rgb_images
from engine.workflows.basic import Img2ImgRequest
from ui import basic

FAMILIES = {spec.family for spec in CATALOG.values() if "depth" not in spec.kinds}  # not the depth estimators
PROJECTED = sorted(family for family in FAMILIES if get_family(family).latent_rgb is not None)


def by_hand(latent: list, factors, bias) -> np.ndarray:
    """latent[c][y][x] -> uint8 (h, w, 3), one multiply-add at a time."""
    channels, height, width = len(latent), len(latent[0]), len(latent[0][0])
    out = np.zeros((height, width, 3), dtype=np.uint8)
    for y in range(height):
        for x in range(width):
            for k in range(3):
                value = bias[k] + sum(latent[c][y][x] * factors[c][k] for c in range(channels))
                value = min(1.0, max(-1.0, value))
                out[y, x, k] = int(np.round((value + 1) * 127.5))
    return out


def packed_by_hand(latent: list) -> torch.Tensor:
    """(channels, h, w) into FLUX.1's (1, h/2 x w/2, channels x 4): patch (row, col), value c*4 + dy*2 + dx."""
    channels, height, width = len(latent), len(latent[0]), len(latent[0][0])
    tokens = []
    for row in range(height // 2):
        for col in range(width // 2):
            token = [0.0] * (channels * 4)
            for c in range(channels):
                for dy in range(2):
                    for dx in range(2):
                        token[c * 4 + dy * 2 + dx] = latent[c][row * 2 + dy][col * 2 + dx]
            tokens.append(token)
    return torch.tensor([tokens])


def test_the_families_with_a_projection():
    assert PROJECTED == ["flux", "flux-kontext", "qwenimage-edit", "sd15", "sd3", "sdxl", "sdxl-refiner"]
    assert get_family("kandinsky22").latent_rgb is None  # MoVQ: no known map, no preview
    assert get_family("sd-x4-upscaler").latent_rgb is None


@pytest.mark.parametrize("family", PROJECTED)
def test_each_familys_projection_is_its_matmul_by_hand(family):
    rgb = get_family(family).latent_rgb
    channels = len(rgb.factors)
    generator = torch.Generator().manual_seed(7)
    # 4 x 6 latent pixels, values past [-1, 1] included so the clamp shows
    latent = (torch.randn(channels, 4, 6, generator=generator) * 3).tolist()
    if rgb.packed:
        latents = packed_by_hand(latent)
        assert latents.shape == (1, 6, channels * 4)
    else:
        latents = torch.tensor([latent])
    (image,) = latent_rgb_images(latents, rgb, size=(48, 32))  # the output is 48 x 32: a 6 x 4 latent grid
    assert image.size == (6, 4)
    assert np.array_equal(np.asarray(image), by_hand(latent, rgb.factors, rgb.bias))


def test_a_batch_makes_an_image_per_latent():
    rgb = get_family("sd15").latent_rgb
    latents = torch.randn(3, 4, 2, 5, generator=torch.Generator().manual_seed(1))
    images = latent_rgb_images(latents, rgb, size=(40, 16))
    assert len(images) == 3
    for image, latent in zip(images, latents, strict=True):
        assert np.array_equal(np.asarray(image), by_hand(latent.tolist(), rgb.factors, rgb.bias))


def run_watched(engine, request) -> tuple[list[LivePreview], list]:
    previews: list[LivePreview] = []
    result = engine.img2img(request, live_preview=previews.append)
    return previews, result.images


@pytest.mark.parametrize("model", ["sd15", "sdxl-refiner", "sd35-medium", "flux-schnell"])
def test_a_watched_run_previews_each_call_and_makes_the_same_images(engine, photo, model):
    request = Img2ImgRequest(image=photo, prompt="a cat", model=model, num_inference_steps=4, seed=5, num_images=2)
    previews, images = run_watched(engine, request)
    plain = engine.img2img(request).images
    width, height = engine.plan(request).image.size
    calls_made = 2 if get_family(CATALOG[model].family).one_call_per_seed else 1
    assert {preview.step for preview in previews} >= {1}
    assert sum(preview.step == 1 for preview in previews) == calls_made  # every call's first step
    assert sorted({place for preview in previews for place in preview.places}) == [0, 1]
    for preview in previews:
        assert preview.size == (width, height)
        assert all(image.size == (width // 8, height // 8) for image in preview.images)  # the latents' grid
    for ours, theirs in zip(images, plain, strict=True):
        assert np.array_equal(pixels(ours), pixels(theirs))


def test_a_family_without_a_projection_runs_and_previews_nothing(engine, photo):
    request = Img2ImgRequest(
        image=photo, prompt="a cat", model="kandinsky22", num_inference_steps=4, strength=0.5, seed=5
    )
    previews, images = run_watched(engine, request)
    assert previews == [] and len(images) == 1


def counting_projection(monkeypatch) -> list:
    """latent_rgb_images as the reporter calls it, each call counted (and computed as ever)."""
    made: list = []

    def project(*args, **kwargs):
        made.append(args)
        return latent_rgb_images(*args, **kwargs)

    monkeypatch.setattr(calls, "latent_rgb_images", project)
    return made


def test_no_one_watching_means_no_latents_asked_for_and_none_projected(engine, photo, monkeypatch):
    made = counting_projection(monkeypatch)
    request = Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=6, seed=2)
    engine.img2img(request)
    assert made == []
    pipe = engine.cache.get("sd15", "img2img")
    unwatched = StepReporter()
    unwatched.live_view = LiveView(get_family("sd15").latent_rgb, (136, 96), (0,))
    assert step_callback_kwargs(pipe, unwatched) == {"callback_on_step_end": unwatched}
    engine.img2img(request, live_preview=lambda preview: None)  # the counter does count a watched run
    assert len(made) >= 1


def test_previews_come_on_a_calls_first_step_then_once_per_interval(engine, photo):
    pipe = engine.cache.get("sd15", "img2img")
    view = LiveView(get_family("sd15").latent_rgb, photo.size, (0,))
    kwargs = {"prompt": "a cat", "image": photo, "strength": 1.0, "num_inference_steps": 6}
    steps = {}
    for seconds in (3600.0, 0.0):  # none again within the hour; one every step
        previews: list[LivePreview] = []
        reporter = StepReporter(live_preview=previews.append, live_seconds=seconds)
        calls.call_pipeline(pipe, kwargs, seeds=(2,), cache=engine.cache, reporter=reporter, live=view)
        steps[seconds] = [preview.step for preview in previews]
    assert steps[3600.0] == [1]
    assert steps[0.0] == list(range(1, len(steps[0.0]) + 1)) and len(steps[0.0]) >= 6  # PLMS adds a step


def test_stop_from_a_preview_stops_at_the_next_step(engine, photo):
    token = CancelToken()
    request = Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=20, strength=1.0, seed=2)
    with pytest.raises(GenerationCancelled) as stopped:
        engine.img2img(request, cancel=token, live_preview=lambda preview: token.cancel())
    assert stopped.value.steps_done == 2


def test_the_basic_handler_streams_previews_then_the_same_result(engine, photo, tmp_path):
    path = tmp_path / "cat.png"
    photo.save(path)
    img2img = basic.handler(engine)
    kwargs = {"negative_prompt": "blurry", "strength": 0.6, "guidance_scale": 6.0, "num_inference_steps": 5}
    kwargs |= {"seed": 1234, "num_images": 2}
    watched = list(img2img(str(path), PROMPT, **kwargs, live=True))
    *previews, final = watched
    assert previews, "no live preview before the result"
    for gallery, *rest in previews:
        assert len(gallery) == 2 and all(re.fullmatch(r"live preview: step \d+ of \d+", c) for _, c in gallery)
        assert all(isinstance(image, Image.Image) and image.size == (136, 96) for image, _ in gallery)
        assert rest[-1] == []  # no recipe ids: selecting a preview shows no recipe
    (unwatched,) = list(img2img(str(path), PROMPT, **kwargs))  # an API or MCP call: one output, as before
    assert (
        [caption for _, caption in final[0]] == [caption for _, caption in unwatched[0]] == ["seed 1234", "seed 1235"]
    )
    plan = engine.plan(Img2ImgRequest(image=str(path), prompt=PROMPT, model="sd15", **kwargs))
    expected = raw_diffusers(
        engine.twins_dir / "sd15",
        plan.image.image,
        (1234, 1235),
        prompt=PROMPT,
        negative_prompt="blurry",
        strength=0.6,
        guidance_scale=6.0,
        num_inference_steps=5,
        num_images_per_prompt=2,
    )
    for (png, _), theirs in zip(final[0], expected, strict=True):
        assert np.array_equal(pixels(Image.open(png).convert("RGB")), pixels(theirs))
