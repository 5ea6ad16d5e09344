"""The Edit workflow: an instruction ("make it night", "put the cat of image 2 on the sofa") applied to an image, with
reference images where the family reads them, through the pipeline AutoPipelineForImage2Image maps an edit model to
(FluxKontextPipeline, Flux2KleinPipeline, QwenImageEditPlusPipeline).

An edit makes the whole image anew from its images: there is no strength. The output is the first image's size
(scaled under the working pixels, sides rounded to the model's multiple) or the size asked for, as in Basic.

Edits follow one another: "Use as input" puts a result back as the next edit's image, and the next request names that
result as its `previous` (`PreviousEdit`: the recipe, first image and references the result store keeps). Its recipe
records every edit before it (`extra.edits`), and its script replays the whole sequence from the first image.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from engine.base.errors import shown_value
from engine.base.images import NormalizedImage, image_digest
from engine.base.settings import Settings
from engine.models.catalog import ModelSpec, get_spec, models_for
from engine.pipelines.calls import call_pipeline
from engine.pipelines.live import LiveView
from engine.pipelines.portable import resize_image
from engine.pipelines.schedulers import steps_run
from engine.recipes import schema
from engine.recipes.recipe import Recipe
from engine.recipes.script import header, init_image_lines, literal, load, saved, source
from engine.workflows.basic import output_record, unflagged, work
from engine.workflows.basic import recipe_extra as output_extra
from engine.workflows.checks import (
    FOLLOW_INPUT,
    RANDOM_SEED,
    RESIZE_MODES,
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
from engine.workflows.shape import RunContext, Workflow

KIND = "edit"
DEFAULT_EDIT_MODEL = "flux2-klein-4b"  # the model the Edit tab and a request start with: Apache-2.0, 4 steps
LOADER = "AutoPipelineForImage2Image"  # what maps an edit model's repository to its edit pipeline
MAX_EDITS = 16  # edits in one sequence (Use as input), the one being made included


def reference_name(number: int, edit: int | None = None) -> str:
    """The download name of a reference image (`number` 2 and on: image 1 is the one edited); `edit` numbers an
    earlier edit of the sequence (1 and on), None the last one."""
    return f"reference{number}.png" if edit is None else f"edit{edit}_reference{number}.png"


@dataclass(frozen=True)
class PreviousEdit:
    """The edit whose result this one edits (Use as input), as the result store keeps it: its recipe (for the image
    edited next: `Recipe.for_image`), the sequence's first image (its init) and the reference images its script
    reads, by their download names."""

    recipe: Recipe
    original: Image.Image
    inputs: dict[str, Image.Image] = field(default_factory=dict)


@dataclass(frozen=True)
class EditRequest:
    """What the Edit tab (or an API caller) asks for. None means the model's default.

    `references` are images 2 and on. `previous` is the edit whose result `image` is (Use as input): this edit
    continues its sequence.
    """

    image: Image.Image | str | Path | bytes | None
    prompt: str
    model: str = DEFAULT_EDIT_MODEL
    references: tuple = ()
    negative_prompt: str = ""
    guidance_scale: float | None = None
    num_inference_steps: int | None = None
    seed: int = RANDOM_SEED
    num_images: int = 1
    output_size: str = FOLLOW_INPUT
    width: int = 512
    height: int = 512
    scale_by: float = 1.0
    resize_mode: str = RESIZE_MODES[0]
    strength: float | None = None  # refused: an edit has none (named, not silently dropped)
    previous: PreviousEdit | None = None
    REFUSED: ClassVar[tuple[str, ...]] = ("strength",)  # fields it has only to refuse by name (no sweep axis)

    def validate(self, settings: Settings) -> EditPlan:
        """Resolve defaults, check every value, normalise the images.

        Raises:
            ValueError: naming the parameter and the value it got.
        """
        spec = check_model(self.model, KIND)
        if self.strength is not None:
            raise ValueError(
                f"strength {shown_value(self.strength)} cannot be used with {spec.label}: an instruction edit makes "
                "the whole image anew from its images; leave strength empty (num_inference_steps and guidance_scale "
                "set how it runs)"
            )
        prompt = check_text("prompt", self.prompt, max_chars=settings.max_prompt_chars, required=True)
        negative = check_text("negative_prompt", self.negative_prompt, max_chars=settings.max_prompt_chars)
        check_negative(spec, negative)
        _, guidance, steps = check_sampling(spec, settings, self, img2img=False)
        check_edit_steps(spec, steps)
        count = int(check_number("num_images", self.num_images, low=1, high=settings.max_images, integer=True))
        seed = check_seed(self.seed, count=count)
        references = self.references
        if isinstance(references, str | bytes | Path | Image.Image) or not isinstance(references, tuple | list):
            raise ValueError(f"references must be a list of images; got {shown_value(references)}")
        most = spec.adapter.max_references
        if 1 + len(references) > most:
            raise ValueError(
                f"references: {spec.label} reads at most {most} image{'s' if most > 1 else ''} (the image to edit"
                f"{f' and {most - 1} references' if most > 1 else ', no references'}); got {len(references)} "
                f"reference{'s' if len(references) != 1 else ''}"
            )
        output = check_output_size(
            self.output_size, self.width, self.height, self.scale_by, self.resize_mode, spec, settings
        )
        image = normalize_for_model(self.image, spec, settings)
        earlier, inputs, original = self._sequence(image.image)  # a previous result is at a size the model takes
        if output is not None:
            image = normalize_for_model(image.image, spec, settings, output=output)
        refs = tuple(
            normalize_for_model(reference, spec, settings, f"reference_{index + 2}").image
            for index, reference in enumerate(references)
        )
        return EditPlan(
            spec=spec,
            image=image,
            references=refs,
            prompt=prompt,
            negative_prompt=negative,
            guidance_scale=guidance,
            num_inference_steps=steps,
            seeds=seed_series(seed, count),
            output=output,
            earlier=earlier,
            earlier_inputs=inputs,
            original=original,
        )

    def _sequence(
        self, image: Image.Image
    ) -> tuple[tuple[dict[str, Any], ...], dict[str, Image.Image], Image.Image | None]:
        """The edits before this one (their recipes' records, oldest first), the reference images their scripts read
        (by download name) and the sequence's first image, checked: `image` is the previous edit's result, and the
        images are those its recipe names."""
        previous = self.previous
        if previous is None:
            return (), {}, None
        if not isinstance(previous, PreviousEdit):
            raise ValueError(f"previous must be an earlier edit's result; got {shown_value(previous)}")
        recipe = previous.recipe
        if recipe.workflow != KIND:
            raise ValueError(f"previous is a {recipe.workflow} result, not an edit's: leave it empty to start anew")
        records = [*(recipe.extra.get("edits") or []), step_record(recipe)]
        if len(records) + 1 > MAX_EDITS:
            raise ValueError(f"previous: a sequence holds at most {MAX_EDITS} edits; this is edit {len(records) + 1}")
        if image_digest(previous.original.convert("RGB")) != recipe.init_digest:
            raise ValueError("previous: its first image is not the one its recipe names; leave previous empty")
        inputs: dict[str, Image.Image] = {}
        last = len(records)
        for edit, record in enumerate(records, 1):
            for number, reference in enumerate(record["references"], 2):
                kept = previous.inputs.get(reference_name(number, None if edit == last else edit))
                if kept is None or image_digest(kept) != reference["sha256"]:
                    raise ValueError(f"previous: reference {number} of edit {edit} is no longer kept; start anew")
                inputs[reference_name(number, edit)] = kept
        if recipe.extra["outputs_sha256"][int(recipe.extra.get("index", 0))] != image_digest(image):
            raise ValueError(
                "image is not the result that previous names (its pixels differ): leave previous empty to start a "
                "new sequence from this image"
            )
        return tuple(records), inputs, previous.original.convert("RGB")


@dataclass(frozen=True)
class EditPlan:
    """A validated Edit request: the images at their working sizes, every value concrete."""

    spec: ModelSpec
    image: NormalizedImage  # image 1, at the output's size
    references: tuple[Image.Image, ...]
    prompt: str
    negative_prompt: str
    guidance_scale: float
    num_inference_steps: int
    seeds: tuple[int, ...]
    output: Any = None  # engine.workflows.checks.OutputSize, or None: image 1's own size
    earlier: tuple[dict[str, Any], ...] = ()  # the edits before this one, as its recipe records them (step_record)
    earlier_inputs: dict[str, Image.Image] = field(default_factory=dict)  # their references, by download name
    original: Image.Image | None = None  # the sequence's first image (None: this is its first edit)
    loras: tuple = ()  # none: LoRAs are not offered for edits yet (summaries read the field)

    @property
    def strength(self) -> float:
        """1.0: the whole schedule runs (what progress and GPU sizing read)."""
        return 1.0

    @property
    def scheduler(self) -> None:
        """None: an edit keeps the checkpoint's own scheduler (what a sweep cell reads)."""
        return None

    @property
    def first_image(self) -> Image.Image:
        """The image the sequence started from: what the script reads as its init."""
        return self.original if self.original is not None else self.image.image

    @property
    def script_inputs(self) -> dict[str, Image.Image]:
        """The images its script reads besides the init, by their download names: every edit's references."""
        inputs = dict(self.earlier_inputs)
        inputs.update({reference_name(number): image for number, image in enumerate(self.references, 2)})
        return inputs

    @property
    def denoising_steps(self) -> int:
        """Model calls per image, as the progress bar counts them."""
        return steps_run(self.spec.key, self.num_inference_steps)


@dataclass(frozen=True)
class EditResult:
    """Images, the [image | references | results] grid, and what really ran."""

    images: list[Image.Image]
    init_image: Image.Image  # the sequence's first image (the script's init)
    grid: Image.Image
    steps_run: int
    seconds: float
    recipe: Recipe
    plan: EditPlan
    notes: tuple[str, ...] = ()
    nsfw: tuple[bool, ...] = ()

    @property
    def shown(self) -> list[int]:
        return unflagged(self.nsfw, len(self.images))

    def previous(self, index: int) -> PreviousEdit:
        """This edit as the `previous` of the next one, which edits image `index` (what the result store keeps)."""
        return PreviousEdit(self.recipe.for_image(index), self.init_image, self.plan.script_inputs)


def edit_kwargs(plan: EditPlan) -> dict:
    """The pipeline-call arguments for a plan, generator and callback aside."""
    return edit_call_kwargs(
        plan.spec,
        [plan.image.image, *plan.references],
        prompt=plan.prompt,
        negative_prompt=plan.negative_prompt,
        guidance_scale=plan.guidance_scale,
        num_inference_steps=plan.num_inference_steps,
        size=plan.image.size,
    )


def edit_call_kwargs(
    spec: ModelSpec,
    images: list,
    *,
    prompt: str,
    negative_prompt: str,
    guidance_scale: float,
    num_inference_steps: int,
    size: tuple[int, int],
) -> dict:
    """An edit call's arguments for any workflow (the Edit tab's, a chain's edit stage): the images (one alone for a
    family that reads one), the guidance in the family's argument, the output size as the family takes it."""
    adapter = spec.adapter
    kwargs: dict[str, Any] = {
        "image": images if adapter.takes_image_list else images[0],
        "prompt": prompt,
        "num_inference_steps": num_inference_steps,
        adapter.guidance_argument: guidance_scale,
        **adapter.edit_size(*size),
    }
    negative = negative_prompt or adapter.default_negative
    if negative:
        kwargs["negative_prompt"] = negative
    return kwargs


def check_edit_steps(spec: ModelSpec, steps: int) -> None:
    """The fewest steps the family's edit may run (Qwen-Image's scheduler makes NaN of one)."""
    if steps < spec.adapter.min_steps:
        least = spec.adapter.min_steps
        raise ValueError(f"num_inference_steps must be at least {least} for {spec.label}; got {steps}")


def references_record(images: tuple[Image.Image, ...]) -> list[dict[str, Any]]:
    return [{"sha256": image_digest(image), "size": list(image.size)} for image in images]


def step_record(recipe: Recipe) -> dict[str, Any]:
    """An earlier edit as the recipe of the next one records it: what its script's loop needs."""
    extra = recipe.extra
    return {
        "model": recipe.model,
        "model_id": recipe.model_id,
        "revision": recipe.revision,
        "call": dict(recipe.parameters),
        "seeds": list(recipe.seeds),
        "index": int(extra.get("index", 0)),
        "size": list(recipe.size),
        "references": extra.get("references") or [],
        **({"resize_mode": extra["resize_mode"]} if "resize_mode" in extra else {}),
    }


def run_edit(plan: EditPlan, context: RunContext, *, place: int = 0, later_calls: int = 0) -> EditResult:
    """Run a validated plan on the model's edit pipeline.

    `place` is its first image's place in the run's live previews (a sweep cell's index; seeds count on);
    `later_calls` the pipeline calls its run makes after this one (a sweep's next cells: the progress bar's total).

    Raises:
        GenerationCancelled: Stop, a closed page (nothing of the run is kept).
    """
    cache, reporter = context.cache, context.reporter
    started = time.perf_counter()
    steps_before = reporter.steps  # a sweep's reporter counts on over its cells
    pipe = cache.get(plan.spec.key, KIND)
    with cache.lock:
        kwargs = edit_kwargs(plan)
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
        plain = {key: value for key, value in kwargs.items() if key != "image"}
        recipe = Recipe.from_pipeline(
            pipe,
            init=plan.first_image,
            workflow=KIND,
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
                "image_sha256": image_digest(plan.image.image),
                "references": references_record(plan.references),
                "outputs_sha256": [image_digest(image) for image in images],
                **output_record(plan.output),
                **({"edits": list(plan.earlier)} if plan.earlier else {}),
            },
        )
    shown = [images[index] for index in unflagged(nsfw, len(images))]
    tiles = [plan.image.image, *plan.references, *shown]
    return EditResult(
        images=images,
        init_image=plan.first_image,
        grid=image_grid(tiles, rows=1, cols=len(tiles)),
        steps_run=reporter.steps - steps_before,
        seconds=time.perf_counter() - started,
        recipe=recipe,
        plan=plan,
        notes=tuple(reporter.notes),
        nsfw=nsfw,
    )


# -- recipes ---------------------------------------------------------------------------------------


def _references(name: str, value: Any) -> list[dict[str, Any]]:
    checked = []
    for index, item in enumerate(schema.items(name, value)):
        if not isinstance(item, dict):
            raise schema.fail(f"{name}[{index}]", item, "an object with sha256 and size")
        checked.append(
            {
                "sha256": schema.digest(f"{name}[{index}].sha256", item.get("sha256")),
                "size": schema.listed(schema.size(f"{name}[{index}].size", item.get("size"))),
            }
        )
    return checked


def _edit_model(name: str, value: Any) -> str:
    key = schema.model(name, value)
    if KIND not in get_spec(key).kinds:
        raise schema.fail(name, value, f"an edit model ({', '.join(models_for(KIND))})")
    return key


def _step(name: str, value: Any, mode: str) -> dict[str, Any]:
    """An earlier edit of a recipe's sequence, each field checked as the app writes it."""
    if not isinstance(value, dict):
        raise schema.fail(name, value, "an object")
    seeds = [schema.whole(f"{name}.seeds[{i}]", s, 0, schema.SEED_END) for i, s in enumerate(value.get("seeds") or [])]
    if not seeds:
        raise schema.fail(f"{name}.seeds", value.get("seeds"), "a list of 1 or more seeds")
    step = {
        "model": _edit_model(f"{name}.model", value.get("model")),
        "model_id": schema.model_id(f"{name}.model_id", value.get("model_id"), mode),
        "revision": schema.revision(f"{name}.revision", value.get("revision")),
        "call": schema.mapping(f"{name}.call", value.get("call")),
        "seeds": seeds,
        "index": schema.whole(f"{name}.index", value.get("index"), 0, len(seeds)),
        "size": schema.listed(schema.size(f"{name}.size", value.get("size"))),
        "references": _references(f"{name}.references", value.get("references")),
    }
    if "resize_mode" in value:
        step["resize_mode"] = schema.choice(f"{name}.resize_mode", value["resize_mode"], RESIZE_MODES)
    return step


def recipe_extra(extra: dict[str, Any], mode: str, seeds: tuple[int, ...]) -> dict[str, Any]:
    """An edit recipe's own fields: its references, the output size asked for, the edits before it."""
    checked: dict[str, Any] = {
        **output_extra(extra, mode, seeds),
        "references": _references("extra.references", extra.get("references", [])),
        # what the next edit of a sequence checks it follows on from
        "image_sha256": schema.digest("extra.image_sha256", extra.get("image_sha256")),
        "outputs_sha256": [
            schema.digest(f"extra.outputs_sha256[{i}]", value)
            for i, value in enumerate(schema.items("extra.outputs_sha256", extra.get("outputs_sha256"), required=True))
        ],
    }
    if "edits" in extra:
        edits = schema.items("extra.edits", extra["edits"], required=True)
        if len(edits) + 1 > MAX_EDITS:
            raise schema.fail("extra.edits", f"{len(edits)} edits", f"at most {MAX_EDITS - 1} earlier edits")
        checked["edits"] = [_step(f"extra.edits[{i}]", step, mode) for i, step in enumerate(edits)]
    return checked


def reads_files(recipe: Recipe) -> tuple[str, ...]:
    """Its script reads every edit's references after the init."""
    steps = [*(recipe.extra.get("edits") or []), recipe.extra]
    last = len(steps)
    return tuple(
        reference_name(number, None if edit == last else edit)
        for edit, step in enumerate(steps, 1)
        for number in range(2, 2 + len(step.get("references") or []))
    )


# -- script export ---------------------------------------------------------------------------------


def edit_script(recipe: Recipe) -> str:
    """An edit's script: every edit of its sequence in order, each on the result of the one before, from the
    first image (the init)."""
    current = step_record(recipe)
    steps = [*(recipe.extra.get("edits") or []), current]
    last = len(steps)
    rows = []
    for number, step in enumerate(steps, 1):
        spec = get_spec(step["model"])
        rows.append(
            {
                "model": step["model"],
                "call": step["call"],
                "seeds": [int(seed) for seed in step["seeds"]],
                "index": int(step["index"]),
                "size": [int(side) for side in step["size"]],
                "resize_mode": step.get("resize_mode", RESIZE_MODES[0]),
                "references": [
                    [reference_name(ref, None if number == last else number), [int(s) for s in item["size"]]]
                    for ref, item in enumerate(step["references"], 2)
                ],
                "as_list": spec.adapter.takes_image_list,
            }
        )
    models = {step["model"]: step for step in steps}
    files = " ".join(reads_files(recipe))
    first = steps[0]
    lines = header(
        recipe,
        f"{'a sequence of ' + str(last) + ' edits' if last > 1 else 'an edit'} with {recipe.model_id}, seed "
        f"{recipe.seed}",
        [LOADER],
        more_args=f"  (reads {files} beside it)" if files else "",
    )
    lines += init_image_lines(tuple(first["size"]), first.get("resize_mode"))
    if "resize_mode" not in first:
        lines += source(resize_image)
    lines += [
        "# each model's pipeline, loaded when an edit first needs it",
        "loaders = {",
        *(
            f"    {literal(key)}: lambda: {load(LOADER, key, step['model_id'], step['revision'])},"
            for key, step in models.items()
        ),
        "}",
        f"edits = {literal(rows)}",
        "",
        "image, loaded, pipe = init_image, None, None",
        "for edit in edits:",
        '    if edit["model"] != loaded:',
        "        pipe = None  # one pipeline in memory at a time",
        '        pipe = loaders[edit["model"]]().to(DEVICE)',
        '        loaded = edit["model"]',
        '    width, height = edit["size"]',
        "    if image.size != (width, height):  # the size the edit asked for",
        '        image = resize_image(image, edit["resize_mode"], width, height)',
        "    images = [image]",
        '    for name, size in edit["references"]:',
        '        reference = Image.open(name).convert("RGB")',
        "        if reference.size != tuple(size):  # the app's working size",
        "            reference = reference.resize(tuple(size), Image.Resampling.LANCZOS)",
        "        images.append(reference)",
        '    generator = [torch.Generator(GENERATOR_DEVICE).manual_seed(seed) for seed in edit["seeds"]]',
        '    given = images if edit["as_list"] else images[0]',
        '    image = pipe(image=given, generator=generator, **edit["call"]).images[edit["index"]]',
        "",
    ]
    lines += saved("image")
    return "\n".join(lines)


def run(plan: EditPlan, context: RunContext) -> Iterator[EditResult]:
    """The Edit workflow's one result, in the shape every workflow runs in (engine.workflows.shape)."""
    yield run_edit(plan, context)


WORKFLOW = Workflow(
    name=KIND,
    request=EditRequest,
    plan=EditPlan,
    run=run,
    work=work,  # Basic's: one loop over every seed at the output size (the references' tokens in the family's step)
    script=edit_script,
    streams=False,
    recipe=schema.RecipeShape(extra=recipe_extra),
    reads_files=reads_files,
)
