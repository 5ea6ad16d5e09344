"""Parameter sweeps: one or two axes over the Basic workflow, planned, then run with shared work batched.

Planning validates every cell with the Basic rules before any work and groups the cells:

* work every cell shares is done once: the init image goes through the VAE encoder once per model,
  and each distinct (prompt, negative prompt) pair is encoded once;
* cells that differ only in seed, prompt, negative prompt or guidance scale run as one batched
  pipeline call (chunks of `settings.max_batch`). diffusers takes one scalar guidance scale, so a
  forward hook on the UNet rescales the conditional half of the batch per sample: with the call's
  scale g and a cell's g_i, cond' = u + (g_i / g)(cond - u), and the pipeline's own u + g (cond' - u)
  becomes u + g_i (cond - u);
* cells that differ in strength, steps, scheduler or model run as separate calls that still reuse
  the encodings.

Each cell's posterior sample of the init latents is drawn from that cell's own generator before the
call, exactly where the pipeline would draw it, so a batched cell reproduces the Basic path.

A sweep whose base is an `InpaintRequest` (an image and its mask) sweeps the Inpaint workflow: every cell is an
inpaint run of its own (recipe and script as the Inpaint tab's), over the axes an inpaint request has (mask_blur
and padding besides the sampling ones; no scheduler or LoRA). An outpaint's canvas is grown once, from the base
seed, and every cell inpaints that canvas.

A sweep whose base is an `EditRequest` sweeps the Edit workflow the same way: every cell is an edit of its own (recipe
and script as the Edit tab's), over the instruction, guidance, steps, seed and the edit models (any of them: they share
one size rule).
"""

from __future__ import annotations

import html
import math
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from PIL import Image

from engine.base.errors import shown_value
from engine.base.settings import Settings
from engine.models.catalog import get_spec
from engine.models.loras import recorded
from engine.models.loras import text as lora_text
from engine.pipelines.calls import call_pipeline, denoiser_of, make_generators
from engine.pipelines.live import LiveView
from engine.pipelines.lora import applied
from engine.pipelines.portable import encode_posterior, per_sample_guidance, sample_latents
from engine.pipelines.prompts import weighted_embeddings
from engine.pipelines.schedulers import swapped_scheduler
from engine.recipes import schema
from engine.recipes.recipe import Recipe
from engine.recipes.script import img2img_preamble, literal, saved, source, weighted_prompt_encoder
from engine.workflows import basic
from engine.workflows.basic import Img2ImgPlan, Img2ImgRequest, run_img2img
from engine.workflows.checks import FOLLOW_INPUT, check_model, check_seed
from engine.workflows.edit import EditPlan, EditRequest, run_edit
from engine.workflows.grid import grid_layout, labelled_grid
from engine.workflows.inpaint import InpaintPlan, InpaintRequest, run_inpaint
from engine.workflows.shape import GpuWork, RunContext, Workflow, stoppable

NUMERIC_AXES = ("strength", "guidance_scale", "num_inference_steps", "seed", "lora_weight", "mask_blur", "padding")
TEXT_AXES = ("prompt", "negative_prompt")
AXES = (*NUMERIC_AXES, *TEXT_AXES, "scheduler", "model", "inpaint_area")
WHOLE_AXES = ("num_inference_steps", "seed", "mask_blur", "padding")  # whole numbers: 1-4 is a range
NONE_TOKEN = "(none)"  # an empty negative prompt as a line of its own
# Axes that are fields of the base request as they are (seed, scheduler and model are too, but are checked on
# their own; lora_weight sets a weight inside loras).
_REQUEST_FIELDS = (
    "strength",
    "guidance_scale",
    "num_inference_steps",
    "prompt",
    "negative_prompt",
    "mask_blur",
    "padding",
    "inpaint_area",
)
_AXIS_FIELD = {"lora_weight": "loras"}  # the base request's field an axis varies, where it is named otherwise

_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_RANGE = re.compile(
    rf"^\s*(?P<start>-?(?:{_NUMBER}))\s*-\s*(?P<stop>-?(?:{_NUMBER}))\s*"  # signed ends: -1-1 [5] for lora_weight
    rf"(?:\(\s*(?P<step>[+-]?\s*(?:{_NUMBER}))\s*\)|\[\s*(?P<count>\d+)\s*\])?\s*$"
)


# -- parsing ---------------------------------------------------------------------------------------


def parse_values(axis: str, text: object, *, name: str = "values", max_values: int = 64) -> list:
    """Parse one axis' values: a list (`0.3, 0.5, 0.8`), a range (`0.2-1.0 (+0.2)`, `0.2-1.0 [5]`,
    `1-4` for whole-number axes), or one line per value for prompts, schedulers and models.

    Raises:
        ValueError: naming the field, the axis and the bad value.
    """
    where = f"{name} for axis {shown_value(axis)}"
    if axis not in AXES:
        raise ValueError(f"axis must be one of {', '.join(AXES)}; got {shown_value(axis)}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where} is empty: give a list like 0.3, 0.5, 0.8 or one value per line")
    if len(text) > 100_000:
        raise ValueError(f"{where} is {len(text):,} characters long; the limit is 100,000")
    values: list[str] | list[float | int]
    if axis in TEXT_AXES or axis in ("scheduler", "model", "inpaint_area"):
        values = [line.strip() for line in text.splitlines() if line.strip()]
        if axis in ("scheduler", "model", "inpaint_area") and len(values) == 1 and "," in values[0]:
            values = [v.strip() for v in values[0].split(",") if v.strip()]
        if axis == "negative_prompt":
            values = ["" if v == NONE_TOKEN else v for v in values]
    else:
        values = _parse_numbers(axis, text, where, max_values)
    if len(values) > max_values:
        raise ValueError(f"{where} has {len(values)} values; at most {max_values} fit one sweep")
    return values


def _parse_numbers(axis: str, text: str, where: str, max_values: int) -> list[float | int]:
    whole = axis in WHOLE_AXES
    match = _RANGE.match(text)
    if match:
        start, stop = float(match["start"]), float(match["stop"])
        if not (math.isfinite(start) and math.isfinite(stop)) or max(abs(start), abs(stop)) > 2**64:
            raise ValueError(f"{where}: the range {shown_value(text.strip(), 60)} has an end too large to use")
        if match["count"] is not None:
            count = int(match["count"])
            if not 1 <= count <= max_values:
                shown = shown_value(text.strip())
                raise ValueError(f"{where}: a range takes 1 to {max_values} values, got [{count}] in {shown}")
            values = [start] if count == 1 else [start + (stop - start) * i / (count - 1) for i in range(count)]
        else:
            if match["step"] is not None:
                step = float(match["step"].replace(" ", ""))
            elif whole:
                step = 1.0 if stop >= start else -1.0
            else:
                raise ValueError(f"{where}: a range of decimals needs a step or a count, e.g. 0.2-1.0 (+0.2) or [5]")
            if step == 0 or (stop - start) * step < 0:
                raise ValueError(f"{where}: step {step:g} never gets from {start:g} to {stop:g}")
            count = math.floor((stop - start) / step + 1e-9) + 1
            if count > max_values:
                raise ValueError(f"{where}: {shown_value(text.strip())} gives {count} values; at most {max_values}")
            values = [start + i * step for i in range(count)]
        values = [round(v, 6) for v in values]
    else:
        values = []
        for item in text.replace("\n", ",").split(","):
            item = item.strip()
            if not item:
                continue
            try:
                values.append(float(item))
            except ValueError:
                raise ValueError(
                    f"{where}: {shown_value(item)} is not a number; use a list (0.3, 0.5) or a range (0.2-1.0 (+0.2))"
                ) from None
        if not values:
            raise ValueError(f"{where} has no values")
    for value in values:
        if not math.isfinite(value):
            raise ValueError(f"{where}: {shown_value(value)} is not a finite number")
    if whole:
        for value in values:
            if value != int(value):
                raise ValueError(f"{where}: {value:g} is not a whole number")
        return [int(v) for v in values]
    return values


def format_value(axis: str, value: object) -> str:
    """How a value is shown in labels, captions and the plan."""
    if axis == "negative_prompt" and value == "":
        return NONE_TOKEN
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# -- planning --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepRequest:
    """A sweep request: the Basic parameters (or an Inpaint request's) plus an X axis and an optional Y axis."""

    base: Img2ImgRequest | InpaintRequest | EditRequest
    x_axis: str
    x_values: str
    y_axis: str | None = None
    y_values: str = ""

    def validate(self, settings: Settings) -> SweepPlan:
        """Every cell checked and grouped into calls, before any work (see plan_sweep)."""
        return plan_sweep(self, settings)


@dataclass(frozen=True)
class SweepCell:
    """One cell: its place in the grid, the axis values that made it, and its validated plan."""

    index: int
    row: int
    col: int
    values: dict[str, object]
    plan: Img2ImgPlan | InpaintPlan | EditPlan

    @property
    def scheduler(self) -> str | None:
        """The scheduler this cell swaps in (its axis value, or the sweep's own); None: the model's."""
        return self.plan.scheduler

    @property
    def caption(self) -> str:
        """What sets this cell apart: its axis values (the seed only where it is an axis; the summary and the
        recipe carry the rest)."""
        return ", ".join(f"{axis}={format_value(axis, v)}" for axis, v in self.values.items())

    @property
    def batches(self) -> bool:
        """Whether the cell may share a batched call: an img2img cell of a family that batches (an inpaint cell,
        or one of a family that runs one call per seed, is a call of its own)."""
        return isinstance(self.plan, Img2ImgPlan) and self.plan.spec.adapter.batches_cells

    @property
    def script_inputs(self) -> dict[str, Image.Image]:
        """The images its script reads besides the init (an inpaint cell's mask), by their download names."""
        return self.plan.script_inputs if isinstance(self.plan, InpaintPlan | EditPlan) else {}

    @property
    def img2img_plan(self) -> Img2ImgPlan:
        """The plan of a cell that `batches`."""
        assert isinstance(self.plan, Img2ImgPlan)
        return self.plan

    def batch_key(self) -> tuple:
        """Cells with equal keys can share a batched call (cells that `batches`)."""
        plan = self.img2img_plan
        return (
            plan.spec.key,
            plan.strength,
            plan.num_inference_steps,
            self.scheduler,
            plan.weighted_prompt,
            plan.loras,
        )


@dataclass(frozen=True)
class SweepPlan:
    """Every cell validated, the calls they are grouped into, and the grid's size: all before any work."""

    cells: tuple[SweepCell, ...]
    x_axis: str
    x_labels: tuple[str, ...]
    y_axis: str | None
    y_labels: tuple[str, ...]
    calls: tuple[tuple[int, ...], ...]  # cell indices per pipeline call
    grid_size: tuple[int, int]

    @property
    def cols(self) -> int:
        return len(self.x_labels)

    @property
    def rows(self) -> int:
        return max(1, len(self.y_labels))

    @property
    def total_steps(self) -> int:
        return sum(c.plan.denoising_steps for c in self.cells)

    def describe(self) -> str:
        """The plan in words (Markdown, axis values HTML-escaped: they are typed text), before it runs."""
        lines = [f"**X: {self.x_axis}**: {html.escape(', '.join(self.x_labels), quote=False)}"]
        if self.y_axis:
            lines.append(f"**Y: {self.y_axis}**: {html.escape(', '.join(self.y_labels), quote=False)}")
        w, h = self.grid_size
        lines.append(
            f"**{len(self.cells)}** cells in **{len(self.calls)}** pipeline call(s) · grid {w}×{h} px · "
            f"**{self.total_steps}** denoising steps in all"
        )
        return "\n\n".join(lines)


def plan_sweep(request: SweepRequest, settings: Settings) -> SweepPlan:
    """Parse and validate both axes and every cell, then group cells into calls.

    Raises:
        ValueError: naming the axis and the bad value, or the limit a sweep exceeds; before any work.
    """
    base = request.base
    x_axis = _check_axis(request.x_axis, "x_axis", base)
    y_axis = None if request.y_axis in (None, "", "none") else _check_axis(request.y_axis, "y_axis", base)
    if y_axis == x_axis:
        raise ValueError(f"x_axis and y_axis are both {shown_value(x_axis)}; pick two different axes")
    limit = settings.max_sweep_cells
    x_values = parse_values(x_axis, request.x_values, name="x_values", max_values=limit)
    y_values = parse_values(y_axis, request.y_values, name="y_values", max_values=limit) if y_axis else [None]
    count = len(x_values) * len(y_values)
    if count > limit:
        raise ValueError(f"the sweep has {len(x_values)} x {len(y_values)} = {count} cells; the limit is {limit}")

    kind = "inpaint" if isinstance(base, InpaintRequest) else "edit" if isinstance(base, EditRequest) else "img2img"
    if isinstance(base, EditRequest) and base.previous is not None:
        raise ValueError("previous: a sweep edits the image it is given; leave previous empty")
    models = _check_model_axis(x_axis, x_values, y_axis, y_values, kind)
    # The base seed is resolved once, so every cell shares it unless the seed axis varies it. The image is
    # normalised once (for the first model: a model axis stays in one family, so one size rule).
    base_seed = check_seed(request.base.seed)
    base_request = replace(
        request.base, model=models[0] if models else request.base.model, seed=base_seed, num_images=1
    )
    # Validate the image against the first cell's values of the swept fields (an empty base prompt is
    # fine when the prompt is an axis); each cell is validated in full below.
    first = {a: v[0] for a, v in ((x_axis, x_values), (y_axis, y_values)) if a in _REQUEST_FIELDS and v[0] is not None}
    checked = replace(base_request, **first).validate(settings)
    # the cells start from the image as sized (a resize by a scale is not applied twice; an outpaint's canvas is
    # grown once), an inpaint's mask with it
    if isinstance(base_request, InpaintRequest):
        assert isinstance(checked, InpaintPlan)  # an inpaint request's plan
        base_request = replace(
            base_request,
            image=checked.image.image,
            mask=checked.mask,
            expand_left=0,
            expand_right=0,
            expand_up=0,
            expand_down=0,
        )
    elif isinstance(base_request, EditRequest):
        assert isinstance(checked, EditPlan)  # an edit request's plan: its references as sized
        base_request = replace(
            base_request, image=checked.image.image, output_size=FOLLOW_INPUT, references=checked.references
        )
    else:
        base_request = replace(base_request, image=checked.image.image, output_size=FOLLOW_INPUT)
    if "lora_weight" in (x_axis, y_axis) and not checked.loras:
        raise ValueError("the lora_weight axis varies the weight of the first LoRA in loras: name one there first")

    cells: list[SweepCell] = []
    for row, y_value in enumerate(y_values):
        for col, x_value in enumerate(x_values):
            values = {x_axis: x_value} if y_axis is None else {x_axis: x_value, y_axis: y_value}
            cells.append(_make_cell(len(cells), row, col, values, base_request, settings, checked.loras))
    cell_size = cells[0].plan.image.size
    layout = grid_layout(cell_size, len(x_values), len(y_values), has_y=y_axis is not None)
    if layout.size[0] * layout.size[1] > settings.max_grid_pixels:
        w, h = layout.size
        raise ValueError(
            f"the grid would be {w}x{h} = {w * h:,} pixels, over the limit of {settings.max_grid_pixels:,}; "
            "use fewer values or a smaller image"
        )
    return SweepPlan(
        cells=tuple(cells),
        x_axis=x_axis,
        x_labels=tuple(format_value(x_axis, v) for v in x_values),
        y_axis=y_axis,
        y_labels=tuple(format_value(y_axis, v) for v in y_values) if y_axis else (),
        calls=_group_calls(cells, settings.max_batch),
        grid_size=layout.size,
    )


def axes_for(base: Img2ImgRequest | InpaintRequest | EditRequest) -> tuple[str, ...]:
    """The axes a sweep over `base` can vary: those naming one of its request's fields."""
    fields = set(base.__dataclass_fields__) - set(getattr(base, "REFUSED", ()))
    return tuple(axis for axis in AXES if _AXIS_FIELD.get(axis, axis) in fields)


def _check_axis(axis: object, name: str, base: Img2ImgRequest | InpaintRequest | EditRequest) -> str:
    if axis not in AXES:
        raise ValueError(f"{name} must be one of {', '.join(AXES)}; got {shown_value(axis)}")
    allowed = axes_for(base)
    if axis not in allowed:
        what = (
            "an inpainting sweep (with a mask)"
            if isinstance(base, InpaintRequest)
            else "an edit sweep (an edit model)"
            if isinstance(base, EditRequest)
            else "a sweep without a mask"
        )
        raise ValueError(f"{name} {shown_value(axis)} does not apply to {what}; its axes are {', '.join(allowed)}")
    return axis


def _check_model_axis(x_axis, x_values, y_axis, y_values, kind: str = "img2img") -> list[str]:
    """The model axis' values (empty without one); they must share one family, so one size rule (edit models of
    other families may meet: an edit makes its image anew, and they share the size rule, a multiple of 16)."""
    for axis, values, name in ((x_axis, x_values, "x_values"), (y_axis, y_values, "y_values")):
        if axis != "model":
            continue
        families = set()
        multiples = set()
        for value in values:
            try:
                spec = check_model(value, kind)
            except ValueError as exc:
                raise ValueError(f"{name} for axis 'model': {exc}") from None
            families.add(spec.family)
            multiples.add(spec.size_multiple)
        if kind == "edit" and len(multiples) == 1:
            return list(values)
        if len(families) > 1:
            raise ValueError(
                f"{name} for axis 'model' mixes model families ({', '.join(sorted(families))}); "
                "sweep models of one family, e.g. sd15, comic-diffusion, pixel-art-style"
            )
        return list(values)
    return []


def _make_cell(
    index: int,
    row: int,
    col: int,
    values: dict,
    base: Img2ImgRequest | InpaintRequest | EditRequest,
    settings: Settings,
    loras: tuple = (),
) -> SweepCell:
    """One cell: the base request with the cell's axis values; `loras` are the base's, checked (the lora_weight
    axis sets the first one's weight)."""
    overrides: dict[str, Any] = {}  # checked by the request's validate
    for axis, value in values.items():
        if axis == "seed":
            overrides["seed"] = check_seed(value)
        elif axis == "lora_weight":
            overrides["loras"] = [[loras[0][0].name, value], *([lora.name, weight] for lora, weight in loras[1:])]
        else:
            overrides[axis] = value
    try:
        plan = replace(base, **overrides).validate(settings)
    except ValueError as exc:
        shown = ", ".join(f"{a}={format_value(a, v)!r}" for a, v in values.items())
        raise ValueError(f"cell {shown}: {exc}") from None
    return SweepCell(index=index, row=row, col=col, values=values, plan=plan)


def _group_calls(cells: Sequence[SweepCell], max_batch: int) -> tuple[tuple[int, ...], ...]:
    """Cells with the same batch key run together, in chunks of max_batch, in grid order."""
    groups: dict[tuple, list[int]] = {}
    for cell in cells:
        key = cell.batch_key() if cell.batches else ("single", cell.index)
        groups.setdefault(key, []).append(cell.index)
    calls: list[tuple[int, ...]] = []
    for indices in groups.values():
        calls.extend(tuple(indices[i : i + max_batch]) for i in range(0, len(indices), max_batch))
    return tuple(sorted(calls, key=lambda call: call[0]))


# -- running ---------------------------------------------------------------------------------------


@dataclass
class SweepProgress:
    """What a sweep has made so far; yielded after each pipeline call."""

    plan: SweepPlan
    images: list[Image.Image | None]
    recipes: list[Recipe | None] = field(default_factory=list)
    done_calls: int = 0
    stopped: str | None = None
    seconds: float = 0.0
    steps_run: int = 0
    notes: list[str] = field(default_factory=list)  # faults recovered from (the reporter's list)

    @property
    def finished(self) -> bool:
        return self.stopped is not None or self.done_calls == len(self.plan.calls)

    @property
    def done_cells(self) -> list[SweepCell]:
        return [cell for cell in self.plan.cells if self.images[cell.index] is not None]

    def grid(self, live: dict[int, Image.Image] | None = None) -> Image.Image:
        """The labelled grid of the cells made so far; `live` fills running cells with their live previews
        (scaled to the cell's size)."""
        plan = self.plan
        cells = list(self.images)
        for index, image in (live or {}).items():
            if cells[index] is None:
                cells[index] = image.resize(plan.cells[index].plan.image.size, Image.Resampling.BILINEAR)
        return labelled_grid(
            cells,
            cols=plan.cols,
            rows=plan.rows,
            x_name=plan.x_axis,
            x_labels=plan.x_labels,
            y_name=plan.y_axis,
            y_labels=plan.y_labels,
            cell_size=plan.cells[0].plan.image.size,
        )

    def table(self) -> list[dict]:
        """One row per finished cell: its place, every parameter and its seed (for CSV/JSON export)."""
        rows = []
        for cell in self.done_cells:
            plan = cell.plan
            inpaint = (
                {"mask_blur": plan.mask_blur, "inpaint_area": plan.inpaint_area, "padding": plan.padding}
                if isinstance(plan, InpaintPlan)
                else {}
            )
            rows.append(
                {
                    "index": cell.index,
                    "row": cell.row,
                    "col": cell.col,
                    "model": plan.spec.key,
                    "prompt": plan.prompt,
                    "negative_prompt": plan.negative_prompt,
                    "strength": plan.strength,
                    "guidance_scale": plan.guidance_scale,
                    "num_inference_steps": plan.num_inference_steps,
                    "denoising_steps": plan.denoising_steps,
                    "seed": plan.seeds[0],
                    "scheduler": cell.scheduler or plan.spec.scheduler,
                    "loras": lora_text(plan.loras),
                    "width": plan.image.size[0],
                    "height": plan.image.size[1],
                    **inpaint,
                }
            )
        return rows


def run_sweep(plan: SweepPlan, context: RunContext) -> Iterator[SweepProgress]:
    """Run a plan, yielding progress after every pipeline call; Stop ends it keeping finished cells.

    Each cell gets a recipe; a batched cell's records its batch and place in it, so its script replays
    the very call that made it.
    """
    progress = start_sweep(plan)
    progress.notes = context.reporter.notes
    return stoppable(progress, _calls(plan, context, progress))


def start_sweep(plan: SweepPlan) -> SweepProgress:
    """A sweep's progress before any cell is made."""
    return SweepProgress(plan=plan, images=[None] * len(plan.cells), recipes=[None] * len(plan.cells))


def split_sweep(plan: SweepPlan) -> list[SweepPlan]:
    """One plan per pipeline call: the same cells and grid, one call each (what several workers share)."""
    return [replace(plan, calls=(call,)) for call in plan.calls]


def gather_sweep(progress: SweepProgress, part: SweepProgress) -> None:
    """A part's finished cells, steps and notes taken into the whole sweep's progress (parts in order)."""
    for call in part.plan.calls[: part.done_calls]:
        for index in call:
            progress.images[index] = part.images[index]
            progress.recipes[index] = part.recipes[index]
    progress.done_calls += part.done_calls
    progress.steps_run += part.steps_run
    progress.notes.extend(note for note in part.notes if note not in progress.notes)


def _calls(plan: SweepPlan, context: RunContext, progress: SweepProgress) -> Iterator[SweepProgress]:
    reporter = context.reporter
    started = time.perf_counter()
    shared = _SharedWork()
    for number, call in enumerate(plan.calls):
        cells = [plan.cells[i] for i in call]
        reporter.start_call(calls_left=len(plan.calls) - number)
        try:
            images = _run_call(context, cells, shared, later_calls=len(plan.calls) - number - 1)
        finally:  # a Stop keeps the time and steps spent
            progress.seconds = time.perf_counter() - started
            progress.steps_run = reporter.steps
        for cell, (image, recipe) in zip(cells, images, strict=True):
            progress.images[cell.index] = image
            progress.recipes[cell.index] = recipe
        progress.done_calls = number + 1
        yield progress


@dataclass
class _SharedWork:
    """Encodings computed once per sweep: init-image posteriors per model, prompt embeddings per pair."""

    posteriors: dict[str, Any] = field(default_factory=dict)  # the VAE's latent distributions
    prompts: dict[tuple, dict] = field(default_factory=dict)


def _run_call(context: RunContext, cells: list[SweepCell], shared: _SharedWork, *, later_calls: int = 0) -> list:
    first = cells[0]
    if isinstance(first.plan, InpaintPlan):  # an inpaint cell: the Inpaint workflow's run, recipe and script
        inpainted = run_inpaint(first.plan, context, place=first.index, later_calls=later_calls)
        return [(inpainted.images[0], inpainted.recipe)]
    if isinstance(first.plan, EditPlan):  # an edit cell: the Edit workflow's run, recipe and script
        edited = run_edit(first.plan, context, place=first.index, later_calls=later_calls)
        return [(edited.images[0], edited.recipe)]
    if not first.batches:  # e.g. Kandinsky 2.2: one call per seed, the Basic path
        result = run_img2img(first.plan, context, place=first.index, later_calls=later_calls)
        return [(result.images[0], result.recipe)]
    cache = context.cache
    pipe = cache.get(first.plan.spec.key, "img2img")
    images: list[tuple | None] = [None] * len(cells)
    with (
        cache.lock,
        swapped_scheduler(pipe, first.scheduler, cache.lock),
        applied(pipe, first.plan.loras, first.plan.spec.label),
    ):
        embeddings = [_embeddings(pipe, cell.img2img_plan, shared) for cell in cells]
        # Weighted prompts past 77 tokens make longer embeddings: only equal shapes stack into one batch.
        by_shape: dict[tuple, list[int]] = {}
        for position, embeds in enumerate(embeddings):
            by_shape.setdefault(tuple(embeds["prompt_embeds"].shape), []).append(position)
        for positions in by_shape.values():
            batch = [cells[p] for p in positions]
            outputs = _batched_call(pipe, batch, [embeddings[p] for p in positions], shared, context)
            for place, (position, image) in enumerate(zip(positions, outputs, strict=True)):
                images[position] = (image, _cell_recipe(pipe, batch, place, image, context))
    return images


def _cell_recipe(pipe, batch: list[SweepCell], place: int, image: Image.Image, context: RunContext) -> Recipe:
    """A batched cell's recipe: its own parameters, plus the batch and its place in it."""
    cell = batch[place]
    plan = cell.img2img_plan
    return Recipe.from_pipeline(
        pipe,
        init=plan.image.image,
        workflow="sweep",
        model=plan.spec.key,
        model_id=context.model_id(plan.spec.key),
        generator_device=context.cache.policy.generator_device,
        seeds=(plan.seeds[0],),
        parameters={
            "prompt": plan.prompt,
            "negative_prompt": plan.negative_prompt or None,
            "strength": plan.strength,
            "guidance_scale": plan.guidance_scale,
            "num_inference_steps": plan.num_inference_steps,
        },
        size=image.size,
        model_mode=context.model_mode,
        revision=plan.spec.revision,
        weighted_prompt=plan.weighted_prompt,
        extra={
            "family": plan.spec.family,
            "scheduler_name": cell.scheduler,
            **({"loras": recorded(plan.loras)} if plan.loras else {}),
            "position": place,
            "batch": [
                {
                    "prompt": c.plan.prompt,
                    "negative_prompt": c.plan.negative_prompt or None,
                    "seed": c.plan.seeds[0],
                    "guidance_scale": c.plan.guidance_scale,
                }
                for c in batch
            ],
        },
    )


def _batched_call(pipe, cells, embeddings, shared: _SharedWork, context: RunContext) -> list[Image.Image]:
    """One pipeline call for cells that share model, strength, steps and scheduler."""
    first = cells[0]
    seeds = [cell.plan.seeds[0] for cell in cells]
    generators = make_generators(seeds, context.cache.policy.generator_device)
    key = first.plan.spec.key
    if key not in shared.posteriors:  # the VAE encoder runs once per model and sweep
        shared.posteriors[key] = encode_posterior(pipe, first.plan.image.image)
    latents = sample_latents(pipe, shared.posteriors[key], generators)
    scales = [cell.plan.guidance_scale for cell in cells]
    call_scale = max(scales)
    kwargs = {
        **{name: torch.cat([e[name] for e in embeddings]) for name in embeddings[0]},
        "image": latents,
        "strength": first.plan.strength,
        "num_inference_steps": first.plan.num_inference_steps,
        "guidance_scale": call_scale,
        "num_images_per_prompt": 1,
    }
    with per_sample_guidance(denoiser_of(pipe).unet, scales, call_scale):
        output = call_pipeline(
            pipe,
            kwargs,
            seeds=seeds,
            cache=context.cache,
            reporter=context.reporter,
            generators=generators,
            live=LiveView(first.plan.spec.adapter.latent_rgb, first.plan.image.size, tuple(c.index for c in cells)),
        )
    return list(output.images)


def _embeddings(pipe, plan: Img2ImgPlan, shared: _SharedWork) -> dict:
    """A cell's prompt embeddings; each distinct (model, prompt, negative) is encoded once per sweep."""
    key = (plan.spec.key, plan.prompt, plan.negative_prompt, plan.weighted_prompt, plan.loras)  # a LoRA may hold the
    # text encoder's deltas too
    if key not in shared.prompts:
        shared.prompts[key] = _encode(pipe, plan)
    return shared.prompts[key]


def _encode(pipe, plan: Img2ImgPlan) -> dict:
    if plan.weighted_prompt:
        return weighted_embeddings(pipe, plan.spec, plan.prompt, plan.negative_prompt)
    encode = plan.spec.adapter.encode_prompt
    assert encode is not None  # only families that batch cells reach here (_group_calls)
    with torch.inference_mode():
        return encode(pipe, plan.prompt, plan.negative_prompt or None)  # None, as the Basic path passes it


# -- script export ---------------------------------------------------------------------------------


SWEEP_BODY = """
# The cells of the batched call this image came from, and its place in it.
batch = {batch}
position = {position}

# 1. Prompt embeddings, encoded as the app encodes them, one row per cell.
{encode}
prompt_kwargs = {{name: torch.cat([row[name] for row in rows]) for name in rows[0]}}

# 2. The init image through the VAE encoder once; each cell samples the posterior with its own generator,
#    where the pipeline would, so the generator goes on as in a run of its own.
generators = [torch.Generator(GENERATOR_DEVICE).manual_seed(cell["seed"]) for cell in batch]
latents = sample_latents(pipe, encode_posterior(pipe, init_image), generators)

# 3. One guidance scale per call: per_sample_guidance gives each cell its own.
scales = [cell["guidance_scale"] for cell in batch]
call_scale = max(scales)
with per_sample_guidance(pipe.unet, scales, call_scale):
    images = pipe(
        image=latents,
        strength={strength},
        num_inference_steps={steps},
        guidance_scale=call_scale,
        num_images_per_prompt=1,
        generator=generators,
        **prompt_kwargs,
    ).images
"""


def _sweep_encode_lines(recipe: Recipe) -> list[str]:
    """The prompt encoder of the cell's family and the rows it makes, as engine.workflows.sweep calls it."""
    if recipe.weighted_prompt:
        return [
            *source(weighted_prompt_encoder(recipe)),
            'rows = [weighted_prompt(pipe, cell["prompt"], cell["negative_prompt"] or "") for cell in batch]',
        ]
    encode = get_spec(recipe.model).adapter.encode_prompt
    if encode is None:
        raise ValueError(f"model {recipe.model!r} does not batch sweep cells")
    return [
        *source(encode),
        "with torch.inference_mode():",
        '    rows = [encode_prompt(pipe, cell["prompt"], cell["negative_prompt"]) for cell in batch]',
    ]


def sweep_script(recipe: Recipe) -> str:
    """A batched sweep cell: replays the whole batched call, then keeps this cell's image."""
    p = recipe.parameters
    lines = img2img_preamble(recipe, f"sweep cell with {recipe.model_id}, seed {recipe.seed}")
    lines += ["import contextlib", "", "", *source(encode_posterior, sample_latents, per_sample_guidance)]
    body = SWEEP_BODY.format(
        batch=literal(recipe.extra["batch"]),
        position=int(recipe.extra["position"]),
        encode="\n".join(_sweep_encode_lines(recipe)),
        strength=literal(p["strength"]),
        steps=literal(p["num_inference_steps"]),
    )
    return "\n".join([*lines, body, *saved("images[position]")])


def work(plan: SweepPlan) -> list[GpuWork]:
    """Every cell's loop, as if run one by one (a batched call costs less: an upper bound)."""
    return [loop for cell in plan.cells for loop in basic.work(cell.plan)]


def _recipe_cell(name: str, value: Any) -> dict[str, Any]:
    """One cell of the batched call a sweep cell's recipe replays."""
    if not isinstance(value, dict):
        raise schema.fail(name, value, "an object")
    guidance = value.get("guidance_scale")
    if isinstance(guidance, bool) or not isinstance(guidance, int | float) or not 0 <= guidance <= 1000:
        raise schema.fail(f"{name}.guidance_scale", guidance, "a number in [0, 1000]")
    return {
        "prompt": schema.text(f"{name}.prompt", value.get("prompt")),
        "negative_prompt": schema.text(f"{name}.negative_prompt", value.get("negative_prompt"), optional=True),
        "seed": schema.whole(f"{name}.seed", value.get("seed"), 0, schema.SEED_END),
        "guidance_scale": guidance,
    }


def recipe_extra(extra: dict[str, Any], mode: str, seeds: tuple[int, ...]) -> dict[str, Any]:
    """A sweep cell's own recipe fields: the batch its call ran and its position in it."""
    batch = schema.items("extra.batch", extra.get("batch"), required=True)
    return {
        "batch": [_recipe_cell(f"extra.batch[{i}]", cell) for i, cell in enumerate(batch)],
        "position": schema.whole("extra.position", extra.get("position"), 0, len(batch)),
    }


WORKFLOW = Workflow(
    name="sweep",
    request=SweepRequest,
    plan=SweepPlan,
    run=run_sweep,
    work=work,
    script=sweep_script,
    start=start_sweep,
    parts=split_sweep,
    gather=gather_sweep,
    recipe=schema.RecipeShape(extra=recipe_extra, required=("strength", "num_inference_steps")),
)
