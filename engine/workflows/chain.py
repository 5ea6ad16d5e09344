"""Chained pipelines: up to `max_chain_stages` stages, each handing its result to the next.

A hand-over passes latents (`output_type="latent"`) when both stages share a latent family (same
VAE scaling and channels) and the next pipeline takes latents as its `image`; otherwise the stage
decodes to an image and the next one encodes it. Every stage's output size is computed before any
work, and a chain that would make an image over `max_output_pixels` is refused with that size.

Each stage draws its noise from a fresh generator seeded with the chain's seed, so a chain is
reproducible stage by stage with plain diffusers calls.

An inpaint stage repaints the white part of the chain's mask (given with the request, stretched to each inpaint
stage's input size, blurred by the stage's `mask_blur`) on the image it receives, keeping the rest pixel for pixel,
as the Inpaint tab's whole-picture run does; it receives and hands on decoded images.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from engine.base.errors import shown_value
from engine.base.images import NormalizedImage, fit_size, image_digest
from engine.base.settings import Settings
from engine.models.catalog import ModelSpec, get_spec
from engine.pipelines.calls import call_pipeline
from engine.pipelines.live import LiveView
from engine.pipelines.portable import decode_latents
from engine.pipelines.schedulers import steps_run
from engine.recipes import schema
from engine.recipes.recipe import Recipe
from engine.recipes.script import comment, header, init_image_lines, literal, load, saved, size_literal, source
from engine.workflows.basic import img2img_call_kwargs
from engine.workflows.checks import (
    MAX_SIDE,
    RANDOM_SEED,
    check_flag,
    check_negative,
    check_number,
    check_sampling,
    check_seed,
    check_text,
    normalize_for_model,
)
from engine.workflows.edit import check_edit_steps, edit_call_kwargs
from engine.workflows.grid import image_grid
from engine.workflows.inpaint import MAX_MASK_BLUR, blurred, check_mask, mask_file_lines, masked_notes
from engine.workflows.shape import GpuWork, RunContext, Workflow, keeps_finished, stoppable

SUBJECT = "{subject}"
DEFAULT_SUBJECT = "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k"
EDIT_PROMPT = f"Turn the image into this: {SUBJECT}"  # an edit stage's instruction in the presets
KINDS = ("text2img", "img2img", "upscale", "inpaint", "edit")
# stages that take and give decoded images only: an inpaint stage pastes what it received back outside its mask, an
# edit stage reads its image as a reference (no latents in or out)
IMAGE_ONLY = ("inpaint", "edit")
HANDOVERS = ("latent", "image")  # what a stage receives from the one before it (None: the first stage)


@dataclass(frozen=True)
class ChainStage:
    """One stage as asked for; None means the model's default. `prompt` may contain {subject}."""

    model: str
    prompt: str = SUBJECT
    kind: str | None = None
    negative_prompt: str = ""
    strength: float | None = None
    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    mask_blur: int = 4  # an inpaint stage's feathered edge, in pixels (the web UI's default)


PRESETS: dict[str, tuple[ChainStage, ...]] = {
    # The guide's three chains, with its models and its prompts.
    "text-image-image": (
        ChainStage("sd15", kind="text2img"),
        ChainStage("kandinsky22"),
    ),
    "image-image-image": (
        ChainStage("sd15"),
        ChainStage("comic-diffusion", prompt=f"{SUBJECT}, charliebo artstyle"),
        ChainStage("pixel-art-style", prompt=f"{SUBJECT}, pixelartstyle"),
    ),
    "image-upscale-superres": (
        ChainStage("sd15"),
        ChainStage("sd-x2-latent-upscaler"),
        ChainStage("sd-x4-upscaler"),
    ),
    # Inpainting in a chain: restyle, then repaint the masked part; repaint it, then upscale the result.
    "image-inpaint": (
        ChainStage("sd15"),
        ChainStage("sd15", kind="inpaint", prompt=f"{SUBJECT}, detailed", strength=0.9),
    ),
    "inpaint-upscale": (
        ChainStage("sd15", kind="inpaint"),
        ChainStage("sd-x4-upscaler"),
    ),
    # Instruction edits in a chain: restyle, then edit the result by the subject; edit, then restyle the result.
    "image-edit": (
        ChainStage("sd15"),
        ChainStage("flux2-klein-4b", prompt=EDIT_PROMPT),
    ),
    "edit-image": (
        ChainStage("flux2-klein-4b", prompt=EDIT_PROMPT),
        ChainStage("sd15", prompt=f"{SUBJECT}, detailed", strength=0.5),
    ),
}
PRESET_NOTES = {
    "text-image-image": "SD 1.5 makes an image from text; Kandinsky 2.2 reworks it (decoded hand-over: other VAE).",
    "image-image-image": "SD 1.5, then Comic-Diffusion, then pixel-art-style, passing latents (one VAE family).",
    "image-upscale-superres": "SD 1.5 img2img, the x2 latent upscaler on its latents, then the x4 upscaler: 8x.",
    "image-inpaint": "SD 1.5 img2img restyles the image, then SD 1.5 repaints the mask's white part (give a mask).",
    "inpaint-upscale": "SD 1.5 repaints the mask's white part (give a mask), then the x4 upscaler: 4x.",
    "image-edit": "SD 1.5 img2img restyles the image, then FLUX.2 [klein] edits the result as the prompt says.",
    "edit-image": "FLUX.2 [klein] edits the image as the prompt says, then SD 1.5 restyles the result at 0.5.",
}


@dataclass(frozen=True)
class ChainRequest:
    """A chain: a preset name, or stages (a list or its JSON) when preset is empty.

    Args:
        image: the init image; unused when the first stage is text-to-image.
        prompt: the subject: presets put it into each stage's prompt ({subject}).
        width, height: the size a text-to-image first stage makes.
        latent_handover: False decodes and re-encodes at every hand-over (to compare).
        previews: decode latent hand-overs for display; False leaves intermediate images out.
        mask: white where inpaint stages repaint (any size: stretched to each one's input); needed by them only.
    """

    image: Image.Image | str | Path | bytes | None = None
    preset: str | None = "image-image-image"
    prompt: str = DEFAULT_SUBJECT
    seed: int = RANDOM_SEED
    stages: str | list | tuple | None = None
    width: int = 512
    height: int = 512
    latent_handover: bool = True
    previews: bool = True
    mask: Image.Image | str | Path | bytes | None = None

    def validate(self, settings: Settings) -> ChainPlan:
        """Stages, hand-overs and sizes resolved and checked before any work (see plan_chain)."""
        return plan_chain(self, settings)


@dataclass(frozen=True)
class StagePlan:
    """A stage with every value resolved, its sizes, and how it receives its input."""

    index: int
    spec: ModelSpec
    kind: str
    prompt: str
    negative_prompt: str
    strength: float | None
    guidance_scale: float
    num_inference_steps: int
    input_size: tuple[int, int] | None
    output_size: tuple[int, int]
    receives: str | None  # "latent", "image", or None for the first stage
    mask_blur: int = 0  # an inpaint stage's

    @property
    def label(self) -> str:
        return f"{self.index + 1}. {self.spec.label} ({self.kind})"

    @property
    def denoising_steps(self) -> int:
        """Model calls of this stage, as the progress bar counts them (PNDM's repeated step included)."""
        return steps_run(self.spec.key, self.num_inference_steps, self.applied_strength)

    @property
    def applied_strength(self) -> float:
        return self.strength if self.strength is not None else 1.0


@dataclass(frozen=True)
class ChainPlan:
    stages: tuple[StagePlan, ...]
    init: NormalizedImage | None
    seed: int
    request: ChainRequest
    mask: Image.Image | None = None  # "L", the first stage's size: where inpaint stages repaint (before the blur)
    notes: tuple[str, ...] = ()  # what was done to the mask

    def hands_latents(self, index: int) -> bool:
        """Whether stage `index` passes latents to the next one."""
        return index + 1 < len(self.stages) and self.stages[index + 1].receives == "latent"

    def describe(self) -> str:
        lines = []
        for stage in self.stages:
            into = f" ← {stage.receives}" if stage.receives else ""
            steps = f"{stage.denoising_steps} steps"
            w, h = stage.output_size
            lines.append(f"{stage.label}{into}: {w}×{h}, {steps}")
        return "\n\n".join([*lines, *self.notes])

    @property
    def script_inputs(self) -> dict[str, Image.Image]:
        """The images its script reads besides the init, by their download names: the mask, if a stage inpaints."""
        return {"mask.png": self.mask} if self.mask is not None else {}


def parse_stages(stages: object, max_stages: int) -> list[ChainStage]:
    """Stages from a list of dicts or its JSON text.

    Raises:
        ValueError: not JSON, not a list of objects, unknown keys, or more stages than allowed.
    """
    if isinstance(stages, str):
        if len(stages) > 100_000:
            raise ValueError(f"stages is {len(stages):,} characters long; the limit is 100,000")
        try:
            stages = json.loads(stages)
        except json.JSONDecodeError as exc:
            raise ValueError(f"stages is not valid JSON: {exc}") from None
        except RecursionError:
            raise ValueError("stages is nested too deeply: give a flat list of stage objects") from None
    if not isinstance(stages, list | tuple) or not stages:
        raise ValueError('stages must be a non-empty list of stages, e.g. [{"model": "sd15"}]')
    if len(stages) > max_stages:
        raise ValueError(f"stages has {len(stages)} stages; a chain takes at most {max_stages}")
    allowed = set(ChainStage.__dataclass_fields__)
    parsed = []
    for number, stage in enumerate(stages, start=1):
        if isinstance(stage, ChainStage):
            parsed.append(stage)
            continue
        if not isinstance(stage, dict) or "model" not in stage:
            raise ValueError(f'stage {number} must be an object with at least a "model", got {stage!r:.80}')
        unknown = set(stage) - allowed
        if unknown:
            shown = sorted(shown_value(key, 40) for key in unknown)
            raise ValueError(f"stage {number} has unknown keys {shown}; allowed: {sorted(allowed)}")
        for key in ("model", "prompt", "kind", "negative_prompt"):
            value = stage.get(key, "")
            if not isinstance(value, str) and not (key == "kind" and value is None):
                raise ValueError(f"stage {number} {key} must be text, got {shown_value(value)}")
        parsed.append(ChainStage(**stage))
    return parsed


def stages_json(preset: str, settings: Settings | None = None) -> str:
    """A preset's stages as editable JSON: the values a stage sets, else its model's defaults (steps as `settings`
    start runs), so the JSON runs what the preset runs."""
    rows = []
    for stage in PRESETS[preset]:
        spec = get_spec(stage.model)
        defaults = spec.defaults
        row: dict[str, object] = {"model": stage.model, "prompt": stage.prompt}
        if stage.kind:
            row["kind"] = stage.kind
        if defaults is not None:
            edit_only = "edit" in spec.kinds and "img2img" not in spec.kinds  # an edit stage takes no strength
            if "upscale" not in spec.kinds and stage.kind != "text2img" and not edit_only:
                row["strength"] = defaults.strength if stage.strength is None else stage.strength
            row["guidance_scale"] = defaults.guidance_scale if stage.guidance_scale is None else stage.guidance_scale
            steps = defaults.num_inference_steps
            steps = settings.steps_default(steps) if settings else steps
            row["num_inference_steps"] = steps if stage.num_inference_steps is None else stage.num_inference_steps
        if stage.kind == "inpaint":
            row["mask_blur"] = stage.mask_blur
        rows.append(row)
    return json.dumps(rows, indent=2)


def plan_chain(request: ChainRequest, settings: Settings) -> ChainPlan:
    """Resolve and check every stage, its kind, hand-over and sizes, before any work.

    Raises:
        ValueError: naming the stage and what is wrong with it.
    """
    preset = request.preset
    if preset is not None and (not isinstance(preset, str) or (preset and preset not in PRESETS)):
        raise ValueError(f"preset must be one of {', '.join(PRESETS)} or empty; got {shown_value(preset)}")
    if preset:
        stages = list(PRESETS[preset])
    else:
        if request.stages in (None, "", []):
            raise ValueError("stages is empty: pick a preset or give stages as JSON")
        stages = parse_stages(request.stages, settings.max_chain_stages)
    subject = check_text("prompt", request.prompt, max_chars=settings.max_prompt_chars)
    seed = check_seed(request.seed)
    check_flag("latent_handover", request.latent_handover)
    check_flag("previews", request.previews)

    kinds = [
        _stage_kind(stage, index, has_image=index > 0 or request.image is not None)
        for index, stage in enumerate(stages)
    ]
    first_kind = kinds[0]
    specs = [get_spec(stage.model) for stage in stages]
    receives_of = _handovers(specs, kinds, latent_handover=request.latent_handover is True)
    multiples = _segment_multiples(specs, receives_of)
    spec = specs[0]
    init = None
    if first_kind == "text2img":
        width = check_number("width", request.width, low=settings.min_side, high=MAX_SIDE, integer=True)
        height = check_number("height", request.height, low=settings.min_side, high=MAX_SIDE, integer=True)
        size = fit_size(
            (int(width), int(height)),
            multiple=multiples[0],
            max_pixels=settings.working_pixels,
            min_side=settings.min_side,
        )
    else:
        init = normalize_for_model(request.image, spec, settings, multiple=multiples[0])
        size = init.size

    mask, notes = _chain_mask(request, kinds, init or NormalizedImage(Image.new("RGB", size), size), settings)
    planned: list[StagePlan] = []
    current = size  # the size entering the next stage
    for index, stage in enumerate(stages):
        name = f"stage {index + 1} ({stage.model})"
        try:
            spec, receives, kind = specs[index], receives_of[index], kinds[index]
            input_size = None if kind == "text2img" else _input_size(current, multiples[index], receives, settings)
            output_size = current if input_size is None else _output_size(input_size, spec)
            planned.append(_resolve(stage, index, spec, kind, subject, settings, input_size, output_size, receives))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        w, h = output_size
        if w * h > settings.max_output_pixels:
            raise ValueError(
                f"{name} would make a {w}x{h} image ({w * h:,} pixels), over the limit of "
                f"{settings.max_output_pixels:,}; start from a smaller image or drop an upscaler"
            )
        current = output_size
    return ChainPlan(
        stages=tuple(planned), init=init, seed=seed, request=replace(request, seed=seed), mask=mask, notes=notes
    )


def _chain_mask(
    request: ChainRequest, kinds: list[str], start: NormalizedImage, settings: Settings
) -> tuple[Image.Image | None, tuple[str, ...]]:
    """The chain's mask at its first stage's size (`start`: the init, or a stand-in of a text-to-image start's
    size), and what was done to it; None when no stage inpaints.

    Raises:
        ValueError: an inpaint stage without a mask, a mask without an inpaint stage, an empty mask.
    """
    inpaints = [index + 1 for index, kind in enumerate(kinds) if kind == "inpaint"]
    if not inpaints:
        if request.mask is not None:
            raise ValueError("mask is given but no stage inpaints: add a stage of kind inpaint, or remove the mask")
        return None, ()
    if request.mask is None:
        raise ValueError(f"stage {inpaints[0]} inpaints and needs a mask: upload one, white where to repaint")
    mask, notes = check_mask(request.mask, start, settings)
    return mask, (*notes, *masked_notes(mask))


def _stage_kind(stage: ChainStage, index: int, *, has_image: bool) -> str:
    spec = get_spec(stage.model)
    kind = stage.kind
    if kind is None:
        if "upscale" in spec.kinds:
            kind = "upscale"
        elif index == 0 and not has_image:
            kind = "text2img"
        elif "edit" in spec.kinds and "img2img" not in spec.kinds:  # an instruction-edit model
            kind = "edit"
        elif "img2img" in spec.kinds or "inpaint" not in spec.kinds:
            kind = "img2img"
        else:  # a checkpoint made for inpainting only
            kind = "inpaint"
    if kind not in KINDS:
        raise ValueError(f"stage {index + 1}: kind must be one of {', '.join(KINDS)}; got {shown_value(kind)}")
    if kind not in spec.kinds:
        model = shown_value(stage.model)
        raise ValueError(f"stage {index + 1}: model {model} has no {kind} pipeline; it serves {spec.kinds}")
    if kind == "text2img" and index > 0:
        raise ValueError(f"stage {index + 1}: text2img can only be the first stage")
    if kind != "text2img" and index == 0 and not has_image:
        raise ValueError(f"stage 1 ({stage.model}, {kind}) needs an init image; upload one or start with text2img")
    return kind


def _shares_latents(previous: ModelSpec, spec: ModelSpec) -> bool:
    """Latents pass only between one latent family, into a pipeline that reads latents as `image`."""
    return (
        previous.latent_family is not None
        and previous.latent_family == spec.latent_family
        and spec.adapter.takes_latents
    )


def _handovers(specs: list[ModelSpec], kinds: list[str], *, latent_handover: bool) -> list[str | None]:
    """What each stage receives: None (the first), "latent" or "image" (always into and out of an inpaint stage,
    which pastes the image it received back outside its mask)."""
    return [
        None
        if index == 0
        else "latent"
        if latent_handover
        and _shares_latents(specs[index - 1], spec)
        and not {kinds[index - 1], kinds[index]} & set(IMAGE_ONLY)
        else "image"
        for index, spec in enumerate(specs)
    ]


def _segment_multiples(specs: list[ModelSpec], receives: list[str | None]) -> list[int]:
    """The side multiple each stage's input is sized to.

    A stage that receives latents takes the size it is given, so its own multiple must hold already where the
    pixels were last sized: at the start of its run of latent hand-overs, times the upscale factors between.
    (The x2 latent upscaler needs latents of a multiple of 4, 32 pixels: SD 1.5 at 312x208 handed it 39x26
    latents and its UNet failed after the first stage had run.)
    """
    multiples = [spec.size_multiple for spec in specs]
    start, factor = 0, 1
    for index, spec in enumerate(specs):
        if receives[index] != "latent":
            start, factor = index, 1
        else:
            need = spec.size_multiple // math.gcd(spec.size_multiple, factor)
            multiples[start] = math.lcm(multiples[start], need)
        factor *= spec.adapter.upscale_factor
    return multiples


def _input_size(size: tuple[int, int], multiple: int, receives: str | None, settings: Settings) -> tuple[int, int]:
    if receives == "latent":
        return size
    return fit_size(size, multiple=multiple, max_pixels=settings.max_output_pixels, min_side=1)


def _output_size(size: tuple[int, int], spec: ModelSpec) -> tuple[int, int]:
    factor = spec.adapter.upscale_factor
    return size[0] * factor, size[1] * factor


def _resolve(stage, index, spec, kind, subject, settings, input_size, output_size, receives) -> StagePlan:
    if spec.defaults is None:
        raise ValueError(f"model {spec.key!r} cannot run as a stage")
    prompt = check_text("prompt", stage.prompt.replace(SUBJECT, subject), max_chars=settings.max_prompt_chars)
    if not prompt:
        raise ValueError("prompt is empty")
    negative = check_text("negative_prompt", stage.negative_prompt, max_chars=settings.max_prompt_chars)
    check_negative(spec, negative)
    takes_strength = kind in ("img2img", "inpaint")
    if kind == "edit" and stage.strength is not None:
        raise ValueError(
            f"strength {shown_value(stage.strength)} cannot be used with an edit stage ({spec.label} makes the whole "
            "image anew from the one it receives): leave it out"
        )
    img2img_strength, guidance, steps = check_sampling(spec, settings, stage, img2img=takes_strength)
    if kind == "edit":
        check_edit_steps(spec, steps)
    strength = img2img_strength if takes_strength else None  # the others run their whole schedule
    blur = 0
    if kind == "inpaint":
        blur = int(check_number("mask_blur", stage.mask_blur, low=0, high=MAX_MASK_BLUR, integer=True))
    return StagePlan(
        index, spec, kind, prompt, negative, strength, guidance, steps, input_size, output_size, receives, blur
    )


# -- running ---------------------------------------------------------------------------------------


@dataclass
class StageResult:
    stage: StagePlan
    image: Image.Image | None  # for display; None for an undecoded latent hand-over with previews off
    passes: str | None  # what it hands to the next stage: "latent", "image", or None for the last
    seconds: float
    steps: int
    recipe: Recipe | None = None  # the chain up to this stage, as run


@dataclass
class ChainProgress:
    """A chain so far; yielded after each stage."""

    plan: ChainPlan
    results: list[StageResult] = field(default_factory=list)
    stopped: str | None = None
    failed: str | None = None  # the stage that failed and why, after the finished ones (kept in `results`)
    notes: list[str] = field(default_factory=list)  # faults recovered from (the reporter's list)

    @property
    def finished(self) -> bool:
        return self.stopped is None and self.failed is None and len(self.results) == len(self.plan.stages)

    def failing_stage(self) -> str | None:
        """The stage running now, in words, once one has finished (what a failure keeps); None before."""
        if not self.results or len(self.results) >= len(self.plan.stages):
            return None
        stage = self.plan.stages[len(self.results)]
        return f"Stage {stage.label}"

    @property
    def final(self) -> Image.Image | None:
        return self.results[-1].image if self.finished else None

    def comparison(self) -> Image.Image | None:
        """[init | final] with the init scaled to the final's size, as the guide shows it."""
        final = self.final
        if final is None:
            return None
        init = self.plan.init.image if self.plan.init is not None else None
        if init is None:
            return final
        return image_grid([init.resize(final.size, Image.Resampling.LANCZOS), final], rows=1, cols=2)


def run_chain(plan: ChainPlan, context: RunContext) -> Iterator[ChainProgress]:
    """Run the stages in order, yielding after each; Stop, or a later stage failing, keeps the stages already done."""
    progress = start_chain(plan)
    progress.notes = context.reporter.notes
    stages = keeps_finished(progress, _stages(plan, context, progress), ChainProgress.failing_stage)
    return stoppable(progress, stages)


def start_chain(plan: ChainPlan) -> ChainProgress:
    """A chain's progress before its first stage."""
    return ChainProgress(plan=plan)


def _stages(plan: ChainPlan, context: RunContext, progress: ChainProgress) -> Iterator[ChainProgress]:
    cache, reporter, model_id = context.cache, context.reporter, context.model_id
    records: list[dict] = []
    carried: Any = plan.init.image if plan.init is not None else None  # an image, or latents (a tensor)
    for stage in plan.stages:
        started = time.perf_counter()
        steps_before = reporter.steps
        reporter.start_call(calls_left=len(plan.stages) - stage.index)
        hands_latents = plan.hands_latents(stage.index)
        pipe = cache.get(stage.spec.key, stage.kind)
        kwargs = {**stage_kwargs(pipe, stage, carried, plan.mask), "output_type": "latent" if hands_latents else "pil"}
        live = LiveView(stage.spec.adapter.latent_rgb, stage.output_size, (stage.index,))
        output = call_pipeline(pipe, kwargs, seeds=(plan.seed,), cache=cache, reporter=reporter, live=live)
        if hands_latents:
            carried = output.images
            shown = decode_latents(pipe, carried) if plan.request.previews else None
        else:
            carried = output.images[0]
            if stage.kind == "inpaint":  # the image it received kept outside the blurred mask
                carried = pipe.image_processor.apply_overlay(kwargs["mask_image"], kwargs["image"], carried)
            shown = carried
        is_last = stage.index == len(plan.stages) - 1
        records.append(
            {
                "model": stage.spec.key,
                "model_id": model_id(stage.spec.key),
                "revision": stage.spec.revision,
                "kind": stage.kind,
                "receives": stage.receives,
                "input_size": list(stage.input_size) if stage.input_size else None,
                "call": {k: v for k, v in kwargs.items() if isinstance(v, str | int | float | bool) or v is None},
                **(
                    {"mask_blur": stage.mask_blur, "mask_sha256": image_digest(plan.mask)}
                    if stage.kind == "inpaint" and plan.mask is not None
                    else {}
                ),
            }
        )
        recipe = None
        if shown is not None:
            recipe = Recipe.from_pipeline(
                pipe,
                init=plan.init.image if plan.init is not None else None,
                workflow="chain",
                model=stage.spec.key,
                model_id=model_id(stage.spec.key),
                generator_device=cache.policy.generator_device,
                seeds=(plan.seed,),
                parameters={**records[-1]["call"], "stages": [dict(r) for r in records]},
                size=shown.size,
                model_mode=context.model_mode,
                revision=stage.spec.revision,
            )
        progress.results.append(
            StageResult(
                stage=stage,
                image=shown,
                passes=None if is_last else ("latent" if hands_latents else "image"),
                seconds=time.perf_counter() - started,
                steps=reporter.steps - steps_before,
                recipe=recipe,
            )
        )
        yield progress


def stage_mask(pipe, stage: StagePlan, mask: Image.Image) -> Image.Image:
    """An inpaint stage's mask: the chain's, stretched to the stage's input size, blurred by its mask_blur."""
    assert stage.input_size is not None  # an inpaint stage receives an image
    if mask.size != stage.input_size:
        mask = mask.resize(stage.input_size, Image.Resampling.LANCZOS)
    return blurred(pipe, mask, stage.mask_blur)


def stage_kwargs(pipe, stage: StagePlan, carried, mask: Image.Image | None = None) -> dict:
    """The call arguments of one stage; `carried` is the previous output (latents or PIL) or the init, `mask`
    the chain's (an inpaint stage's)."""
    negative = stage.negative_prompt or None
    if stage.kind == "text2img":
        width, height = stage.output_size
        return {
            "prompt": stage.prompt,
            "negative_prompt": negative,
            "height": height,
            "width": width,
            "guidance_scale": stage.guidance_scale,
            "num_inference_steps": stage.num_inference_steps,
        }
    image = carried
    if isinstance(carried, Image.Image) and stage.input_size is not None and carried.size != stage.input_size:
        image = carried.resize(stage.input_size, Image.Resampling.LANCZOS)
    if stage.kind == "img2img":
        assert stage.input_size is not None and stage.strength is not None  # an img2img stage has both (its plan)
        return img2img_call_kwargs(
            pipe,
            stage.spec,
            image=image,
            size=stage.input_size,
            prompt=stage.prompt,
            negative_prompt=stage.negative_prompt,
            strength=stage.strength,
            guidance_scale=stage.guidance_scale,
            num_inference_steps=stage.num_inference_steps,
        )
    if stage.kind == "edit":  # the image it receives is the one it edits
        assert stage.input_size is not None  # an edit stage receives an image
        return edit_call_kwargs(
            stage.spec,
            [image],
            prompt=stage.prompt,
            negative_prompt=stage.negative_prompt,
            guidance_scale=stage.guidance_scale,
            num_inference_steps=stage.num_inference_steps,
            size=stage.input_size,
        )
    if stage.kind == "inpaint":
        assert mask is not None and stage.input_size is not None  # an inpaint stage's plan has both
        width, height = stage.input_size
        return {
            "prompt": stage.prompt,
            "negative_prompt": negative,
            "image": image,
            "mask_image": stage_mask(pipe, stage, mask),
            "strength": stage.strength,
            "guidance_scale": stage.guidance_scale,
            "num_inference_steps": stage.num_inference_steps,
            "height": height,
            "width": width,
        }
    return {
        "prompt": stage.prompt,
        "negative_prompt": negative,
        "image": image,
        "guidance_scale": stage.guidance_scale,
        "num_inference_steps": stage.num_inference_steps,
    }


# -- script export ---------------------------------------------------------------------------------


LOADERS = {
    "img2img": "AutoPipelineForImage2Image",
    "text2img": "AutoPipelineForText2Image",
    "upscale": "DiffusionPipeline",
    "inpaint": "AutoPipelineForInpainting",
    "edit": "AutoPipelineForImage2Image",  # what maps an edit model's repository to its edit pipeline
}


def chain_script(recipe: Recipe) -> str:
    stages = recipe.parameters["stages"]
    seed = int(recipe.seed)
    inpaints = any(stage["kind"] == "inpaint" for stage in stages)
    lines = header(
        recipe,
        f"a {len(stages)}-stage chain, seed {seed}",
        [LOADERS[s["kind"]] for s in stages],
        more_args=" [mask.png]" if inpaints else "",
    )
    if reads_init(recipe):
        lines += init_image_lines(stages[0]["input_size"])
        lines.append("carried = init_image")
    else:
        lines.append("carried = None")
    if inpaints:  # the chain's mask; each inpaint stage stretches it to its input size and blurs it
        lines += mask_file_lines()
    lines.append("")
    previous = None
    for number, stage in enumerate(stages, start=1):
        loader = LOADERS[stage["kind"]]
        call = stage["call"]
        receives = stage.get("receives") or "nothing"
        lines.append(comment(f"# stage {number}: {stage['model']} ({stage['kind']}), receives {receives}"))
        if previous is not None and previous["model_id"] == stage["model_id"] and loader != "DiffusionPipeline":
            # the same weights in another pipeline kind: share them, passing the dtype (diffusers issue 12754)
            lines.append(f"pipe = {loader}.from_pipe(pipe, dtype=DTYPE)")
        else:
            loaded = load(loader, stage["model"], stage["model_id"], stage.get("revision"))
            lines.append(f"pipe = {loaded}.to(DEVICE)")
        lines.append(f"call = {literal(call)}")
        previous = stage
        if stage["kind"] != "text2img":
            size = size_literal(stage["input_size"])
            lines += [
                f"if isinstance(carried, Image.Image) and carried.size != {size}:",
                f"    carried = carried.resize({size}, Image.Resampling.LANCZOS)",
                # an edit model that reads several images takes its one as a list
                "call['image'] = [carried]" if _reads_list(stage) else "call['image'] = carried",
            ]
        if stage["kind"] == "inpaint":
            lines += [
                f"stage_mask = mask if mask.size == {size} else mask.resize({size}, Image.Resampling.LANCZOS)",
                f"blur = {int(stage['mask_blur'])}  # Mask blur, in pixels",
                "stage_mask = pipe.mask_processor.blur(stage_mask, blur_factor=blur) if blur else stage_mask",
                "call['mask_image'] = stage_mask",
            ]
        lines += [
            f"output = pipe(generator=[torch.Generator(GENERATOR_DEVICE).manual_seed({seed})], **call).images",
            "carried = output if call['output_type'] == 'latent' else output[0]",
        ]
        if stage["kind"] == "inpaint":  # the image it received kept outside the blurred mask
            lines.append("carried = pipe.image_processor.apply_overlay(stage_mask, call['image'], carried)")
        lines.append("")
    lines += [
        *source(decode_latents),
        "if not isinstance(carried, Image.Image):  # an intermediate stage's latents: decode them for display",
        "    carried = decode_latents(pipe, carried)",
        *saved("carried"),
    ]
    return "\n".join(lines)


def _reads_list(stage: dict) -> bool:
    return stage["kind"] == "edit" and get_spec(stage["model"]).adapter.takes_image_list


def work(plan: ChainPlan) -> list[GpuWork]:
    """Each stage's loop at its output size."""
    return [
        GpuWork(stage.spec.key, stage.denoising_steps, stage.output_size[0] * stage.output_size[1])
        for stage in plan.stages
    ]


def _recipe_stage(name: str, value: Any, mode: str) -> dict[str, Any]:
    """One stage of a chain's recipe, each field checked as the app writes it."""
    if not isinstance(value, dict):
        raise schema.fail(name, value, "an object")
    receives = value.get("receives")
    kind = schema.choice(f"{name}.kind", value.get("kind"), KINDS)
    call = schema.mapping(f"{name}.call", value.get("call"))
    schema.choice(f"{name}.call.output_type", call.get("output_type"), ("pil", "latent"))  # the script reads it
    return {
        "model": schema.model(f"{name}.model", value.get("model")),
        "model_id": schema.model_id(f"{name}.model_id", value.get("model_id"), mode),
        "revision": schema.revision(f"{name}.revision", value.get("revision")),
        "kind": kind,
        "receives": None if receives is None else schema.choice(f"{name}.receives", receives, HANDOVERS),
        # every stage but one from text resizes what it receives to its input size
        "input_size": schema.listed(
            schema.size(f"{name}.input_size", value.get("input_size"), optional=kind == "text2img")
        ),
        "call": call,
        **(_recipe_mask(name, value) if kind == "inpaint" else {}),
    }


def _recipe_mask(name: str, value: dict[str, Any]) -> dict[str, Any]:
    """An inpaint stage's mask fields: its blur (the script writes it) and the mask's SHA-256."""
    blur = value.get("mask_blur")
    if isinstance(blur, bool) or not isinstance(blur, int) or not 0 <= blur <= MAX_MASK_BLUR:
        raise schema.fail(f"{name}.mask_blur", blur, f"a whole number in [0, {MAX_MASK_BLUR}]")
    return {"mask_blur": blur, "mask_sha256": schema.digest(f"{name}.mask_sha256", value.get("mask_sha256"))}


def recipe_parameters(parameters: dict[str, Any], mode: str) -> dict[str, Any]:
    """A chain recipe's own parameters: its stages."""
    stages = schema.items("parameters.stages", parameters.get("stages"), required=True)
    return {"stages": [_recipe_stage(f"parameters.stages[{i}]", stage, mode) for i, stage in enumerate(stages)]}


def reads_files(recipe: Recipe) -> tuple[str, ...]:
    """Its script reads the chain's mask when a stage inpaints."""
    stages = recipe.parameters.get("stages")
    inpaints = isinstance(stages, list) and any(stage.get("kind") == "inpaint" for stage in stages)
    return ("mask.png",) if inpaints else ()


def reads_init(recipe: Recipe) -> bool:
    """Its script reads an init image unless the chain starts from text."""
    stages = recipe.parameters.get("stages")
    return not (isinstance(stages, list) and stages and stages[0].get("kind") == "text2img")


WORKFLOW = Workflow(
    name="chain",
    request=ChainRequest,
    plan=ChainPlan,
    run=run_chain,
    work=work,
    script=chain_script,
    start=start_chain,
    recipe=schema.RecipeShape(parameters=recipe_parameters),
    reads_init=reads_init,
    reads_files=reads_files,
)
