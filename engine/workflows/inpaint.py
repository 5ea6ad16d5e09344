"""The Inpaint workflow: repaint the masked part of an image through AutoPipelineForInpainting.

The mask is white (or opaque, for a mask with transparency) where the image changes. As in the AUTOMATIC1111 web
UI, it is blurred by `mask_blur` pixels, and the inpaint area is the whole picture (the image inpainted at the
working size) or only the masked part (its bounding box plus `padding` pixels, grown to the image's aspect ratio,
inpainted at the working size and pasted back: diffusers' `padding_mask_crop`). Either way the result is the
original image outside the blurred mask, pixel for pixel (`image_processor.apply_overlay`, which diffusers itself
applies in the masked-only mode).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from engine.base.images import NormalizedImage, image_digest, open_image
from engine.base.settings import Settings
from engine.models.catalog import DEFAULT_MODEL, ModelSpec
from engine.pipelines.calls import call_pipeline
from engine.pipelines.live import LiveView
from engine.pipelines.schedulers import steps_run
from engine.recipes import schema
from engine.recipes.recipe import Recipe
from engine.recipes.script import header, init_image_lines, literal, load, saved
from engine.workflows.basic import unflagged
from engine.workflows.checks import (
    RANDOM_SEED,
    check_model,
    check_negative,
    check_number,
    check_sampling,
    check_seed,
    check_text,
    normalize_for_model,
    seed_series,
)
from engine.workflows.grid import image_grid
from engine.workflows.shape import GpuWork, RunContext, Workflow

WHOLE_PICTURE, ONLY_MASKED = INPAINT_AREAS = ("Whole picture", "Only masked")  # the web UI's words
MAX_MASK_BLUR = 64  # pixels, the web UI's slider
MAX_PADDING = 256  # pixels around the masked part, the web UI's slider
MASKED = 128  # a mask pixel at or above this is inpainted (diffusers binarises the mask at one half)


def mask_of(image: Image.Image) -> Image.Image:
    """A mask image as one 8-bit channel, white where to inpaint: its transparency where it has any (a painted
    layer), else its brightness (a black and white mask)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = image.convert("RGBA").getchannel("A")
        lowest = alpha.getextrema()[0]  # one channel: (min, max)
        if isinstance(lowest, int | float) and lowest < 255:  # some of it is transparent: the alpha is the mask
            return alpha
    return image.convert("L") if image.mode not in ("I", "I;16", "F") else image.point(lambda v: v / 256).convert("L")


def check_mask(source: object, image: NormalizedImage, settings: Settings) -> tuple[Image.Image, tuple[str, ...]]:
    """The mask at the image's working size, and what was done to it, for the person.

    Raises:
        ValueError: no mask, not an image, or nothing in it to inpaint (named, with its size).
    """
    if source is None:
        raise ValueError("mask is required: paint over the part to change, or upload a black and white mask")
    mask = mask_of(open_image(source, name="mask", max_input_pixels=settings.max_input_pixels))
    notes = []
    if mask.size != image.original_size:
        notes.append(
            f"The mask ({mask.width}x{mask.height}) is not the image's size ({image.original_size[0]}x"
            f"{image.original_size[1]}): it was stretched to it."
        )
    if mask.size != image.size:
        mask = mask.resize(image.size, Image.Resampling.LANCZOS)
    masked = sum(mask.histogram()[MASKED:])
    if masked == 0:
        raise ValueError(
            f"mask is empty ({mask.width}x{mask.height}, nothing white or opaque): there is nothing to inpaint"
        )
    if masked == mask.width * mask.height:
        notes.append("The mask covers the whole image: this is img2img with an inpainting pipeline.")
    return mask, tuple(notes)


@dataclass(frozen=True)
class InpaintRequest:
    """What the Inpaint tab (or an API caller) asks for. None means the model's default."""

    image: Image.Image | str | Path | bytes | None
    mask: Image.Image | str | Path | bytes | None
    prompt: str
    model: str = DEFAULT_MODEL
    negative_prompt: str = ""
    strength: float | None = None
    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    seed: int = RANDOM_SEED
    num_images: int = 1
    mask_blur: int = 4  # the web UI's default
    inpaint_area: str = WHOLE_PICTURE
    padding: int = 32  # Only masked: pixels around the masked part (the web UI's default)

    def validate(self, settings: Settings) -> InpaintPlan:
        """Resolve defaults, check every value, normalise the image and its mask.

        Raises:
            ValueError: naming the parameter and the value it got.
        """
        spec = check_model(self.model, "inpaint")
        prompt = check_text("prompt", self.prompt, max_chars=settings.max_prompt_chars, required=True)
        negative = check_text("negative_prompt", self.negative_prompt, max_chars=settings.max_prompt_chars)
        check_negative(spec, negative)
        strength, guidance, steps = check_sampling(spec, settings, self)
        count = int(check_number("num_images", self.num_images, low=1, high=settings.max_images, integer=True))
        blur = int(check_number("mask_blur", self.mask_blur, low=0, high=MAX_MASK_BLUR, integer=True))
        if self.inpaint_area not in INPAINT_AREAS:
            raise ValueError(f"inpaint_area must be one of {', '.join(INPAINT_AREAS)}; got {self.inpaint_area!r}")
        padding = int(check_number("padding", self.padding, low=0, high=MAX_PADDING, integer=True))
        seed = check_seed(self.seed, count=count)
        image = normalize_for_model(self.image, spec, settings)
        mask, notes = check_mask(self.mask, image, settings)
        return InpaintPlan(
            spec=spec,
            image=image,
            mask=mask,
            prompt=prompt,
            negative_prompt=negative,
            strength=strength,
            guidance_scale=guidance,
            num_inference_steps=steps,
            seeds=seed_series(seed, count),
            mask_blur=blur,
            only_masked=self.inpaint_area == ONLY_MASKED,
            padding=padding,
            notes=notes,
        )


@dataclass(frozen=True)
class InpaintPlan:
    """A validated Inpaint request: the image and its mask at the working size, every value concrete."""

    spec: ModelSpec
    image: NormalizedImage
    mask: Image.Image  # "L", the image's size, white where to inpaint (before the blur)
    prompt: str
    negative_prompt: str
    strength: float
    guidance_scale: float
    num_inference_steps: int
    seeds: tuple[int, ...]
    mask_blur: int = 4
    only_masked: bool = False
    padding: int = 32
    notes: tuple[str, ...] = ()  # what was done to the mask
    loras: tuple = ()  # none: LoRAs are not offered for inpainting yet (summaries read the field)

    @property
    def inpaint_area(self) -> str:
        return ONLY_MASKED if self.only_masked else WHOLE_PICTURE

    @property
    def denoising_steps(self) -> int:
        """Model calls per image, as the progress bar counts them."""
        return steps_run(self.spec.key, self.num_inference_steps, self.strength)


@dataclass(frozen=True)
class InpaintResult:
    """Images, the [init | mask | results] grid, and what really ran."""

    images: list[Image.Image]
    init_image: Image.Image
    mask: Image.Image  # as the pipeline got it: blurred
    grid: Image.Image
    steps_run: int
    seconds: float
    recipe: Recipe
    plan: InpaintPlan
    notes: tuple[str, ...] = ()
    nsfw: tuple[bool, ...] = ()  # per image: the safety checker blacked it out

    @property
    def shown(self) -> list[int]:
        """Indices of the images to show: a safety-checker flag is reported, not shown as a black square."""
        return unflagged(self.nsfw, len(self.images))


def inpaint_kwargs(plan: InpaintPlan, mask: Image.Image) -> dict:
    """The pipeline-call arguments for a plan (the blurred `mask`), generator and callback aside."""
    width, height = plan.image.size
    kwargs: dict[str, Any] = {
        "prompt": plan.prompt,
        "negative_prompt": plan.negative_prompt or None,
        "image": plan.image.image,
        "mask_image": mask,
        "strength": plan.strength,
        "guidance_scale": plan.guidance_scale,
        "num_inference_steps": plan.num_inference_steps,
        "height": height,
        "width": width,
    }
    if plan.only_masked:
        kwargs["padding_mask_crop"] = plan.padding
    return kwargs


def run_inpaint(plan: InpaintPlan, context: RunContext) -> InpaintResult:
    """Run a validated plan on the model's inpainting pipeline (derived from its img2img weights).

    Raises:
        GenerationCancelled: Stop, a closed page (nothing of the run is kept).
    """
    cache, reporter = context.cache, context.reporter
    started = time.perf_counter()
    pipe = cache.get(plan.spec.key, "inpaint")
    with cache.lock:
        mask = pipe.mask_processor.blur(plan.mask, blur_factor=plan.mask_blur) if plan.mask_blur else plan.mask
        kwargs = inpaint_kwargs(plan, mask)
        reporter.start_call(calls_left=1)
        output = call_pipeline(
            pipe,
            {**kwargs, "num_images_per_prompt": len(plan.seeds)},
            seeds=plan.seeds,
            cache=cache,
            reporter=reporter,
            live=LiveView(plan.spec.adapter.latent_rgb, plan.image.size, tuple(range(len(plan.seeds)))),
        )
        images = list(output.images)
        nsfw = tuple(bool(flag) for flag in (getattr(output, "nsfw_content_detected", None) or ()))
        if not plan.only_masked:  # diffusers pastes the original back itself only around a masked-only crop
            images = [pipe.image_processor.apply_overlay(mask, plan.image.image, image) for image in images]
        plain = {key: value for key, value in kwargs.items() if not isinstance(value, Image.Image)}
        recipe = Recipe.from_pipeline(
            pipe,
            init=plan.image.image,
            workflow="inpaint",
            model=plan.spec.key,
            model_id=context.model_id(plan.spec.key),
            generator_device=cache.policy.generator_device,
            seeds=plan.seeds,
            parameters={**plain, "num_images_per_prompt": len(plan.seeds)},
            size=plan.image.size,
            model_mode=context.model_mode,
            revision=plan.spec.revision,
            extra={
                "family": plan.spec.family,
                "mask_blur": plan.mask_blur,
                "inpaint_area": plan.inpaint_area,
                "padding": plan.padding,
                "mask_sha256": image_digest(plan.mask),
            },
        )
    return InpaintResult(
        images=images,
        init_image=plan.image.image,
        mask=mask,
        grid=image_grid([plan.image.image, mask.convert("RGB"), *images], rows=1, cols=len(images) + 2),
        steps_run=reporter.steps,
        seconds=time.perf_counter() - started,
        recipe=recipe,
        plan=plan,
        notes=(*plan.notes, *reporter.notes),
        nsfw=nsfw,
    )


def recipe_extra(extra: dict[str, Any], mode: str, seeds: tuple[int, ...]) -> dict[str, Any]:
    """An inpaint recipe's own fields: how the mask was blurred, the inpaint area and its padding."""
    checked: dict[str, Any] = {
        "inpaint_area": schema.choice("extra.inpaint_area", extra.get("inpaint_area"), INPAINT_AREAS),
        "mask_sha256": schema.text("extra.mask_sha256", extra.get("mask_sha256", "")),
    }
    for name, high in (("mask_blur", MAX_MASK_BLUR), ("padding", MAX_PADDING)):
        value = extra.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
            raise schema.fail(f"extra.{name}", value, f"a whole number in [0, {high}]")
        checked[name] = value
    return checked


# -- script export ---------------------------------------------------------------------------------


def inpaint_script(recipe: Recipe) -> str:
    """An inpainted image's script: the mask blurred as the app blurs it, the call, the original pasted back."""
    p = dict(recipe.parameters)
    index = int(recipe.extra.get("index", 0))
    size = tuple(int(side) for side in recipe.size)
    lines = header(
        recipe,
        f"inpainting with {recipe.model_id}, seed {recipe.seed}",
        ["AutoPipelineForInpainting"],
        more_args=" [mask.png]",
    )
    lines += init_image_lines(recipe.size)
    lines += [
        'MASK = sys.argv[3] if len(sys.argv) > 3 else "mask.png"',
        'mask = Image.open(MASK).convert("L")',
        f"if mask.size != {size!r}:",
        f"    mask = mask.resize({size!r}, Image.Resampling.LANCZOS)",
        "",
        f"pipe = {load('AutoPipelineForInpainting', recipe.model, recipe.model_id, recipe.revision)}",
        "pipe = pipe.to(DEVICE)",
        f"blur = {int(recipe.extra['mask_blur'])}  # Mask blur, in pixels",
        "mask = pipe.mask_processor.blur(mask, blur_factor=blur) if blur else mask",
        "",
        f"call = {literal(p)}",
        f"seeds = {[int(seed) for seed in recipe.seeds]!r}",
        "generator = [torch.Generator(GENERATOR_DEVICE).manual_seed(seed) for seed in seeds]",
        "images = pipe(image=init_image, mask_image=mask, generator=generator, **call).images",
        f"image = images[{index}]",
    ]
    if "padding_mask_crop" not in p:  # the whole picture: the original kept outside the blurred mask
        lines.append("image = pipe.image_processor.apply_overlay(mask, init_image, image)")
    lines += saved("image")
    return "\n".join(lines)


def run(plan: InpaintPlan, context: RunContext) -> Iterator[InpaintResult]:
    """The Inpaint workflow's one result, in the shape every workflow runs in (engine.workflows.shape)."""
    yield run_inpaint(plan, context)


def work(plan: InpaintPlan) -> list[GpuWork]:
    """One denoising loop over every seed, at the working size (a masked-only crop is brought to it too)."""
    width, height = plan.image.size
    return [GpuWork(plan.spec.key, plan.denoising_steps, width * height, images=len(plan.seeds))]


WORKFLOW = Workflow(
    name="inpaint",
    request=InpaintRequest,
    plan=InpaintPlan,
    run=run,
    work=work,
    script=inpaint_script,
    streams=False,
    recipe=schema.RecipeShape(extra=recipe_extra),
)
