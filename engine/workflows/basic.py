"""The Basic workflow: one init image and a prompt through AutoPipelineForImage2Image."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from engine.base.images import NormalizedImage
from engine.base.settings import Settings
from engine.models.catalog import DEFAULT_MODEL, LoraSpec, ModelSpec, get_spec
from engine.models.loras import check_loras, recorded
from engine.pipelines.calls import call_pipeline
from engine.pipelines.live import LiveView
from engine.pipelines.lora import applied
from engine.pipelines.prompts import check_weighted, weighted_embeddings
from engine.pipelines.schedulers import check_scheduler, steps_run, swapped_scheduler
from engine.recipes import schema
from engine.recipes.recipe import Recipe
from engine.recipes.script import img2img_preamble, literal, saved, weighted_prompt_lines
from engine.workflows.checks import (
    FOLLOW_INPUT,
    MAX_SCALE,
    MIN_SCALE,
    OUTPUT_SIZES,
    RANDOM_SEED,
    RESIZE_MODES,
    RESIZE_TO,
    OutputSize,
    check_flag,
    check_model,
    check_negative,
    check_number,
    check_output_size,
    check_sampling,
    check_seed,
    check_text,
    normalize_for_model,
    seed_series,
)
from engine.workflows.grid import image_grid
from engine.workflows.shape import GpuWork, RunContext, Workflow


@dataclass(frozen=True)
class Img2ImgRequest:
    """What the Basic tab (or an API caller) asks for. None means the model's default."""

    image: Image.Image | str | Path | bytes | None
    prompt: str
    model: str = DEFAULT_MODEL
    negative_prompt: str = ""
    strength: float | None = None
    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    seed: int = RANDOM_SEED
    num_images: int = 1
    weighted_prompt: bool = False
    scheduler: str | None = None  # a web UI sampler name (DPM++ 2M Karras, Euler a, ...); None: the model's own
    loras: object = ()  # the owner's LoRAs with weights: "name:0.8, other:0.5" or [[name, weight], ...]
    # The output size (engine.workflows.checks.OutputSize): the input's own, or the web UI's resize to / resize by
    output_size: str = FOLLOW_INPUT
    width: int = 512  # Resize to
    height: int = 512
    scale_by: float = 1.0  # Resize by
    resize_mode: str = RESIZE_MODES[0]  # Resize to / by: Just resize, Crop and resize, Resize and fill

    def validate(self, settings: Settings) -> Img2ImgPlan:
        """Resolve defaults, check every value and normalise the image.

        Raises:
            ValueError: naming the parameter and the value it got.
        """
        spec = check_model(self.model, "img2img")
        prompt = check_text("prompt", self.prompt, max_chars=settings.max_prompt_chars, required=True)
        negative = check_text("negative_prompt", self.negative_prompt, max_chars=settings.max_prompt_chars)
        strength, guidance, steps = check_sampling(spec, settings, self)
        count = int(check_number("num_images", self.num_images, low=1, high=settings.max_images, integer=True))
        check_flag("weighted_prompt", self.weighted_prompt)
        check_negative(spec, negative)
        if self.weighted_prompt and spec.weighting_unavailable_reason:
            raise ValueError(f"weighted_prompt is not available: {spec.weighting_unavailable_reason}")
        if self.weighted_prompt:
            check_weighted("prompt", prompt)
            check_weighted("negative_prompt", negative)
        seed = check_seed(self.seed, count=count)
        scheduler = check_scheduler(self.scheduler, spec.key)
        loras = check_loras(self.loras, spec)
        output = check_output_size(
            self.output_size, self.width, self.height, self.scale_by, self.resize_mode, spec, settings
        )
        image = normalize_for_model(self.image, spec, settings, output=output)
        return Img2ImgPlan(
            spec=spec,
            image=image,
            prompt=prompt,
            negative_prompt=negative,
            strength=strength,
            guidance_scale=guidance,
            num_inference_steps=steps,
            seeds=seed_series(seed, count),
            weighted_prompt=self.weighted_prompt,
            scheduler=scheduler,
            loras=loras,
            output=output,
        )


@dataclass(frozen=True)
class Img2ImgPlan:
    """A validated Basic request: every value concrete, the image ready for the pipeline."""

    spec: ModelSpec
    image: NormalizedImage
    prompt: str
    negative_prompt: str
    strength: float
    guidance_scale: float
    num_inference_steps: int
    seeds: tuple[int, ...]
    weighted_prompt: bool = False
    scheduler: str | None = None  # engine.pipelines.schedulers name; None: the checkpoint's own
    loras: tuple[tuple[LoraSpec, float], ...] = ()  # engine.pipelines.lora: applied with these weights for the run
    output: OutputSize | None = None  # the size asked for; None: the input's own (the image is at it already)

    @property
    def denoising_steps(self) -> int:
        """Model calls per image, as the progress bar counts them (PNDM's repeated step included)."""
        return steps_run(self.spec.key, self.num_inference_steps, self.strength, self.scheduler)


@dataclass(frozen=True)
class Img2ImgResult:
    """Images, the [init | results] grid, and what really ran."""

    images: list[Image.Image]
    init_image: Image.Image
    grid: Image.Image
    steps_run: int
    seconds: float
    recipe: Recipe
    plan: Img2ImgPlan
    nsfw: tuple[bool, ...] = ()  # per image: the safety checker blacked it out
    notes: tuple[str, ...] = ()  # faults recovered from (out of memory, NaN) on the way

    @property
    def shown(self) -> list[int]:
        """Indices of the images to show: a safety-checker flag is reported, not shown as a black square."""
        return unflagged(self.nsfw, len(self.images))


def unflagged(nsfw: tuple[bool, ...], count: int) -> list[int]:
    """Indices of `count` images the safety checker did not flag (no flags: all of them)."""
    return [index for index in range(count) if not (nsfw and nsfw[index])]


def img2img_kwargs(pipe, plan: Img2ImgPlan) -> dict:
    """The pipeline-call arguments for a plan, generator and callback aside."""
    return img2img_call_kwargs(
        pipe,
        plan.spec,
        image=plan.image.image,
        size=plan.image.size,
        prompt=plan.prompt,
        negative_prompt=plan.negative_prompt,
        strength=plan.strength,
        guidance_scale=plan.guidance_scale,
        num_inference_steps=plan.num_inference_steps,
        weighted_prompt=plan.weighted_prompt,
    )


def img2img_call_kwargs(
    pipe,
    spec: ModelSpec,
    *,
    image,
    size: tuple[int, int],
    prompt: str,
    negative_prompt: str,
    strength: float,
    guidance_scale: float,
    num_inference_steps: int,
    weighted_prompt: bool = False,
) -> dict:
    """img2img arguments for any workflow; `image` is a PIL image or latents of the model's family.

    The family adds the output size where its pipeline would otherwise default to 512x512 (Kandinsky
    2.2), so every model's output follows the (rounded) input size.
    """
    kwargs: dict = {
        "image": image,
        "strength": strength,
        "guidance_scale": guidance_scale,
        "num_inference_steps": num_inference_steps,
    }
    if weighted_prompt:
        kwargs.update(weighted_embeddings(pipe, spec, prompt, negative_prompt))
    else:
        kwargs["prompt"] = prompt
        # None, not "": Kandinsky's prior treats None as "no negative" (zero embedding), as the guide does
        kwargs["negative_prompt"] = negative_prompt or None
    kwargs.update(spec.adapter.output_size(*size))
    return kwargs


def seed_groups(plan: Img2ImgPlan) -> list[tuple[int, ...]]:
    """Seeds per pipeline call: all in one batch, or one call per seed for a family that needs it
    (Kandinsky 2.2, see engine/models/families/kandinsky22.py)."""
    if plan.spec.adapter.one_call_per_seed:
        return [(seed,) for seed in plan.seeds]
    return [plan.seeds]


def call_parameters(kwargs: dict, plan: Img2ImgPlan) -> dict:
    """The plain-valued pipeline arguments as passed, plus the prompt texts behind any embeddings."""
    plain = {k: v for k, v in kwargs.items() if isinstance(v, str | int | float | bool) or v is None}
    plain.setdefault("prompt", plan.prompt)
    plain.setdefault("negative_prompt", plan.negative_prompt or None)
    return plain


def run_img2img(plan: Img2ImgPlan, context: RunContext, *, place: int = 0, later_calls: int = 0) -> Img2ImgResult:
    """Run a validated plan on the cached pipeline and return images, grid and recipe.

    `place` is its first image's place in the run's live previews (a sweep cell's index; seeds count on);
    `later_calls` the pipeline calls its run makes after this one (a sweep's next cells: the progress bar's total).

    Raises:
        GenerationCancelled: Stop, a closed page (nothing of a Basic run is kept).
    """
    cache, reporter = context.cache, context.reporter
    started = time.perf_counter()
    steps_before = reporter.steps  # a reporter shared with earlier calls (the depth tab's restyle) counts on
    pipe = cache.get(plan.spec.key, "img2img")
    groups = seed_groups(plan)
    images: list[Image.Image] = []
    nsfw: list[bool] = []
    # embeddings and the calls together, so a concurrent eviction cannot split them
    with (
        cache.lock,
        swapped_scheduler(pipe, plan.scheduler, cache.lock),
        applied(pipe, plan.loras, plan.spec.label),
    ):
        kwargs = img2img_kwargs(pipe, plan)
        for index, seeds in enumerate(groups):
            reporter.start_call(calls_left=len(groups) - index + later_calls)
            places = tuple(range(place + len(images), place + len(images) + len(seeds)))
            output = call_pipeline(
                pipe,
                {**kwargs, "num_images_per_prompt": len(seeds)},
                seeds=seeds,
                cache=cache,
                reporter=reporter,
                live=LiveView(plan.spec.adapter.latent_rgb, plan.image.size, places),
            )
            images.extend(output.images)
            nsfw.extend(bool(flag) for flag in (getattr(output, "nsfw_content_detected", None) or ()))
        recipe = Recipe.from_pipeline(  # inside: the scheduler that ran
            pipe,
            init=plan.image.image,
            workflow="img2img",
            model=plan.spec.key,
            model_id=context.model_id(plan.spec.key),
            generator_device=cache.policy.generator_device,
            seeds=plan.seeds,
            parameters={**call_parameters(kwargs, plan), "num_images_per_prompt": len(groups[0])},
            size=plan.image.size,
            model_mode=context.model_mode,
            revision=plan.spec.revision,
            weighted_prompt=plan.weighted_prompt,
            extra={
                "pipeline_calls": len(groups),
                "family": plan.spec.family,
                "scheduler_name": plan.scheduler,
                **({"loras": recorded(plan.loras)} if plan.loras else {}),
                **output_record(plan.output),
            },
        )
    shown = [images[index] for index in unflagged(tuple(nsfw), len(images))]
    return Img2ImgResult(
        images=images,
        init_image=plan.image.image,
        grid=image_grid([plan.image.image, *shown], rows=1, cols=len(shown) + 1),
        steps_run=(reporter.steps - steps_before) // len(groups),
        seconds=time.perf_counter() - started,
        recipe=recipe,
        plan=plan,
        nsfw=tuple(nsfw),
        notes=tuple(reporter.notes),
    )


def output_record(output: OutputSize | None) -> dict[str, Any]:
    """A recipe's record of the output size asked for (none when it followed the input): the script reads
    `resize_mode` (engine.recipes.script.init_image_lines), the rest says what was asked."""
    if output is None:
        return {}
    asked: dict[str, Any] = {"output_size": output.choice, "resize_mode": output.mode}
    if output.choice == RESIZE_TO:
        asked["resize_to"] = [output.width, output.height]
    else:
        asked["scale_by"] = output.scale_by
    return asked


def recipe_extra(extra: dict[str, Any], mode: str, seeds: tuple[int, ...]) -> dict[str, Any]:
    """A Basic recipe's own fields: the output size asked for, when it was not the input's (output_record)."""
    if "resize_mode" not in extra:
        return {}
    checked: dict[str, Any] = {
        "output_size": schema.choice("extra.output_size", extra.get("output_size"), OUTPUT_SIZES[1:]),
        "resize_mode": schema.choice("extra.resize_mode", extra["resize_mode"], RESIZE_MODES),
    }
    if checked["output_size"] == RESIZE_TO:
        checked["resize_to"] = schema.listed(schema.size("extra.resize_to", extra.get("resize_to")))
    else:
        scale = extra.get("scale_by")
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not MIN_SCALE <= scale <= MAX_SCALE:
            raise schema.fail("extra.scale_by", scale, f"a number in [{MIN_SCALE:g}, {MAX_SCALE:g}]")
        checked["scale_by"] = float(scale)
    return checked


# -- script export ---------------------------------------------------------------------------------


def img2img_script(recipe: Recipe) -> str:
    """A Basic image's script: the pipeline call with the recipe's seeds, keeping the recipe's image."""
    p = dict(recipe.parameters)
    index = recipe.extra.get("index", 0)
    per_seed = recipe.extra.get("pipeline_calls", 1) > 1
    lines = img2img_preamble(recipe, f"img2img with {recipe.model_id}, seed {recipe.seed}")
    if recipe.weighted_prompt:
        lines += weighted_prompt_lines(recipe)
        p.pop("prompt", None)
        p.pop("negative_prompt", None)
    else:
        lines.append("prompt_kwargs = {}")
    seeds = [int(seed) for seed in recipe.seeds]
    if get_spec(recipe.model).adapter.swaps_height_width:
        lines.append("# height and width are passed swapped: diffusers' Kandinsky 2.2 img2img transposes them")
    lines += [
        f"call = {literal(p)}",
        f"seeds = {seeds!r}",
        "",
    ]
    if per_seed:  # Kandinsky 2.2: one call per seed (its prior cannot take a generator list)
        lines += [
            "images = []",
            "for seed in seeds:",
            "    generator = [torch.Generator(GENERATOR_DEVICE).manual_seed(seed)]",
            "    images += pipe(image=init_image, generator=generator, **{**call, 'num_images_per_prompt': 1},",
            "                   **prompt_kwargs).images",
        ]
    else:
        lines += [
            "generator = [torch.Generator(GENERATOR_DEVICE).manual_seed(seed) for seed in seeds]",
            "images = pipe(image=init_image, generator=generator, **call, **prompt_kwargs).images",
        ]
    lines += saved(f"images[{int(index)}]")
    return "\n".join(lines)


def run(plan: Img2ImgPlan, context: RunContext) -> Iterator[Img2ImgResult]:
    """The Basic workflow's one result, in the shape every workflow runs in (engine.workflows.shape)."""
    yield run_img2img(plan, context)


class OneLoop(Protocol):
    """What `work` reads of a plan that runs one loop over its seeds (Basic's, Inpaint's)."""

    @property
    def spec(self) -> ModelSpec: ...
    @property
    def image(self) -> NormalizedImage: ...
    @property
    def seeds(self) -> tuple[int, ...]: ...
    @property
    def denoising_steps(self) -> int: ...


def work(plan: OneLoop) -> list[GpuWork]:
    """One denoising loop over every seed (Kandinsky's call per seed costs the same steps); Inpaint's too (any plan
    with a spec, an image, seeds and its denoising_steps)."""
    width, height = plan.image.size
    return [GpuWork(plan.spec.key, plan.denoising_steps, width * height, images=len(plan.seeds))]


WORKFLOW = Workflow(
    name="img2img",
    request=Img2ImgRequest,
    plan=Img2ImgPlan,
    run=run,
    work=work,
    script=img2img_script,
    streams=False,
    recipe=schema.RecipeShape(extra=recipe_extra),
)
