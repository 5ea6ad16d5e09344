"""The checks every workflow's request shares, and the limits the UI's sliders read.

A request holds what a user asked for (None means "the model's default"); its `validate()` returns a plan
with every value resolved and checked, or raises `ValueError` whose message names the parameter and
quotes the value it got. Gradio's slider bounds are not a defence: the raw API lets NaN, strings and
out-of-range numbers through, so every check lives here or in the workflow's own module (Basic's request
and plan: engine.workflows.basic).
"""

from __future__ import annotations

import math
import secrets
import unicodedata
from dataclasses import dataclass, replace
from typing import Protocol

from PIL import Image

from engine.base.errors import HUGE, shown_value
from engine.base.images import NormalizedImage, Resize, normalize_image
from engine.base.settings import Settings
from engine.models.catalog import ModelSpec, UnknownModel, get_spec, models_for
from engine.pipelines.portable import resize_image
from engine.pipelines.schedulers import denoising_steps

SEED_LIMIT = 2**32
RANDOM_SEED = -1
MAX_GUIDANCE = 50.0  # every guidance_scale: the engine's check and every slider
MAX_SIDE = 4096  # a requested width or height (a text-to-image start); the working size caps it after


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    integer: bool = False,
) -> float | int:
    """Check a number from the UI or the API and return it as float (or int with `integer`).

    Bounds are inclusive unless `low_open`. Whole floats (20.0) are accepted where an int is wanted.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {shown_value(value)}")
    if isinstance(value, int) and abs(value) > HUGE:  # float(value) would overflow
        raise ValueError(f"{name} must be a finite number, got {shown_value(value)}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {shown_value(value)}")
    if integer:
        if value != int(value):
            raise ValueError(f"{name} must be a whole number, got {shown_value(value)}")
        value = int(value)
    else:
        value = float(value)
    interval = f"{'(' if low_open else '['}{_fmt(low, '-inf')}, {_fmt(high, 'inf')}]"
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be in {interval}, got {shown_value(value)}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be in {interval}, got {shown_value(value)}")
    return value


def _fmt(bound: float | None, default: str) -> str:
    if bound is None:
        return default
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def check_text(name: str, value: object, *, max_chars: int, required: bool = False) -> str:
    """A prompt-like string: control characters become spaces, length is bounded."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__}")
    if len(value) > max_chars:
        raise ValueError(f"{name} is {len(value):,} characters long; the limit is {max_chars:,}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: no tokenizer or PNG chunk can take it
        raise ValueError(
            f"{name} holds an invalid character (U+{ord(value[exc.start]):04X} at position {exc.start}); "
            "retype or paste it again"
        ) from None
    cleaned = "".join(" " if unicodedata.category(c) == "Cc" and c not in "\n\t" else c for c in value).strip()
    if required and not cleaned:
        raise ValueError(f"{name} is empty: describe what the image should become")
    return cleaned


def check_seed(value: object, *, count: int = 1) -> int:
    """A seed in [0, 2^32), or -1 for a random one; returns a concrete seed.

    `count` seeds starting here are used (seed, seed + 1, ...), so a random seed leaves room for them.
    """
    try:
        number = check_number("seed", value)  # a number, finite, not too large for a float
    except ValueError:
        raise ValueError(
            f"seed must be a whole number in [0, {SEED_LIMIT}) or -1 for random, got {shown_value(value)}"
        ) from None
    if number != int(number):
        raise ValueError(f"seed must be a whole number, got {shown_value(value)}")
    seed = int(number)
    if seed == RANDOM_SEED:
        return secrets.randbelow(SEED_LIMIT - count + 1)
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be in [0, {SEED_LIMIT}) or -1 for random, got {shown_value(value)}")
    return seed


def seed_series(seed: int, count: int) -> tuple[int, ...]:
    """The seeds of a multi-image run: seed, seed + 1, ... wrapping at 2^32 (the web UI's convention)."""
    return tuple((seed + i) % SEED_LIMIT for i in range(count))


def normalize_for_model(
    image: object,
    spec: ModelSpec,
    settings: Settings,
    name: str = "image",
    *,
    multiple: int | None = None,
    output: OutputSize | None = None,
) -> NormalizedImage:
    """An input image checked against the settings' limits and sized for the model's latent grid (or `multiple`,
    a multiple of it that later models need too: a chain's latent hand-overs); with `output`, brought to the size
    it asks for, its resize mode's way."""
    resize = None
    if output is not None:
        resize = Resize(size=output.size_for, apply=output.resize, label=output.describe_mode())
    return normalize_image(
        image,
        multiple=multiple or spec.size_multiple,
        max_pixels=settings.working_pixels,
        max_input_pixels=settings.max_input_pixels,
        min_side=settings.min_side,
        name=name,
        resize=resize,
    )


# The output size: the input's own (scaled under the working size), or as the web UI's img2img asks for it
FOLLOW_INPUT, RESIZE_TO, RESIZE_BY = "Follow input", "Resize to", "Resize by"
OUTPUT_SIZES = (FOLLOW_INPUT, RESIZE_TO, RESIZE_BY)
# The AUTOMATIC1111 web UI's resize modes, as it spells them (engine.pipelines.portable.resize_image)
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill")
MIN_SCALE, MAX_SCALE = 0.05, 4.0  # scale_by: the web UI's "Resize by" slider's range


@dataclass(frozen=True)
class OutputSize:
    """A size asked for instead of the input's: `Resize to` width x height, or `Resize by` a scale of the input's
    upright size (the web UI's int(side x scale)); either rounded to `multiple` and checked against the working
    pixels. `mode` is how the image is brought to it."""

    choice: str  # RESIZE_TO or RESIZE_BY
    mode: str
    multiple: int
    max_pixels: int
    min_side: int
    width: int = 0  # RESIZE_TO
    height: int = 0
    scale_by: float = 1.0  # RESIZE_BY

    def asked(self, original: tuple[int, int] | None = None) -> tuple[int, int]:
        """The size asked for, before rounding (RESIZE_BY needs the input's `original` size)."""
        if self.choice == RESIZE_TO:
            return self.width, self.height
        if original is None:
            raise ValueError("scale_by needs the input's size")
        return int(original[0] * self.scale_by), int(original[1] * self.scale_by)

    def size_for(self, original: tuple[int, int] | None) -> tuple[int, int]:
        """The working size for an input of upright size `original`.

        Raises:
            ValueError: a side under the smallest accepted or more pixels than the working size, naming what
                was asked (width and height, or scale_by) and its value.
        """
        asked = self.asked(original)
        width, height = (max(self.multiple, round(side / self.multiple) * self.multiple) for side in asked)
        if self.choice == RESIZE_TO or original is None:
            what = f"width x height {asked[0]}x{asked[1]}"
        else:
            what = f"scale_by {self.scale_by:g} (of the {original[0]}x{original[1]} input)"
        if min(width, height) < self.min_side:
            raise ValueError(f"{what} makes {width}x{height}; each side must be at least {self.min_side} pixels")
        if width * height > self.max_pixels:
            raise ValueError(
                f"{what} makes {width}x{height} = {width * height:,} pixels, over the working size of "
                f"{self.max_pixels:,} pixels; ask for a smaller size"
            )
        return width, height

    def resize(self, image: Image.Image, width: int, height: int) -> Image.Image:
        """The image brought to width x height by this size's resize mode (the function the scripts hold)."""
        return resize_image(image, self.mode, width, height)

    def describe(self, original: tuple[int, int] | None) -> str:
        """What was asked, in words, with the rounding (the plan text): "resize to 500×500, rounded to multiples of
        8, crop and resize"."""
        asked = self.asked(original)
        how = f"resize to {asked[0]}×{asked[1]}" if self.choice == RESIZE_TO else f"resize by {self.scale_by:g}"
        if self.choice == RESIZE_BY:
            how += f" = {asked[0]}×{asked[1]}"
        if self.size_for(original) != asked:
            how += f", rounded to multiples of {self.multiple}"
        return f"{how}; {self.describe_mode()}"

    def describe_mode(self) -> str:
        return self.mode.lower()


def check_output_size(
    choice: object,
    width: object,
    height: object,
    scale_by: object,
    mode: object,
    spec: ModelSpec,
    settings: Settings,
) -> OutputSize | None:
    """The output size a request asks for (None: follow the input, the default); only the values its choice uses
    are checked (a resize to width x height reads no scale_by). A `Resize to` size is checked whole here, before the
    image is opened; a `Resize by` one once the image's size is known (OutputSize.size_for).

    Raises:
        ValueError: naming the parameter and its value.
    """
    if choice not in OUTPUT_SIZES:
        raise ValueError(f"output_size must be one of {', '.join(OUTPUT_SIZES)}; got {shown_value(choice)}")
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}; got {shown_value(mode)}")
    if choice == FOLLOW_INPUT:
        return None
    output = OutputSize(
        choice=choice,
        mode=mode,
        multiple=spec.size_multiple,
        max_pixels=settings.working_pixels,
        min_side=settings.min_side,
    )
    if choice == RESIZE_BY:
        return replace(output, scale_by=float(check_number("scale_by", scale_by, low=MIN_SCALE, high=MAX_SCALE)))
    w = int(check_number("width", width, low=settings.min_side, high=MAX_SIDE, integer=True))
    h = int(check_number("height", height, low=settings.min_side, high=MAX_SIDE, integer=True))
    output = replace(output, width=w, height=h)
    output.size_for((w, h))  # the size is known: refused now, before the image is opened
    return output


def check_model(key: object, kind: str, *, name: str = "model") -> ModelSpec:
    """A catalog key (or one of the owner's models) that serves `kind`; the error names the parameter and lists
    the keys that do, or says why an allowed Hub repo cannot be used."""
    spec = None
    if isinstance(key, str):
        try:
            spec = get_spec(key)
        except UnknownModel:
            spec = None
        except ValueError as exc:  # an allowed Hub repo whose model_index.json says it cannot run here
            raise ValueError(f"{name} {shown_value(key)}: {exc}") from None
    if spec is None or kind not in spec.kinds:
        # a known model serving other kinds (a dedicated inpainting checkpoint in Basic) is named, with what it runs
        serves = f": {spec.label} has no {kind} pipeline, it serves {', '.join(spec.kinds)} only" if spec else ""
        raise ValueError(f"{name} must be one of {', '.join(models_for(kind))}; got {shown_value(key)}{serves}")
    return spec


def check_negative(spec: ModelSpec, negative: str, *, name: str = "negative_prompt") -> None:
    """A negative prompt only for a family that reads one (FLUX.1 has no negative conditioning: refused, not
    silently dropped), wherever a run of `spec` takes one (Basic, a sweep cell, a chain stage)."""
    if negative and not spec.adapter.negative_prompt:
        raise ValueError(
            f"{name} {shown_value(negative)} cannot be used with {spec.label}: it has no negative "
            f"conditioning; leave {name} empty"
        )


def check_flag(name: str, value: object) -> bool:
    """A true/false option; numbers and strings are refused rather than guessed at."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {shown_value(value)}")
    return value


def check_denoising_steps(steps: int, strength: float, model: str | None = None) -> int:
    """The steps an img2img run of `steps` at `strength` denoises (int(steps x strength)).

    Raises:
        ValueError: none would run.
    """
    kept = denoising_steps(steps, strength, model)
    if kept < 1:
        raise ValueError(
            f"num_inference_steps x strength must give at least one denoising step: "
            f"int({steps} x {strength:g}) = 0; raise strength or num_inference_steps"
        )
    return kept


class AskedSampling(Protocol):
    """What a request or a chain stage asks of a run's sampling (None: the model's default)."""

    @property
    def strength(self) -> float | None: ...

    @property
    def guidance_scale(self) -> float | None: ...

    @property
    def num_inference_steps(self) -> int | None: ...


def model_defaults(key: str, settings: Settings) -> tuple[float, float, int]:
    """strength, guidance_scale, num_inference_steps a run of a catalog model starts with (the settings'
    step count: quick mode shortens it).

    Raises:
        ValueError: the model has no sampling defaults (an estimator).
    """
    defaults = get_spec(key).defaults
    if defaults is None:
        raise ValueError(f"model {key!r} has no defaults")
    return defaults.strength, defaults.guidance_scale, settings.steps_default(defaults.num_inference_steps)


def check_sampling(
    spec: ModelSpec, settings: Settings, asked: AskedSampling, *, img2img: bool = True
) -> tuple[float, float, int]:
    """The strength, guidance_scale and num_inference_steps that `asked` (a request or a chain stage: any
    object with those attributes) gives a run of `spec`, each checked; None takes the model's default
    (the settings' step count). Without `img2img` (a text-to-image or upscaler run) strength is not read
    and comes back 1.0: the whole schedule runs.

    Raises:
        ValueError: a value out of range, or steps x strength that leaves no denoising step.
    """
    default_strength, default_guidance, default_steps = model_defaults(spec.key, settings)
    strength = 1.0
    if img2img:
        asked_strength = default_strength if asked.strength is None else asked.strength
        strength = float(check_number("strength", asked_strength, low=0.0, high=1.0, low_open=True))
    asked_guidance = default_guidance if asked.guidance_scale is None else asked.guidance_scale
    guidance = float(check_number("guidance_scale", asked_guidance, low=0.0, high=MAX_GUIDANCE))
    asked_steps = default_steps if asked.num_inference_steps is None else asked.num_inference_steps
    steps = check_number("num_inference_steps", asked_steps, low=1, high=settings.max_steps, integer=True)
    check_denoising_steps(int(steps), strength, spec.key)
    return strength, guidance, int(steps)
