"""Property tests: request validation and image normalisation hold for any input, not just the examples."""

from __future__ import annotations

import io
import math

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.base.images import fit_size, normalize_image
from engine.workflows.checks import SEED_LIMIT, check_number, check_seed, check_text, denoising_steps, seed_series

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
)


@given(value=anything, low=st.floats(-10, 10), span=st.floats(0, 100), integer=st.booleans())
def test_check_number_returns_a_number_in_bounds_or_names_the_parameter(value, low, span, integer):
    high = low + span
    try:
        result = check_number("strength", value, low=low, high=high, integer=integer)
    except ValueError as error:
        assert str(error).startswith("strength must be"), str(error)
        assert repr(value)[:20] in str(error) or type(value).__name__ in str(error) or "got" in str(error)
        return
    assert not isinstance(value, bool)
    assert math.isfinite(result) and low <= result <= high
    assert isinstance(result, int if integer else float)
    assert result == value


@given(value=anything)
def test_check_seed_gives_a_seed_in_range_or_a_clear_error(value):
    try:
        seed = check_seed(value, count=4)
    except ValueError as error:
        assert str(error).startswith("seed must be"), str(error)
        return
    assert isinstance(seed, int) and 0 <= seed < SEED_LIMIT
    if value != -1:
        assert seed == value
    assert all(0 <= s < SEED_LIMIT for s in seed_series(seed, 4))


@given(text=st.text(max_size=300), limit=st.integers(1, 200))
def test_check_text_is_bounded_and_free_of_control_characters(text, limit):
    try:
        cleaned = check_text("prompt", text, max_chars=limit)
    except ValueError as error:
        assert len(text) > limit and "prompt is" in str(error)
        return
    assert len(cleaned) <= limit
    assert not any(ord(c) < 32 and c not in "\n\t" for c in cleaned)
    assert cleaned == cleaned.strip()


SD15_SCHEDULERS = ["", "DDIM", "PLMS", "Euler", "Euler a", "DPM++ 2M Karras", "Heun", "DPM2", "UniPC", "LMS"]


@settings(max_examples=80, deadline=None)
@given(steps=st.integers(1, 150), strength=st.floats(0.001, 1.0), scheduler=st.sampled_from(SD15_SCHEDULERS))
def test_planned_steps_are_the_model_calls_diffusers_makes(steps, strength, scheduler):
    """The plan's count against diffusers itself: its img2img pipeline's get_timesteps on the scheduler
    built as the app builds it (SD 1.5's own config, a sampler's overrides), one model call per timestep."""
    from types import SimpleNamespace

    from diffusers import StableDiffusionImg2ImgPipeline

    from engine.models.catalog import get_spec
    from engine.models.repos import repo_facts
    from engine.pipelines.schedulers import SCHEDULERS, _class, steps_run

    config = repo_facts(get_spec("sd15").hub_id).config("scheduler/scheduler_config.json")
    class_name, overrides = SCHEDULERS[scheduler] if scheduler else (config["_class_name"], {})
    instance = _class(class_name).from_config(config, **overrides)
    instance.set_timesteps(steps)
    timesteps, kept = StableDiffusionImg2ImgPipeline.get_timesteps(
        SimpleNamespace(scheduler=instance), steps, strength, "cpu"
    )
    assert denoising_steps(steps, strength) == kept
    if kept >= 1:
        assert steps_run("sd15", steps, strength, scheduler or None) == len(timesteps)


@given(
    width=st.integers(1, 5000),
    height=st.integers(1, 5000),
    multiple=st.sampled_from([8, 64]),
    max_pixels=st.integers(64 * 64, 2**20),
)
def test_fit_size_respects_the_multiple_and_the_pixel_cap(width, height, multiple, max_pixels):
    try:
        w, h = fit_size((width, height), multiple=multiple, max_pixels=max_pixels, min_side=64)
    except ValueError as error:
        assert min(width, height) < 64 and "at least 64 pixels" in str(error)
        return
    assert w % multiple == 0 and h % multiple == 0
    assert w * h <= max(max_pixels, multiple * multiple)
    assert w >= multiple and h >= multiple


MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I", "F", "CMYK"]


@st.composite
def images(draw):
    mode = draw(st.sampled_from(MODES))
    width, height = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    image = Image.new(mode, (width, height))
    if mode in ("RGB", "RGBA", "CMYK", "L", "LA", "P", "1"):
        bands = len(image.getbands())
        pixels = rng.integers(0, 256, (height, width, bands), np.uint8)
        image = Image.fromarray(pixels.squeeze(-1) if bands == 1 else pixels, None if bands > 1 else "L")
        image = image.convert(mode)
    orientation = draw(st.sampled_from([1, 3, 6, 8]))
    fmt = draw(st.sampled_from(["PNG", "TIFF", "WEBP", "GIF"]))
    assume(not (fmt in ("WEBP", "GIF") and mode in ("I;16", "I", "F", "CMYK")))
    assume(not (fmt == "PNG" and mode in ("CMYK", "F")))
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    options = {"exif": exif} if fmt in ("PNG", "TIFF", "WEBP") else {}
    image.save(buffer, format=fmt, **options)
    swapped = orientation in (6, 8) and fmt in ("PNG", "TIFF", "WEBP")
    return buffer.getvalue(), (height, width) if swapped else (width, height)


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(case=images(), multiple=st.sampled_from([8, 64]))
def test_normalize_image_gives_rgb_on_the_grid_or_a_named_error(case, multiple):
    data, (width, height) = case
    try:
        result = normalize_image(data, multiple=multiple, max_pixels=2**16, max_input_pixels=50_000, min_side=16)
    except ValueError as error:
        message = str(error)
        assert message.startswith("image "), message
        assert width * height > 50_000 or min(width, height) < 16, message
        return
    assert result.image.mode == "RGB"
    w, h = result.size
    assert w % multiple == 0 and h % multiple == 0
    assert w * h <= max(2**16, multiple * multiple)
    assert result.original_size == (width, height)
    # each side is the scaled side rounded to the grid (half a cell, plus one cell if the cap forced it
    # down), or one cell where the scaled side is shorter than a cell
    scale = min(1.0, (2**16 / (width * height)) ** 0.5)
    for side, original in ((w, width), (h, height)):
        target = original * scale
        assert side == multiple if target < multiple else abs(side - target) <= 1.5 * multiple
