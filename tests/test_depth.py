"""ControlNet depth: depth maps (uploaded, estimated), ControlNet img2img against raw diffusers, restyle."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from controlnets import CALL, raw_controlnet_img2img
from PIL import Image

from engine.base.settings import Settings
from engine.core import Engine, motorcycle_disparity
from engine.pipelines.calls import CancelToken
from engine.pipelines.loading import ModelUnavailable
from engine.recipes.recipe import save_png
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.depth import DepthRequest, control_image, depth_to_control, load_depth_map
from engine.workflows.registry import script_for

CONTROLNET = "controlnet-depth"  # the catalog entry of the SD 1.5 depth ControlNet

STEPS = 4


def run(engine, **fields):
    """The last state of a depth run."""
    states = list(engine.depth(DepthRequest(**fields)))
    return states[-1]


@pytest.fixture()
def depth_png(tmp_path):
    """A 16-bit depth map of another size than the photo: a left-to-right ramp, near on the right."""
    ramp = np.tile(np.linspace(0, 65535, 50), (30, 1)).astype(np.uint16)
    path = tmp_path / "depth16.png"
    Image.fromarray(ramp).save(path)
    return path


# -- depth maps ---------------------------------------------------------------------------------


def test_motorcycle_disparity_becomes_an_8_bit_map_near_bright():
    disparity = motorcycle_disparity()
    assert np.isinf(disparity).any()  # the real map has unknown pixels
    depth = np.asarray(depth_to_control(disparity))
    assert depth.dtype == np.uint8 and depth.shape == disparity.shape
    assert (depth[np.isinf(disparity)] == 0).all()  # unknown counts as far
    finite = np.isfinite(disparity)
    near, far = (
        np.unravel_index(np.argmax(np.where(finite, disparity, -1)), disparity.shape),
        np.unravel_index(np.argmin(np.where(finite, disparity, np.inf)), disparity.shape),
    )
    assert depth[near] == 255 and depth[far] == 0
    # larger disparity is nearer and comes out brighter, everywhere
    order = np.argsort(disparity[finite])
    assert np.all(np.diff(depth[finite][order].astype(int)) >= 0)


def test_the_16_bit_example_map_reads_back_as_the_raw_disparity(engine):
    """The example PNG stores disparity in proportion (0 = infinitely far, where inf was)."""
    assert Image.open(engine.example_depth_map()).mode.startswith("I")
    from_png = np.asarray(depth_to_control(load_depth_map(engine.example_depth_map(), max_input_pixels=10**8)))
    disparity = motorcycle_disparity()
    proportional = disparity / disparity[np.isfinite(disparity)].max()
    from_raw = np.asarray(depth_to_control(proportional, normalize=False))
    assert np.abs(from_png.astype(int) - from_raw).max() <= 1


def test_16_bit_maps_keep_their_precision(depth_png):
    array = load_depth_map(depth_png, max_input_pixels=10**6)
    assert array.shape == (30, 50)
    assert array.min() == 0.0 and array.max() == 1.0
    assert len(np.unique(array)) == 50  # 8-bit quantisation would not change this, but a wrong scale would
    raw = np.asarray(depth_to_control(array, normalize=False))
    assert raw[0, 0] == 0 and raw[0, -1] == 255


def test_a_16_bit_map_with_a_narrow_range_keeps_its_detail(tmp_path):
    """A real sensor's map often spans a sliver of the 16-bit range (here 256 levels within one 8-bit
    level): normalised, it must still become a full ramp, which a map read as 8 bits cannot."""
    narrow = np.tile(np.arange(30000, 30256), (8, 1)).astype(np.uint16)
    path = tmp_path / "narrow16.png"
    Image.fromarray(narrow).save(path)
    array = load_depth_map(path, max_input_pixels=10**6)
    assert len(np.unique(array)) == 256
    control = np.asarray(depth_to_control(array, normalize=True))
    assert control[0, 0] == 0 and control[0, -1] == 255 and len(np.unique(control)) == 256


def test_rgba_maps_count_transparent_pixels_as_far(tmp_path):
    rgba = np.full((20, 20, 4), 200, dtype=np.uint8)
    rgba[:, :10, 3], rgba[:, 10:, 3] = 0, 255  # left half transparent, right half opaque
    path = tmp_path / "depth.png"
    Image.fromarray(rgba, "RGBA").save(path)
    depth = np.asarray(depth_to_control(load_depth_map(path, max_input_pixels=10**6), normalize=False))
    assert (depth[:, :10] == 0).all()
    assert (depth[:, 10:] == 200).all()


def test_rgb_maps_use_their_luminance(tmp_path):
    path = tmp_path / "depth.jpg"
    Image.new("RGB", (16, 16), (90, 90, 90)).save(path, quality=100)
    depth = np.asarray(depth_to_control(load_depth_map(path, max_input_pixels=10**6), normalize=False))
    assert np.abs(depth.astype(int) - 90).max() <= 1


def test_invert_swaps_near_and_far():
    ramp = np.linspace(0, 1, 11).reshape(1, -1)
    plain = np.asarray(depth_to_control(ramp))
    inverted = np.asarray(depth_to_control(ramp, invert=True))
    assert np.abs(plain.astype(int) + inverted - 255).max() <= 1  # rounding
    assert (plain[0, 0], plain[0, -1], inverted[0, 0], inverted[0, -1]) == (0, 255, 255, 0)


def test_a_map_of_another_size_is_resized_to_the_init(engine, photo, depth_png):
    plan = engine.plan(DepthRequest(image=photo, depth_map=str(depth_png), num_inference_steps=STEPS))
    first = next(engine.depth(plan))
    assert first.depth.size == plan.image.size == (136, 96)
    assert first.depth.mode == "RGB"  # the pipeline's control image
    assert control_image(Image.new("L", (7, 5)), (64, 48)).size == (64, 48)


def test_a_map_without_finite_values_is_refused():
    with pytest.raises(ValueError, match="no finite values"):
        depth_to_control(np.full((4, 4), np.inf))


# -- estimators ---------------------------------------------------------------------------------


def test_depth_anything_v2_twin_loads_through_transformers_and_matches_the_image_size(engine, photo):
    from transformers import DepthAnythingForDepthEstimation

    depth = engine.estimate_depth(photo, "depth-anything-v2-small")
    assert isinstance(engine.cache.peek("depth-anything-v2-small", "depth").model, DepthAnythingForDepthEstimation)
    assert depth.size == photo.size and depth.mode == "L"
    values = np.asarray(depth)
    assert values.min() == 0 and values.max() == 255  # normalised


def test_midas_twin_loads_through_controlnet_aux_and_matches_the_image_size(engine, photo):
    big = photo.resize((151, 100))  # a size the detector's 64-pixel grid does not divide
    depth = engine.estimate_depth(big, "midas")
    estimator = engine.cache.peek("midas", "depth")
    assert type(estimator.detector).__name__ == "MidasDetector"
    assert type(estimator.model).__name__ == "MiDaSInference"
    assert depth.size == (151, 100) and depth.mode == "L"
    assert np.asarray(depth).std() > 0


@pytest.mark.parametrize(("key", "weights"), [("zoe", "ZoeD_M12_N.pt"), ("leres", "res101.pth")])
def test_estimators_without_weights_say_what_is_missing(engine, photo, key, weights):
    with pytest.raises(ModelUnavailable) as error:
        engine.estimate_depth(photo, key)
    message = str(error.value)
    assert f"depth_estimator {key!r}" in message and weights in message
    assert "Upload a depth map" in message
    engine.estimate_depth(photo, "depth-anything-v2-small")  # and the next request works


def test_hub_mode_without_network_names_the_missing_midas_weights(settings, photo, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = Engine(Settings.from_env({}, models="hub", data_dir=settings.data_dir))
    with pytest.raises(ModelUnavailable, match=r"dpt_hybrid-midas-501f0c75\.pt from lllyasviel/Annotators"):
        hub.estimate_depth(photo, "midas")


def test_an_estimate_is_reused_by_the_generation_after_it(engine, photo, monkeypatch):
    import engine.core as core

    calls = []
    real = core.estimate
    monkeypatch.setattr(core, "estimate", lambda *args: calls.append(args[1]) or real(*args))
    image = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)  # pixels no other test estimates
    preview = engine.estimate_depth(image, "depth-anything-v2-small", invert=True)
    state = run(
        engine,
        image=image,
        depth_estimator="depth-anything-v2-small",
        invert_depth=True,
        num_inference_steps=STEPS,
        restyle_model="none",
        seed=1,
    )
    assert calls == ["depth-anything-v2-small"]
    assert np.array_equal(np.asarray(state.depth.convert("L")), np.asarray(preview))


# -- ControlNet img2img -------------------------------------------------------------------------


def test_controlnet_pipeline_shares_the_cached_sd15_weights(engine):
    base = engine.cache.get("sd15", "img2img")
    pipe = engine.cache.get_controlnet("sd15", CONTROLNET)
    assert type(pipe).__name__ == "StableDiffusionControlNetImg2ImgPipeline"
    assert pipe.unet is base.unet and pipe.vae is base.vae and pipe.text_encoder is base.text_encoder
    assert pipe.controlnet is engine.cache.peek(CONTROLNET, "controlnet")
    assert engine.cache.get_controlnet("sd15", CONTROLNET) is pipe  # derived once


def test_evicting_the_controlnet_drops_the_derived_pipeline(settings):
    local = Engine(settings)
    local.cache.get_controlnet("sd15", CONTROLNET)
    assert "controlnet-img2img:controlnet-depth" in local.cache.loaded()["sd15"]["kinds"]
    local.cache.evict(CONTROLNET)
    assert local.cache.loaded()["sd15"]["kinds"] == ["img2img"]


def test_controlnet_result_equals_raw_diffusers(engine, photo, depth_png, twins):
    state = run(
        engine, image=photo, depth_map=str(depth_png), num_inference_steps=STEPS, seed=42, restyle_model="none", **CALL
    )
    ramp = np.asarray(depth_to_control(load_depth_map(depth_png, max_input_pixels=10**6)))
    control = Image.fromarray(ramp).resize((136, 96), Image.Resampling.BILINEAR).convert("RGB")
    expected = raw_controlnet_img2img(twins, CONTROLNET, photo, control, STEPS, 42)
    assert state.finished and state.restyled is None
    assert state.controlnet.size == (136, 96)
    assert np.array_equal(np.asarray(state.controlnet), np.asarray(expected))


def test_the_depth_map_steers_the_result(engine, photo):
    """Same seed, two different maps: different images (the ControlNet is really wired in)."""
    flat, ramp = np.zeros((96, 136)), np.tile(np.linspace(0, 1, 136), (96, 1))
    common = dict(image=photo, num_inference_steps=STEPS, seed=5, restyle_model="none", normalize_depth=False)
    a = run(engine, depth_map=flat, **common).controlnet
    b = run(engine, depth_map=ramp, **common).controlnet
    assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_restyle_equals_a_basic_run_on_the_controlnet_result(engine, photo):
    state = run(
        engine,
        image=photo,
        depth_estimator="depth-anything-v2-small",
        prompt="a knight",
        num_inference_steps=STEPS,
        seed=9,
    )
    assert state.finished and [caption for _, caption in state.images()][-1] == "restyled (elden-ring)"
    request = Img2ImgRequest(
        image=state.controlnet,
        prompt="elden ring style a knight",
        model="elden-ring",
        strength=0.45,
        guidance_scale=10.5,
        num_inference_steps=STEPS,
        seed=9,
    )
    basic = engine.img2img(request)
    assert np.array_equal(np.asarray(state.restyled), np.asarray(basic.images[0]))
    assert state.restyle_result.steps_run == basic.steps_run == int(STEPS * 0.45) + 1  # PNDM's warm-up call
    assert state.steps == [STEPS * 0.8 // 1 + 1, basic.steps_run]
    grid = state.grid()
    assert grid.size == (2 * 136, 2 * 96)  # the guide's 2x2 grid
    assert np.array_equal(np.asarray(grid.crop((136, 96, 272, 192))), np.asarray(state.restyled))


def test_stop_during_the_restyle_keeps_the_controlnet_result(engine, photo):
    token = CancelToken()

    def progress(done, total):
        if done > STEPS:  # into the restyle
            token.cancel()

    states = list(
        engine.depth(
            DepthRequest(image=photo, depth_estimator="depth-anything-v2-small", num_inference_steps=STEPS, seed=2),
            progress=progress,
            cancel=token,
        )
    )
    last = states[-1]
    assert last.stopped and "stopped by the user" in last.stopped
    assert last.controlnet is not None and last.restyled is None and not last.finished


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"depth_estimator": "../../etc"}, "depth_estimator must be one of midas, depth-anything-v2-small"),
        ({"model": "sdxl-refiner"}, "model must be a base model with a depth ControlNet"),
        ({"restyle_model": "kandinsky22"}, "restyle_model must be one of sd15, .*; got 'kandinsky22'"),
        ({"restyle_model": "/etc/passwd"}, "restyle_model must be one of"),
        ({"controlnet_conditioning_scale": float("nan")}, "controlnet_conditioning_scale must be a finite number"),
        ({"controlnet_conditioning_scale": 3}, r"controlnet_conditioning_scale must be in \[0, 2\], got 3"),
        ({"control_guidance_start": 0.8, "control_guidance_end": 0.2}, "control_guidance_start must be below"),
        ({"guess_mode": "yes"}, "guess_mode must be true or false, got 'yes'"),
        ({"strength": 0.1, "num_inference_steps": 5}, r"int\(5 x 0.1\) = 0"),
        ({"restyle_strength": 0.0}, r"restyle: strength must be in \(0, 1\]"),
        ({"prompt": "   "}, "prompt is empty"),
    ],
)
def test_bad_values_are_refused_before_any_work(engine, photo, fields, message):
    loads = engine.cache.loads
    with pytest.raises(ValueError, match=message):
        engine.plan(DepthRequest(image=photo, **fields))
    assert engine.cache.loads == loads


def test_an_unreadable_depth_map_is_named(engine, photo, tmp_path):
    bad = tmp_path / "depth.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="depth_map is not an image"):
        engine.plan(DepthRequest(image=photo, depth_map=str(bad)))


def test_exported_script_reproduces_the_controlnet_result(engine, photo, depth_png, tmp_path):
    state = run(
        engine,
        image=photo,
        depth_map=str(depth_png),
        num_inference_steps=STEPS,
        seed=77,
        guess_mode=True,
        restyle_model="none",
    )
    recipe = state.controlnet_recipe
    assert recipe.workflow == "depth" and recipe.extra["depth_source"] == "uploaded"
    assert recipe.parameters["guess_mode"] is True and recipe.parameters["controlnet_conditioning_scale"] == 0.8
    script = tmp_path / "recipe.py"
    script.write_text(script_for(recipe))
    state.plan.image.image.save(tmp_path / "init.png")
    state.depth.save(tmp_path / "control.png")
    save_png(state.controlnet, recipe, tmp_path / "app.png")
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            str(tmp_path / "out.png"),
            str(tmp_path / "init.png"),
            str(tmp_path / "control.png"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), np.asarray(state.controlnet))


def test_an_unset_strength_guidance_or_step_count_is_the_base_models_default(engine, photo, depth_png):
    """One source for defaults: the catalog's, as Basic uses them (the settings' quick step count included)."""
    from engine.models.catalog import get_spec

    defaults = get_spec("sd15").defaults
    plan = engine.plan(DepthRequest(image=photo, depth_map=str(depth_png)))
    assert (plan.strength, plan.guidance_scale) == (defaults.strength, defaults.guidance_scale)
    assert plan.num_inference_steps == engine.settings.steps_default(defaults.num_inference_steps)
    basic = Img2ImgRequest(image=photo, prompt="x").validate(engine.settings)  # the Basic tab's own defaults
    assert (basic.strength, basic.guidance_scale, basic.num_inference_steps) == (
        plan.strength,
        plan.guidance_scale,
        plan.num_inference_steps,
    )
