"""ControlNet depth, as in the guide: a depth map keeps the image's layout through img2img, then an
optional restyle with another model.

A depth map comes from an estimator (engine.models.estimators) or an upload (8- or 16-bit, grey or RGB,
any size); `depth_to_control` turns either into the 8-bit map control_v11f1p_sd15_depth expects,
near bright. The map is resized to the init image's working size before the pipeline sees it:
diffusers fails on a control image of another size (diffusers issue 5953). The ControlNet pipeline
is derived from the cached SD 1.5 pipeline (`PipelineCache.get_controlnet`), so the base weights are
loaded once.

`control_type` picks the condition and its ControlNet (the family's `controlnet_for`): "depth" as above, or
"canny": OpenCV's Canny edges of the init at its working size (`canny_image`, the ControlNet 1.1 annotator's
thresholds 100/200 by default), "scribble": the user's own drawing (the depth_map upload; required), white lines on
black as control_v11p_sd15_scribble expects, a drawing of dark lines on a light ground inverted (`scribble_drawing`),
or "tile": the init itself at its working size (control_v11f1e_sd15_tile's preprocessing is the image, at most
downsampled). For canny and tile an uploaded condition image is used as it is. The exported script reads the
condition image (control.png) for every type, as it does for depth: one path for computed and uploaded conditions,
and the control.png a download carries is the very image the pipeline saw.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from engine.base.errors import shown_number, shown_value
from engine.base.images import NormalizedImage, open_image
from engine.base.settings import Settings
from engine.models.catalog import CATALOG, DEFAULT_MODEL, ModelSpec, get_spec, models_for
from engine.pipelines.cache import PipelineCache
from engine.pipelines.calls import call_pipeline
from engine.pipelines.schedulers import steps_run
from engine.recipes import schema
from engine.recipes.recipe import Recipe
from engine.recipes.script import header, init_image_lines, literal, load, saved, size_literal
from engine.workflows.basic import Img2ImgPlan, Img2ImgRequest, Img2ImgResult, run_img2img
from engine.workflows.checks import (
    RANDOM_SEED,
    check_flag,
    check_model,
    check_number,
    check_sampling,
    check_seed,
    check_text,
    normalize_for_model,
)
from engine.workflows.grid import image_grid
from engine.workflows.shape import GpuWork, RunContext, Workflow, stoppable

DEFAULT_ESTIMATOR = "midas"
DEFAULT_RESTYLE = "elden-ring"
NO_RESTYLE = "none"
DEFAULT_PROMPT = "a futuristic motorcycle in a workshop, neon lights, detailed, 8k"
# StableDiffusionControlNetImg2ImgPipeline's own defaults, which the guide uses
DEFAULT_CONDITIONING_SCALE = 0.8
MAX_CONDITIONING_SCALE = 2.0
# the condition types a request may ask for (its family may have fewer)
CONTROL_TYPES = ("depth", "canny", "scribble", "tile")
DEFAULT_CONTROL_TYPE = "depth"
# the ControlNet 1.1 canny annotator's thresholds (lllyasviel/control_v11p_sd15_canny's model card: 100, 200)
DEFAULT_CANNY_LOW = 100
DEFAULT_CANNY_HIGH = 200
MAX_CANNY_THRESHOLD = 255


def depth_models() -> list[str]:
    """Base models a depth ControlNet fits: img2img models whose family names one (engine.models.families)."""
    return [key for key in models_for("img2img") if get_spec(key).adapter.depth_controlnet]


def control_types_for(model: str) -> tuple[str, ...]:
    """The condition types a base model's family has a ControlNet for, in CONTROL_TYPES' order (none: unknown)."""
    try:
        types = get_spec(model).adapter.control_types
    except ValueError:
        return ()
    return tuple(kind for kind in CONTROL_TYPES if kind in types)


# -- depth maps ---------------------------------------------------------------------------------


def load_depth_map(
    source: Image.Image | str | Path | bytes, *, max_input_pixels: int, name: str = "depth_map"
) -> np.ndarray:
    """An uploaded depth map as float64 (H, W), integer formats scaled to [0, 1] by their bit depth.

    8- and 16-bit greyscale, RGB (its luminance), RGBA and LA (transparent counts as far), palette and
    float maps are accepted; the pixel cap is checked from the header before decoding.
    """
    image = ImageOps.exif_transpose(open_image(source, name=name, max_input_pixels=max_input_pixels))
    mode = image.mode
    if mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float64) / 65535.0
    if mode == "I":
        array = np.asarray(image, dtype=np.float64)
        return array / (65535.0 if array.max(initial=0) <= 65535 else array.max())
    if mode == "F":
        return np.asarray(image, dtype=np.float64)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        grey = np.asarray(rgba.convert("L"), dtype=np.float64) / 255.0
        return grey * np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255.0
    return np.asarray(image.convert("L"), dtype=np.float64) / 255.0


def depth_to_control(depth: np.ndarray, *, invert: bool = False, normalize: bool = True) -> Image.Image:
    """An 8-bit greyscale control map from relative depth, near bright.

    Non-finite values (a disparity map's unknown pixels, inf) count as far. `normalize` stretches the
    finite range to 0..255; without it the map's values are taken as [0, 1] and clipped. `invert`
    swaps near and far, for maps made with far bright.

    Raises:
        ValueError: the map has no finite value.
    """
    array = np.asarray(depth, dtype=np.float64)
    if array.ndim == 3:
        array = array.mean(axis=2)
    if array.ndim != 2:
        raise ValueError(f"depth_map must be a 2-D map, got an array of shape {array.shape}")
    finite = np.isfinite(array)
    if not finite.any():
        raise ValueError("depth_map has no finite values")
    low, high = float(array[finite].min()), float(array[finite].max())
    if normalize:
        array = (array - low) / (high - low) if high > low else np.zeros_like(array)
        array = np.where(finite, array, 0.0)
    else:
        array = np.where(finite, np.clip(array, 0.0, 1.0), 0.0)
    if invert:
        array = 1.0 - array
    return Image.fromarray(np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")


def control_image(depth: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The control image the pipeline gets: the map at the init's working size, as RGB."""
    if depth.size != tuple(size):
        depth = depth.resize(size, Image.Resampling.BILINEAR)
    return depth.convert("RGB")


def scribble_drawing(drawing: Image.Image) -> tuple[Image.Image, bool]:
    """A drawing as the scribble ControlNet's condition: white lines on black, RGB. A drawing whose mean brightness
    is above mid-grey is taken as dark lines on a light ground and inverted; returns (condition, inverted)."""
    drawing = drawing.convert("RGB")
    inverted = bool(np.asarray(drawing.convert("L"), dtype=np.float64).mean() > 127.5)
    return (ImageOps.invert(drawing) if inverted else drawing), inverted


def canny_image(image: Image.Image, low: int, high: int) -> Image.Image:
    """Canny edges of an image (OpenCV, on its greyscale pixels) as the 3-channel control image: white on black."""
    edges = cv2.Canny(np.asarray(image.convert("L")), low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=2), "RGB")


# -- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DepthRequest:
    """What the depth tab (or the `depth` API) asks for. None means the default."""

    image: Image.Image | str | Path | bytes | None
    depth_map: Image.Image | str | Path | bytes | np.ndarray | None = None
    depth_estimator: str = DEFAULT_ESTIMATOR
    prompt: str = DEFAULT_PROMPT
    negative_prompt: str = ""
    strength: float | None = None  # None: the base model's default, as for Img2ImgRequest
    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    seed: int = RANDOM_SEED
    controlnet_conditioning_scale: float = DEFAULT_CONDITIONING_SCALE
    restyle_model: str | None = DEFAULT_RESTYLE
    control_guidance_start: float = 0.0
    control_guidance_end: float = 1.0
    guess_mode: bool = False
    invert_depth: bool = False
    normalize_depth: bool = True
    restyle_prompt: str | None = None  # None: the style's trigger words, then the prompt
    restyle_strength: float | None = None  # None: the style model's default
    restyle_guidance_scale: float | None = None
    model: str = DEFAULT_MODEL
    control_type: str = DEFAULT_CONTROL_TYPE
    canny_low: int = DEFAULT_CANNY_LOW
    canny_high: int = DEFAULT_CANNY_HIGH

    def validate(self, settings: Settings) -> DepthPlan:
        """Check every value before any work.

        Raises:
            ValueError: naming the parameter and the value it got.
        """
        spec = check_model(self.model, "img2img")
        if not spec.adapter.depth_controlnet:
            raise ValueError(
                f"model must be a base model with a depth ControlNet ({', '.join(depth_models())}); got {self.model!r}"
            )
        controlnet = self._controlnet(spec)
        low = check_number("canny_low", self.canny_low, low=1, high=MAX_CANNY_THRESHOLD, integer=True)
        high = check_number("canny_high", self.canny_high, low=1, high=MAX_CANNY_THRESHOLD, integer=True)
        if low >= high:
            raise ValueError(f"canny_low must be below canny_high, got {low} and {high}")
        estimator = check_model(self.depth_estimator, "depth", name="depth_estimator")
        prompt = check_text("prompt", self.prompt, max_chars=settings.max_prompt_chars, required=True)
        negative = check_text("negative_prompt", self.negative_prompt, max_chars=settings.max_prompt_chars)
        strength, guidance, steps = check_sampling(spec, settings, self)
        conditioning = check_number(
            "controlnet_conditioning_scale", self.controlnet_conditioning_scale, low=0.0, high=MAX_CONDITIONING_SCALE
        )
        start = check_number("control_guidance_start", self.control_guidance_start, low=0.0, high=1.0)
        end = check_number("control_guidance_end", self.control_guidance_end, low=0.0, high=1.0)
        if start >= end:
            raise ValueError(
                "control_guidance_start must be below control_guidance_end, "
                f"got {shown_number(start)} and {shown_number(end)}"
            )
        flags = {
            name: check_flag(name, getattr(self, name)) for name in ("guess_mode", "invert_depth", "normalize_depth")
        }
        seed = check_seed(self.seed)
        image = normalize_for_model(self.image, spec, settings)
        condition = None
        inverted = False
        if self.depth_map is None or (isinstance(self.depth_map, str) and not self.depth_map):
            if self.control_type == "scribble":
                raise ValueError(
                    f"depth_map is {shown_value(self.depth_map)}: scribble needs a drawing: upload one as depth_map"
                )
            depth = None  # estimated (or edges found) at run time
        elif self.control_type != "depth":
            depth = None
            condition = self._condition_image(settings)
            if self.control_type == "scribble":
                condition, inverted = scribble_drawing(condition)
        elif isinstance(self.depth_map, np.ndarray):
            depth = np.asarray(self.depth_map, dtype=np.float64)
        else:
            depth = load_depth_map(self.depth_map, max_input_pixels=settings.max_input_pixels)
        restyle = self._restyle_request(image, prompt, negative, steps, seed, settings)
        return DepthPlan(
            spec=spec,
            estimator=estimator,
            image=image,
            depth=depth,
            prompt=prompt,
            negative_prompt=negative,
            strength=strength,
            guidance_scale=guidance,
            num_inference_steps=steps,
            seed=seed,
            controlnet_conditioning_scale=conditioning,
            control_guidance_start=start,
            control_guidance_end=end,
            restyle=restyle,
            **flags,
            control_type=self.control_type,
            controlnet=controlnet,
            canny_low=int(low),
            canny_high=int(high),
            condition=condition,
            scribble_inverted=inverted,
        )

    def _controlnet(self, spec: ModelSpec) -> str:
        """The catalog key of the ControlNet for this request's condition type on its base model."""
        if not isinstance(self.control_type, str) or self.control_type not in CONTROL_TYPES:
            raise ValueError(
                f"control_type must be one of {', '.join(CONTROL_TYPES)}; got {shown_value(self.control_type)}"
            )
        key = spec.adapter.controlnet_for(self.control_type)
        if key is None:
            raise ValueError(
                f"control_type {self.control_type!r} has no ControlNet for model {spec.key!r}, which has "
                f"{', '.join(spec.adapter.control_types)}"
            )
        return key

    def _condition_image(self, settings: Settings) -> Image.Image:
        """An uploaded condition image (not a depth map), RGB as it is; resized to the working size at run time."""
        if isinstance(self.depth_map, np.ndarray):
            raise ValueError(
                f"depth_map must be an image file for control_type {self.control_type!r}, got an array "
                f"of shape {self.depth_map.shape}"
            )
        image = open_image(self.depth_map, name="depth_map", max_input_pixels=settings.max_input_pixels)
        return ImageOps.exif_transpose(image).convert("RGB")

    def _restyle_request(
        self, image: NormalizedImage, prompt: str, negative: str, steps: int, seed: int, settings: Settings
    ) -> Img2ImgRequest | None:
        """The restyle as a Basic request, checked now on the init so a bad value fails before any work."""
        key = self.restyle_model
        if key is None or (isinstance(key, str) and key.strip().lower() in ("", NO_RESTYLE)):
            return None
        style = check_model(key, "img2img", name="restyle_model")
        if style.key not in depth_models():
            raise ValueError(
                f"restyle_model must be one of {', '.join(depth_models())} or {NO_RESTYLE!r}; got {key!r}"
            )
        assert style.defaults is not None  # catalog invariant: img2img models have defaults
        restyle_prompt = self.restyle_prompt
        if restyle_prompt is None or (isinstance(restyle_prompt, str) and not restyle_prompt.strip()):
            restyle_prompt = f"{style.trigger_words} {prompt}".strip()
        request = Img2ImgRequest(
            image=image.image,
            prompt=restyle_prompt,
            model=style.key,
            negative_prompt=negative,
            strength=style.defaults.strength if self.restyle_strength is None else self.restyle_strength,
            guidance_scale=(
                style.defaults.guidance_scale if self.restyle_guidance_scale is None else self.restyle_guidance_scale
            ),
            num_inference_steps=steps,
            seed=seed,
        )
        try:
            request.validate(settings)
        except ValueError as exc:
            raise ValueError(f"restyle: {str(exc).replace('prompt', 'restyle_prompt', 1)}") from None
        return request


@dataclass(frozen=True)
class DepthPlan:
    """A validated depth request. `depth` is the uploaded map (None: estimate it)."""

    spec: ModelSpec
    estimator: ModelSpec
    image: NormalizedImage
    depth: np.ndarray | None
    prompt: str
    negative_prompt: str
    strength: float
    guidance_scale: float
    num_inference_steps: int
    seed: int
    controlnet_conditioning_scale: float
    control_guidance_start: float
    control_guidance_end: float
    guess_mode: bool
    invert_depth: bool
    normalize_depth: bool
    restyle: Img2ImgRequest | None
    control_type: str = DEFAULT_CONTROL_TYPE
    controlnet: str = ""  # the ControlNet's catalog key (the family's for control_type)
    canny_low: int = DEFAULT_CANNY_LOW
    canny_high: int = DEFAULT_CANNY_HIGH
    condition: Image.Image | None = None  # an uploaded condition image of a type other than depth
    scribble_inverted: bool = False  # the uploaded drawing was dark lines on light and was inverted

    @property
    def depth_source(self) -> str:
        """Where the control image came from: uploaded, the init itself (tile), or the estimator (depth) or
        preprocessor (canny)."""
        if self.depth is not None or self.condition is not None:
            return "uploaded"
        if self.control_type == "tile":
            return "init"
        return self.estimator.key if self.control_type == "depth" else self.control_type

    @property
    def condition_notes(self) -> list[str]:
        """What was done to the condition image that the user should know of (the run's notes)."""
        if self.scribble_inverted:
            return [
                "Scribble: the drawing was dark lines on a light ground (mean brightness above mid-grey); it was "
                "inverted to white lines on black, as the scribble ControlNet expects."
            ]
        return []

    def call_kwargs(self, control: Image.Image) -> dict:
        """StableDiffusionControlNetImg2ImgPipeline's arguments; the output size is always passed."""
        width, height = self.image.size
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt or None,
            "image": self.image.image,
            "control_image": control,
            "height": height,
            "width": width,
            "strength": self.strength,
            "guidance_scale": self.guidance_scale,
            "num_inference_steps": self.num_inference_steps,
            "controlnet_conditioning_scale": self.controlnet_conditioning_scale,
            "control_guidance_start": self.control_guidance_start,
            "control_guidance_end": self.control_guidance_end,
            "guess_mode": self.guess_mode,
        }


# -- the run ------------------------------------------------------------------------------------


@dataclass
class DepthProgress:
    """The run so far; yielded when the depth map, the ControlNet result and the restyle are ready."""

    plan: DepthPlan
    depth: Image.Image | None = None  # the control map at the init's working size, RGB
    controlnet: Image.Image | None = None
    restyled: Image.Image | None = None
    controlnet_recipe: Recipe | None = None
    restyle_result: Img2ImgResult | None = None
    steps: list[int] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    stopped: str | None = None
    notes: list[str] = field(default_factory=list)  # faults recovered from (the reporter's list)

    @property
    def finished(self) -> bool:
        if self.stopped is not None or self.controlnet is None:
            return False
        return self.plan.restyle is None or self.restyled is not None

    def images(self) -> list[tuple[Image.Image, str]]:
        """(image, caption) of what exists so far, in the grid's order."""
        items = [(self.plan.image.image, "init")]
        if self.depth is not None:
            items.append((self.depth, f"{self.plan.control_type} ({self.plan.depth_source})"))
        if self.controlnet is not None:
            items.append((self.controlnet, "ControlNet"))
        if self.restyled is not None:
            restyle = self.plan.restyle
            items.append((self.restyled, f"restyled ({restyle.model if restyle else ''})"))
        return items

    def grid(self) -> Image.Image:
        """The guide's 2x2 grid [init, depth, ControlNet result, restyled] (a row of three without restyle)."""
        images = [image for image, _ in self.images()]
        if len(images) == 4:
            return image_grid(images, rows=2, cols=2)
        return image_grid(images, rows=1, cols=len(images))


def estimate(cache: PipelineCache, estimator: str, image: Image.Image) -> np.ndarray:
    """Relative depth of `image` (near large) from a catalog estimator, at the image's size."""
    with cache.lock:
        return cache.get(estimator, "depth").predict(image)


def run_depth(plan: DepthPlan, context: RunContext) -> Iterator[DepthProgress]:
    """Depth map, ControlNet img2img, restyle; yields after each. Stop keeps what is done.

    The context's `estimate(key, image)` gives a depth array (the engine's remembers recent maps).
    """
    progress = start_depth(plan)
    context.reporter.notes.extend(plan.condition_notes)
    progress.notes = context.reporter.notes
    return stoppable(progress, _steps(plan, context, progress))


def start_depth(plan: DepthPlan) -> DepthProgress:
    """A depth run's progress before its depth map."""
    return DepthProgress(plan=plan)


def condition_extra(plan: DepthPlan) -> dict[str, Any]:
    """How the condition was made, for the recipe: depth as before, the others their type (canny its thresholds,
    scribble whether the drawing was inverted)."""
    if plan.control_type == "depth":
        return {"invert_depth": plan.invert_depth, "normalize_depth": plan.normalize_depth}
    if plan.control_type == "canny":
        return {"control_type": plan.control_type, "canny_low": plan.canny_low, "canny_high": plan.canny_high}
    if plan.control_type == "scribble":
        return {"control_type": plan.control_type, "scribble_inverted": plan.scribble_inverted}
    return {"control_type": plan.control_type}


def _steps(plan: DepthPlan, context: RunContext, progress: DepthProgress) -> Iterator[DepthProgress]:
    cache, reporter, model_id = context.cache, context.reporter, context.model_id
    started = time.perf_counter()
    if plan.condition is not None:
        progress.depth = control_image(plan.condition, plan.image.size)
    elif plan.control_type == "canny":
        progress.depth = canny_image(plan.image.image, plan.canny_low, plan.canny_high)
    elif plan.control_type == "tile":
        progress.depth = plan.image.image.convert("RGB")  # the init at its working size, as it is
    else:
        array = plan.depth
        if array is None:
            estimator = context.estimate or (lambda key, image: estimate(cache, key, image))
            array = estimator(plan.estimator.key, plan.image.image)
        control_map = depth_to_control(array, invert=plan.invert_depth, normalize=plan.normalize_depth)
        progress.depth = control_image(control_map, plan.image.size)
    progress.seconds["depth"] = time.perf_counter() - started
    yield progress

    started = time.perf_counter()
    controlnet = plan.controlnet
    pipe = cache.get_controlnet(plan.spec.key, controlnet)
    kwargs = plan.call_kwargs(progress.depth)
    reporter.start_call(calls_left=2 if plan.restyle is not None else 1)
    output = call_pipeline(pipe, kwargs, seeds=(plan.seed,), cache=cache, reporter=reporter)
    progress.controlnet = output.images[0]
    progress.steps.append(reporter.steps)
    progress.seconds["controlnet"] = time.perf_counter() - started
    progress.controlnet_recipe = Recipe.from_pipeline(
        pipe,
        init=plan.image.image,
        workflow="depth",
        model=plan.spec.key,
        model_id=model_id(plan.spec.key),
        generator_device=cache.policy.generator_device,
        seeds=(plan.seed,),
        parameters={k: v for k, v in kwargs.items() if isinstance(v, str | int | float | bool) or v is None},
        size=plan.image.size,
        model_mode=context.model_mode,
        revision=plan.spec.revision,
        extra={
            "family": plan.spec.family,
            "controlnet": controlnet,
            "controlnet_id": model_id(controlnet),
            "depth_source": plan.depth_source,
            **condition_extra(plan),
        },
    )
    yield progress
    if plan.restyle is None:
        return

    restyle_plan: Img2ImgPlan = replace(plan.restyle, image=progress.controlnet).validate(context.settings)
    result = run_img2img(restyle_plan, context)
    progress.restyle_result = result
    progress.restyled = result.images[0]
    progress.steps.append(reporter.steps - progress.steps[0])
    progress.seconds["restyle"] = result.seconds
    yield progress


# -- script export ---------------------------------------------------------------------------------


def depth_script(recipe: Recipe) -> str:
    """ControlNet img2img: the ControlNet loaded, then added to the base img2img pipeline (a Hub repo or the
    owner's single file) with from_pipe, as the app derives it."""
    p = dict(recipe.parameters)
    size = size_literal(recipe.size)
    lines = header(
        recipe,
        f"ControlNet {recipe.extra.get('control_type', DEFAULT_CONTROL_TYPE)} img2img with {recipe.model_id}, "
        f"seed {recipe.seed}",
        ["AutoPipelineForImage2Image", "ControlNetModel"],
        more_args=" [control.png]",
    )
    lines += init_image_lines(recipe.size)
    lines += [
        'CONTROL = sys.argv[3] if len(sys.argv) > 3 else "control.png"',
        f'control_image = Image.open(CONTROL).convert("RGB").resize({size}, Image.Resampling.BILINEAR)',
        "",
        f"controlnet = {load('ControlNetModel', recipe.extra['controlnet'], recipe.extra['controlnet_id'], None)}",
        # the base img2img pipeline with the ControlNet added, as the app derives it (a Hub repo or a file)
        f"base = {load('AutoPipelineForImage2Image', recipe.model, recipe.model_id, recipe.revision)}",
        "pipe = AutoPipelineForImage2Image.from_pipe(base, controlnet=controlnet, dtype=DTYPE).to(DEVICE)",
        "",
        f"call = {literal(p)}",
        f"generator = [torch.Generator(GENERATOR_DEVICE).manual_seed({int(recipe.seed)})]",
        "image = pipe(image=init_image, control_image=control_image, generator=generator, **call).images[0]",
        *saved("image"),
    ]
    return "\n".join(lines)


def work(plan: DepthPlan) -> list[GpuWork]:
    """The estimate (unless a map was uploaded), the ControlNet loop, and the restyle's loop."""
    width, height = plan.image.size
    loops = [] if plan.depth is not None else [GpuWork(plan.estimator.key, 1, width * height)]
    steps = steps_run(plan.spec.key, plan.num_inference_steps, plan.strength)
    loops.append(GpuWork(plan.controlnet, steps, width * height))
    restyle = plan.restyle
    if restyle is not None:
        restyle_steps = restyle.num_inference_steps or plan.num_inference_steps
        strength = restyle.strength if restyle.strength is not None else 1.0
        loops.append(GpuWork(restyle.model, steps_run(restyle.model, restyle_steps, strength), width * height))
    return loops


def recipe_extra(extra: dict[str, Any], mode: str, seeds: tuple[int, ...]) -> dict[str, Any]:
    """A depth run's own recipe fields: its ControlNet and how the depth map was made."""
    checked: dict[str, Any] = {
        "controlnet": schema.choice("extra.controlnet", extra.get("controlnet"), CATALOG),
        "controlnet_id": schema.model_id("extra.controlnet_id", extra.get("controlnet_id"), mode),
        "depth_source": schema.text("extra.depth_source", extra.get("depth_source", "")),
    }
    for name in ("invert_depth", "normalize_depth"):
        checked[name] = schema.flag(f"extra.{name}", extra.get(name, False))
    if "control_type" in extra:
        checked["control_type"] = schema.choice("extra.control_type", extra["control_type"], CONTROL_TYPES)
    for name in ("canny_low", "canny_high"):
        if name in extra:
            checked[name] = schema.whole(f"extra.{name}", extra[name], 1, MAX_CANNY_THRESHOLD + 1)
    if checked.get("canny_low", 0) >= checked.get("canny_high", MAX_CANNY_THRESHOLD + 1):
        raise schema.fail("extra.canny_low", checked["canny_low"], f"below extra.canny_high ({checked['canny_high']})")
    if "scribble_inverted" in extra:
        checked["scribble_inverted"] = schema.flag("extra.scribble_inverted", extra["scribble_inverted"])
    return checked


WORKFLOW = Workflow(
    name="depth",
    request=DepthRequest,
    plan=DepthPlan,
    run=run_depth,
    work=work,
    script=depth_script,
    start=start_depth,
    recipe=schema.RecipeShape(extra=recipe_extra),
    reads_files=lambda recipe: ("control.png",),
)
