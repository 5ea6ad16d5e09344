"""The Inpaint workflow: repaint the masked part of an image through AutoPipelineForInpainting.

The mask is white (or opaque, for a mask with transparency) where the image changes. As in the AUTOMATIC1111 web
UI, it is blurred by `mask_blur` pixels, and the inpaint area is the whole picture (the image inpainted at the
working size) or only the masked part (its bounding box plus `padding` pixels, grown to the image's aspect ratio,
inpainted at the working size and pasted back: diffusers' `padding_mask_crop`). Either way the result is the
original image outside the blurred mask, pixel for pixel (`image_processor.apply_overlay`, which diffusers itself
applies in the masked-only mode).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageOps

from engine.base.errors import shown_value
from engine.base.images import HeaderOnly, NormalizedImage, image_digest, open_image, probe_size, to_rgb
from engine.base.settings import Settings
from engine.models.catalog import DEFAULT_MODEL, ModelSpec
from engine.pipelines.calls import call_pipeline
from engine.pipelines.live import LiveView
from engine.pipelines.portable import color_matched
from engine.pipelines.schedulers import steps_run
from engine.recipes import schema
from engine.recipes.recipe import Recipe
from engine.recipes.script import header, init_image_lines, literal, load, saved, source
from engine.workflows.basic import unflagged, work
from engine.workflows.checks import (
    RANDOM_SEED,
    check_flag,
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
from engine.workflows.shape import RunContext, Workflow

WHOLE_PICTURE, ONLY_MASKED = INPAINT_AREAS = ("Whole picture", "Only masked")  # the web UI's words
MAX_MASK_BLUR = 64  # pixels, the web UI's slider
MAX_PADDING = 256  # pixels around the masked part, the web UI's slider
MASKED = 128  # a mask pixel at or above this is inpainted (diffusers binarises the mask at one half)
MAX_EXPAND = 1024  # pixels an outpaint may add on one side
MAX_OVERLAP = 128  # pixels an outpaint repaints into the image on each grown side
EXPAND_FILLS = ("edge", "noise")  # or a colour, #rrggbb


def mask_of(image: Image.Image) -> Image.Image:
    """A mask image as one 8-bit channel, white where to inpaint: its transparency where some of it is fully
    transparent (a painted layer), else its brightness (a black and white mask, 16-bit and float scaled as an
    init image is)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = image.convert("RGBA").getchannel("A")
        lowest = alpha.getextrema()[0]  # one channel: (min, max)
        if isinstance(lowest, int | float) and lowest == 0:
            return alpha
    return to_rgb(image).convert("L")


def check_mask(
    source: object, image: NormalizedImage, settings: Settings, *, optional: bool = False
) -> tuple[Image.Image, tuple[str, ...]]:
    """The mask at the image's working size (all black when none was given and it is `optional`: an outpaint's),
    and what was done to it, for the person. A `HeaderOnly` mask (a plan preview's) is read from its header: its
    size is checked, its pixels are a stand-in.

    Raises:
        ValueError: no mask where one is needed, or not an image (named, with its size).
    """
    if source is None:
        if optional:
            return Image.new("L", image.size, 0), ()
        raise ValueError("mask is required: paint over the part to change, or upload a black and white mask")
    notes = []
    if isinstance(source, HeaderOnly):  # a plan preview's: sized from its header, its left half a stand-in
        size = probe_size(source.source, name="mask", max_input_pixels=settings.max_input_pixels)
        mask = Image.new("L", size, 0)
        mask.paste(255, (0, 0, max(1, size[0] // 2), size[1]))
        notes.append("What the mask covers is checked when the run starts.")
    else:
        mask = mask_of(open_image(source, name="mask", max_input_pixels=settings.max_input_pixels))
    if mask.size != image.original_size:
        notes.append(
            f"The mask ({mask.width}x{mask.height}) is not the image's size ({image.original_size[0]}x"
            f"{image.original_size[1]}): it was stretched to it."
        )
    if mask.size != image.size:
        mask = mask.resize(image.size, Image.Resampling.LANCZOS)
    return mask, tuple(notes)


def blurred(pipe, mask: Image.Image, blur: int) -> Image.Image:
    """A mask feathered by `blur` pixels with the pipeline's own mask processor (as the scripts do), or as it is."""
    return pipe.mask_processor.blur(mask, blur_factor=blur) if blur else mask


def masked_notes(mask: Image.Image) -> tuple[str, ...]:
    """What the person should know of how much a mask covers.

    Raises:
        ValueError: nothing in it to inpaint.
    """
    masked = sum(mask.histogram()[MASKED:])
    if masked == 0:
        raise ValueError(
            f"mask is empty ({mask.width}x{mask.height}, nothing white or opaque): there is nothing to inpaint"
        )
    if masked == mask.width * mask.height:
        return ("The mask covers the whole image: this is img2img with an inpainting pipeline.",)
    return ()


def check_fill(value: object) -> str:
    """An outpaint's fill: edge, noise or a colour as #rrggbb."""
    if isinstance(value, str) and (value in EXPAND_FILLS or re.fullmatch(r"#[0-9a-fA-F]{6}", value)):
        return value.lower()
    raise ValueError(f"expand_fill must be edge, noise or a colour as #rrggbb; got {shown_value(value)}")


def fitted(
    image: NormalizedImage, mask: Image.Image, sides: tuple[int, ...], pixels: int, multiple: int
) -> tuple[NormalizedImage, Image.Image, tuple[int, ...], tuple[str, ...]]:
    """The image, its mask and the sides scaled down together so the grown canvas stays within the working size
    (`pixels`), as every run does, sides rounded down to the model's multiple; unchanged when it fits."""
    width, height = image.size
    canvas = (width + sides[0] + sides[1]) * (height + sides[2] + sides[3])
    if canvas <= pixels:
        return image, mask, sides, ()
    scale = (pixels / canvas) ** 0.5
    size = (
        max(multiple, int(width * scale) // multiple * multiple),
        max(multiple, int(height * scale) // multiple * multiple),
    )
    sides = tuple(int(side * scale) // multiple * multiple for side in sides)
    note = (
        f"The grown canvas would have been {canvas} pixels, past the working size ({pixels}): the image was scaled "
        f"to {size[0]}x{size[1]} and the sides to {', '.join(map(str, sides))} (left, right, up, down)."
    )
    shrunk = NormalizedImage(image.image.resize(size, Image.Resampling.LANCZOS), image.original_size, image.notes)
    return shrunk, mask.resize(size, Image.Resampling.LANCZOS), sides, (note,)


def expanded(
    image: NormalizedImage, mask: Image.Image, sides: tuple[int, ...], fill: str, overlap: int, seed: int
) -> tuple[NormalizedImage, Image.Image]:
    """The canvas grown by `sides` (left, right, up, down) around the image, the new area filled (its edge pixels
    drawn out, noise from `seed`, or a colour), and the mask grown with it: the new area, `overlap` pixels into
    the image on each grown side, and what was painted."""
    left, right, up, down = sides
    pixels = np.asarray(image.image)
    pad = ((up, down), (left, right), (0, 0))
    if fill == "edge":
        canvas = np.pad(pixels, pad, mode="edge")
    elif fill == "noise":
        canvas = np.pad(pixels, pad, mode="constant")
        new = np.ones(canvas.shape[:2], dtype=bool)
        new[up : up + pixels.shape[0], left : left + pixels.shape[1]] = False
        canvas[new] = np.random.default_rng(seed).integers(0, 256, (int(new.sum()), 3), dtype=np.uint8)
    else:
        colour = [int(fill[index : index + 2], 16) for index in (1, 3, 5)]
        canvas = np.stack([np.pad(pixels[..., c], pad[:2], constant_values=colour[c]) for c in range(3)], axis=-1)
    grown = Image.new("L", (canvas.shape[1], canvas.shape[0]), 255)
    kept = (
        left + (overlap if left else 0),
        up + (overlap if up else 0),
        left + pixels.shape[1] - (overlap if right else 0),
        up + pixels.shape[0] - (overlap if down else 0),
    )
    grown.paste(0, kept)
    grown.paste(ImageChops.lighter(grown.crop((left, up, left + mask.width, up + mask.height)), mask), (left, up))
    width, height = grown.size
    note = f"expanded by {left}, {right}, {up}, {down} pixels (left, right, up, down) to {width}x{height}"
    canvas_image = NormalizedImage(Image.fromarray(canvas), image.original_size, (*image.notes, note))
    return canvas_image, grown


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
    # Outpaint: pixels added on each side (rounded up to the model's multiple), how the new area starts, and how
    # far into the image the repainting reaches on each grown side
    expand_left: int = 0
    expand_right: int = 0
    expand_up: int = 0
    expand_down: int = 0
    expand_fill: str = "edge"
    overlap: int = 16
    color_match: bool = False  # the repainted part's colours brought to the image's (the web UI's colour correction)

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
            raise ValueError(
                f"inpaint_area must be one of {', '.join(INPAINT_AREAS)}; got {shown_value(self.inpaint_area)}"
            )
        padding = int(check_number("padding", self.padding, low=0, high=MAX_PADDING, integer=True))
        seed = check_seed(self.seed, count=count)
        multiple = spec.size_multiple
        sides = tuple(
            -(-int(check_number(f"expand_{side}", value, low=0, high=MAX_EXPAND, integer=True)) // multiple) * multiple
            for side, value in zip(
                ("left", "right", "up", "down"),
                (self.expand_left, self.expand_right, self.expand_up, self.expand_down),
                strict=True,
            )
        )
        asked = (self.expand_left, self.expand_right, self.expand_up, self.expand_down)
        rounded = () if list(sides) == list(asked) else (f"Outpaint sides rounded up to multiples of {multiple}.",)
        fill = check_fill(self.expand_fill)
        check_flag("color_match", self.color_match)
        overlap = int(check_number("overlap", self.overlap, low=0, high=MAX_OVERLAP, integer=True))
        image = normalize_for_model(self.image, spec, settings)
        mask, notes = check_mask(self.mask, image, settings, optional=any(sides))
        if any(sides):
            for grown, side in (((sides[0], sides[1]), image.size[0]), ((sides[2], sides[3]), image.size[1])):
                if overlap * sum(1 for pixels in grown if pixels) >= side:
                    raise ValueError(
                        f"overlap {overlap} would repaint the whole image ({image.size[0]}x{image.size[1]} at the "
                        "working size) from its grown sides: make it smaller"
                    )
            image, mask, sides, scaled = fitted(image, mask, sides, settings.working_pixels, multiple)
            notes += scaled
            width, height = image.size[0] + sides[0] + sides[1], image.size[1] + sides[2] + sides[3]
            if width * height > settings.max_output_pixels:
                raise ValueError(
                    f"expand_left/right/up/down: the canvas would be {width}x{height} ({width * height} pixels), "
                    f"past STUDIO_MAX_OUTPUT_PIXELS ({settings.max_output_pixels})"
                )
            image, mask = expanded(image, mask, sides, fill, overlap, seed_series(seed, 1)[0])
        notes += rounded + masked_notes(mask)
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
            expand=sides if any(sides) else None,
            expand_fill=fill,
            color_match=self.color_match is True,
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
    expand: tuple[int, ...] | None = None  # an outpaint's pixels added (left, right, up, down); the image has them
    expand_fill: str = "edge"
    color_match: bool = False

    @property
    def inpaint_area(self) -> str:
        return ONLY_MASKED if self.only_masked else WHOLE_PICTURE

    @property
    def script_inputs(self) -> dict[str, Image.Image]:
        """The images its script reads besides the init, by their download names: the mask, before the blur."""
        return {"mask.png": self.mask}

    @property
    def scheduler(self) -> None:
        """None: an inpainting run keeps the checkpoint's own scheduler (what a sweep cell reads)."""
        return None

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


def run_inpaint(plan: InpaintPlan, context: RunContext, *, place: int = 0, later_calls: int = 0) -> InpaintResult:
    """Run a validated plan on the model's inpainting pipeline (its own, or one derived from its img2img weights).

    `place` is its first image's place in the run's live previews (a sweep cell's index; seeds count on);
    `later_calls` the pipeline calls its run makes after this one (a sweep's next cells: the progress bar's total).

    Raises:
        GenerationCancelled: Stop, a closed page (nothing of the run is kept).
    """
    cache, reporter = context.cache, context.reporter
    started = time.perf_counter()
    steps_before = reporter.steps  # a sweep's reporter counts on over its cells
    pipe = cache.get(plan.spec.key, "inpaint")
    with cache.lock:
        mask = blurred(pipe, plan.mask, plan.mask_blur)
        kwargs = inpaint_kwargs(plan, mask)
        reporter.start_call(calls_left=1 + later_calls)
        output = call_pipeline(
            pipe,
            {**kwargs, "num_images_per_prompt": len(plan.seeds)},
            seeds=plan.seeds,
            cache=cache,
            reporter=reporter,
            live=LiveView(plan.spec.adapter.latent_rgb, plan.image.size, tuple(range(place, place + len(plan.seeds)))),
        )
        images = list(output.images)
        nsfw = tuple(bool(flag) for flag in (getattr(output, "nsfw_content_detected", None) or ()))
        init = plan.image.image
        if not plan.only_masked:  # diffusers pastes the original back itself only around a masked-only crop
            images = [pipe.image_processor.apply_overlay(mask, init, image) for image in images]
        if plan.color_match:  # colours matched to the image's, then the original pasted back outside the mask again
            images = [pipe.image_processor.apply_overlay(mask, init, color_matched(image, init)) for image in images]
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
                **({"outpaint": list(plan.expand), "expand_fill": plan.expand_fill} if plan.expand else {}),
                **({"color_match": True} if plan.color_match else {}),
            },
        )
    shown = [images[index] for index in unflagged(nsfw, len(images))]
    return InpaintResult(
        images=images,
        init_image=plan.image.image,
        mask=mask,
        grid=image_grid([plan.image.image, mask.convert("RGB"), *shown], rows=1, cols=len(shown) + 2),
        steps_run=reporter.steps - steps_before,
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
        "mask_sha256": schema.digest("extra.mask_sha256", extra.get("mask_sha256")),
    }
    if "outpaint" in extra:  # an outpaint's sides, as it said them (the init is the grown canvas)
        sides = extra["outpaint"]
        if (
            not isinstance(sides, list)
            or len(sides) != 4
            or not all(
                isinstance(side, int) and not isinstance(side, bool) and 0 <= side <= MAX_EXPAND for side in sides
            )
        ):
            raise schema.fail("extra.outpaint", sides, f"four whole numbers in [0, {MAX_EXPAND}]")
        checked["outpaint"] = sides
        try:
            checked["expand_fill"] = check_fill(extra.get("expand_fill"))
        except ValueError:
            raise schema.fail("extra.expand_fill", extra.get("expand_fill"), "edge, noise or #rrggbb") from None
    if "color_match" in extra:  # written only when on
        if extra["color_match"] is not True:
            raise schema.fail("extra.color_match", extra["color_match"], "true (written only when on)")
        checked["color_match"] = True
    for name, high in (("mask_blur", MAX_MASK_BLUR), ("padding", MAX_PADDING)):
        value = extra.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
            raise schema.fail(f"extra.{name}", value, f"a whole number in [0, {high}]")
        checked[name] = value
    return checked


# -- script export ---------------------------------------------------------------------------------


def mask_file_lines() -> list[str]:
    """A script's lines that open its mask (the third argument, else mask.png beside it) as one channel."""
    return ['MASK = sys.argv[3] if len(sys.argv) > 3 else "mask.png"', 'mask = Image.open(MASK).convert("L")']


def inpaint_script(recipe: Recipe) -> str:
    """An inpainted image's script: the mask blurred as the app blurs it, the call, the original pasted back."""
    p = dict(recipe.parameters)
    p.pop("padding_mask_crop", None)  # the mode comes from the recipe's checked inpaint_area and padding
    only_masked = recipe.extra["inpaint_area"] == ONLY_MASKED
    if only_masked:
        p["padding_mask_crop"] = int(recipe.extra["padding"])
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
        *mask_file_lines(),
        f"if mask.size != {size!r}:    mask = mask.resize({size!r}, Image.Resampling.LANCZOS)",
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
    if not only_masked:  # the whole picture: the original kept outside the blurred mask
        lines.append("image = pipe.image_processor.apply_overlay(mask, init_image, image)")
    if recipe.extra.get("color_match"):  # colours matched to the image's, the original kept outside the mask
        lines += [
            "",
            *source(color_matched),
            "image = pipe.image_processor.apply_overlay(mask, init_image, color_matched(image, init_image))",
        ]
    lines += saved("image")
    return "\n".join(lines)


def run(plan: InpaintPlan, context: RunContext) -> Iterator[InpaintResult]:
    """The Inpaint workflow's one result, in the shape every workflow runs in (engine.workflows.shape)."""
    yield run_inpaint(plan, context)


WORKFLOW = Workflow(
    name="inpaint",
    request=InpaintRequest,
    plan=InpaintPlan,
    run=run,
    work=work,  # Basic's: one loop over every seed at the working size (a masked-only crop is brought to it)
    script=inpaint_script,
    streams=False,
    recipe=schema.RecipeShape(extra=recipe_extra),
    reads_files=lambda recipe: ("mask.png",),
)
