import math

import pytest
from PIL import Image

from engine.workflows.basic import Img2ImgRequest
from engine.workflows.checks import denoising_steps, seed_series

IMAGE = Image.new("RGB", (64, 64), (10, 20, 30))


def plan(settings, **changes):
    fields = dict(image=IMAGE, prompt="a cat", model="sd15")
    fields.update(changes)
    return Img2ImgRequest(**fields).validate(settings)


def test_defaults_follow_the_model(settings):
    assert plan(settings).strength == 0.8
    refiner = plan(settings, model="sdxl-refiner")
    assert (refiner.strength, refiner.guidance_scale) == (0.5, 5.0)
    assert plan(settings, model="kandinsky22").strength == 0.3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strength": 0.0}, r"strength must be in \(0, 1\], got 0.0"),
        ({"strength": 1.5}, r"strength must be in \(0, 1\], got 1.5"),
        ({"strength": math.nan}, "strength must be a finite number, got nan"),
        ({"strength": "abc"}, "strength must be a number, got 'abc'"),
        ({"guidance_scale": -1}, r"guidance_scale must be in \[0, 50\], got -1.0"),
        ({"guidance_scale": math.inf}, "guidance_scale must be a finite number, got inf"),
        ({"num_inference_steps": 0}, r"num_inference_steps must be in \[1, 150\], got 0"),
        ({"num_inference_steps": 10**6}, r"num_inference_steps must be in \[1, 150\], got 1000000"),
        ({"num_inference_steps": 10.5}, "num_inference_steps must be a whole number, got 10.5"),
        ({"num_inference_steps": 3, "strength": 0.3}, r"int\(3 x 0.3\) = 0"),
        ({"seed": 2**32}, r"seed must be in \[0, 4294967296\) or -1 for random, got 4294967296"),
        ({"seed": -2}, "seed must be in .* got -2"),
        ({"seed": "abc"}, "seed must be a whole number .* got 'abc'"),
        ({"seed": math.nan}, "seed must be a whole number .* got nan"),
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "x" * 5000}, "prompt is 5,000 characters long; the limit is 2,000"),
        ({"negative_prompt": "x" * 5000}, "negative_prompt is 5,000 characters long"),
        ({"model": "../../etc"}, r"model must be one of sd15, .*; got '../../etc'"),
        ({"model": "sd-x4-upscaler"}, "model must be one of .*; got 'sd-x4-upscaler'"),
        ({"num_images": 1000}, r"num_images must be in \[1, 4\], got 1000"),
        ({"weighted_prompt": True, "model": "kandinsky22"}, "weighted_prompt is not available: Kandinsky 2.2"),
        ({"image": None}, "image is required"),
        ({"image": Image.new("RGB", (7, 7))}, "image is 7x7"),
    ],
)
def test_bad_values_name_the_parameter(settings, changes, message):
    with pytest.raises(ValueError, match=message):
        plan(settings, **changes)


def test_whole_floats_and_control_characters(settings):
    result = plan(settings, num_inference_steps=20.0, prompt="a\x00cat\x1b", seed=5.0)
    assert result.num_inference_steps == 20 and isinstance(result.num_inference_steps, int)
    assert result.prompt == "a cat"
    assert result.seeds == (5,)


def test_random_seed_is_concrete_and_leaves_room(settings):
    seeds = plan(settings, seed=-1, num_images=3).seeds
    assert len(seeds) == 3 and seeds[1] == seeds[0] + 1 and 0 <= seeds[0] < 2**32


def test_seed_series_wraps():
    assert seed_series(2**32 - 1, 2) == (2**32 - 1, 0)


@pytest.mark.parametrize(
    ("steps", "strength", "expected"), [(50, 0.8, 40), (100, 0.29, 28), (10, 1.0, 10), (3, 0.3, 0)]
)
def test_denoising_steps_use_diffusers_arithmetic(steps, strength, expected):
    # 100 x 0.29 is 28.999999999999996 in floating point: diffusers runs 28, so do we.
    assert denoising_steps(steps, strength) == expected


def test_prompt_nesting_is_refused_just_past_the_limit():
    from engine.pipelines.prompts import MAX_WEIGHT_NESTING, check_nesting

    check_nesting("prompt", "(" * MAX_WEIGHT_NESTING + "cat" + ")" * MAX_WEIGHT_NESTING)
    check_nesting("prompt", ")" * 50 + "(cat)" * 50)  # closers first and siblings do not add up
    deep = MAX_WEIGHT_NESTING + 1
    with pytest.raises(ValueError, match=f"prompt nests brackets {deep} deep; weighted prompts take at most"):
        check_nesting("prompt", "[" * deep + "cat" + "]" * deep)
    with pytest.raises(ValueError, match=f"nests brackets {deep} deep"):  # stray closers do not buy depth
        check_nesting("prompt", ")" * 5 + "(" * deep + "cat")
