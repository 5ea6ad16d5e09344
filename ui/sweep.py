"""Sweep tab: one or two axes over the Basic parameters, as a labelled grid that fills in as cells finish."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from gradio.helpers import Examples  # gr.Examples is a function that makes one
from PIL import Image

from engine.core import Engine
from engine.models.catalog import DEFAULT_MODEL, known_spec, models_for
from engine.pipelines.calls import CancelToken
from engine.pipelines.live import LivePreview
from engine.pipelines.schedulers import schedulers_for
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.checks import RANDOM_SEED, model_defaults
from engine.workflows.edit import KIND as EDIT
from engine.workflows.edit import EditRequest
from engine.workflows.inpaint import INPAINT_AREAS, WHOLE_PICTURE, InpaintRequest
from engine.workflows.sweep import AXES, NONE_TOKEN, SweepProgress, SweepRequest, start_sweep
from ui.basic import EXAMPLE_PROMPTS
from ui.components import (
    BASIC_FIELDS,
    GenerationInputs,
    advanced_inputs,
    downloads,
    engine_checked,
    header_only,
    image_input,
    main_inputs,
    mask_settings,
    model_label,
    recipe_panel,
    result_gallery,
    result_image,
    run_button,
    stop_button,
    summary_box,
)
from ui.events import (
    Finished,
    documented,
    user_errors,
    warning_text,
    watched,
    wire_generation,
    wire_preview,
    wire_recipe_selection,
)
from ui.outputs import download_folder, png_outputs

AXIS_EXAMPLES = {
    "strength": "0.3, 0.5, 0.7, 0.9",
    "guidance_scale": "1.5, 4.5, 7.5, 12",
    "num_inference_steps": "10, 25, 50",
    "seed": "1-4",
    "prompt": "a watercolor painting of a cat\nan oil painting of a cat\na pencil sketch of a cat",
    "negative_prompt": f"{NONE_TOKEN}\nblurry, low quality\nwatercolor",
    "scheduler": "PLMS\nEuler a\nDPM++ 2M Karras\nDPM++ 2M SDE",
    "model": "sd15\ncomic-diffusion\npixel-art-style",
    "lora_weight": "0, 0.4, 0.8, 1.2",
    "mask_blur": "0, 4, 16",
    "padding": "0, 32, 96",
    "inpaint_area": "\n".join(INPAINT_AREAS),
}
VALUES_INFO = (
    "A list (0.3, 0.5, 0.8), a range with a step (0.2-1.0 (+0.2)) or a count (0.2-1.0 [5]), 1-4 for whole "
    f"numbers; prompts, schedulers and models one per line ({NONE_TOKEN} for an empty negative prompt)."
)


def plan_text(engine: Engine, *values) -> str:
    """The parsed axes, cell count, grid size and steps in all, or what is wrong, before running."""
    fields = dict(zip(SWEEP_FIELDS, values, strict=False))  # weighting and scheduler may be left out
    try:
        headers = {name: header_only(fields.get(name)) for name in ("image", "mask")}  # never decoded here
        return engine.describe(engine.plan(sweep_request(**{**fields, **headers})))
    except ValueError as exc:
        return warning_text(exc)


# The sweep handler's inputs in the page's (and the API's) order.
SWEEP_FIELDS = (
    *BASIC_FIELDS,
    "x_axis",
    "x_values",
    "y_axis",
    "y_values",
    "weighted_prompt",
    "scheduler",
    "loras",
    "mask",
    "mask_blur",
    "inpaint_area",
    "padding",
)


def sweep_request(
    *,
    x_axis,
    x_values,
    y_axis,
    y_values,
    weighted_prompt=False,
    scheduler="",
    loras="",
    mask=None,
    mask_blur=4,
    inpaint_area=WHOLE_PICTURE,
    padding=32,
    **basic,
) -> SweepRequest:
    """A sweep request from the tab's values; `basic` holds the Basic fields (image, prompt, ..., seed). With a
    mask, each cell inpaints (Basic's weighting, scheduler and LoRAs do not apply and are refused if set); with an
    edit model, each cell is an edit (its strength unused; weighting, scheduler, LoRAs and a mask refused)."""
    base: Img2ImgRequest | InpaintRequest | EditRequest
    spec = known_spec(basic.get("model"))
    if spec is not None and EDIT in spec.kinds and "img2img" not in spec.kinds:
        asked = (("weighted_prompt", weighted_prompt), ("scheduler", scheduler), ("loras", loras), ("mask", mask))
        for name, value in asked:
            if value:
                raise ValueError(
                    f"{name} does not apply to an edit sweep ({spec.label} is an edit model); got {value!r:.60}: "
                    "leave it empty"
                )
        fields = ("image", "prompt", "negative_prompt", "model", "guidance_scale", "num_inference_steps", "seed")
        base = EditRequest(**{name: basic[name] for name in fields if name in basic})
    elif mask is None:
        base = Img2ImgRequest(**basic, weighted_prompt=weighted_prompt, scheduler=scheduler or None, loras=loras)
    else:
        for name, value in (("weighted_prompt", weighted_prompt), ("scheduler", scheduler), ("loras", loras)):
            if value:
                raise ValueError(
                    f"{name} does not apply to an inpainting sweep (a mask was given); got {value!r:.60}: leave it "
                    "empty, or remove the mask"
                )
        base = InpaintRequest(**basic, mask=mask, mask_blur=mask_blur, inpaint_area=inpaint_area, padding=padding)
    return SweepRequest(base=base, x_axis=x_axis, x_values=x_values, y_axis=y_axis or None, y_values=y_values or "")


def summary_text(state: SweepProgress) -> str:
    plan = state.plan
    done = state.done_cells
    cell_steps = sum(cell.plan.denoising_steps for cell in done)
    head = (
        f"{len(done)}/{len(plan.cells)} cells · {cell_steps} denoising steps of cells in "
        f"{state.steps_run} batched pipeline steps · {state.seconds:.1f}s"
    )
    if state.stopped:
        head = f"Stopped: {head} · {state.stopped}; the finished cells are kept."
    elif state.finished:
        head = f"Done: {head} in {len(plan.calls)} pipeline call(s)."
    return "\n\n".join([head, *state.notes])


def export_files(settings, state: SweepProgress, grid: Image.Image) -> list[str]:
    """The grid as PNG and every finished cell's parameters as CSV and JSON, in a fresh download folder; and the
    images the cells' scripts read besides the init (an inpainting sweep's mask.png, as the run read it)."""
    folder = download_folder(settings)
    inputs = state.plan.cells[0].script_inputs  # the cells share them
    for name, image in inputs.items():
        image.save(folder / name)
    rows = state.table()
    grid_path = folder / "sweep-grid.png"
    grid.save(grid_path)
    with (folder / "sweep-cells.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["index"])
        writer.writeheader()
        writer.writerows(rows)
    (folder / "sweep-cells.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    tables = [str(folder / "sweep-cells.csv"), str(folder / "sweep-cells.json")]
    return [str(grid_path), *tables, *(str(folder / name) for name in inputs)]


@dataclass(frozen=True)
class SweepTab:
    """The Sweep tab's components, as its events read and fill them."""

    inputs: GenerationInputs
    x_axis: gr.Dropdown
    y_axis: gr.Dropdown
    x_values: gr.Textbox
    y_values: gr.Textbox
    picks: Examples
    plan: gr.Markdown
    run: gr.Button
    stop: gr.Button
    schedulers: gr.Markdown
    grid: gr.Image
    summary: gr.Textbox
    cells: gr.Gallery
    files: gr.File
    code: gr.Code
    recipe_downloads: gr.File
    recipes: gr.State
    mask: gr.Image
    mask_blur: gr.Slider
    inpaint_area: gr.Dropdown
    padding: gr.Slider

    def api_inputs(self) -> list:
        """The sweep handler's inputs, in SWEEP_FIELDS' order."""
        inputs = self.inputs
        return [
            *inputs.api_inputs(),
            self.x_axis,
            self.x_values,
            self.y_axis,
            self.y_values,
            inputs.weighted_prompt,
            inputs.scheduler,
            inputs.loras,
            self.mask,
            self.mask_blur,
            self.inpaint_area,
            self.padding,
        ]


def layout(engine: Engine) -> SweepTab:
    """The Sweep tab's layout: inputs and axes on the left, the grid and cells on the right."""
    default_model = DEFAULT_MODEL
    settings = engine.settings
    axis_choices = list(AXES)

    gr.Markdown(
        "Compare one or two parameters on the same image: every cell is the Basic run with that value. "
        "Cells that differ only in seed, prompt, negative prompt or guidance run together in one batch."
    )
    examples = engine.example_images()
    with gr.Row():
        with gr.Column(scale=2):
            inputs = main_inputs(settings, default_model, model_keys=unmasked_models())
            with gr.Row():
                x_axis = engine_checked(gr.Dropdown(axis_choices, value="guidance_scale", label="X axis"))
                y_axis = engine_checked(gr.Dropdown(["", *axis_choices], value="", label="Y axis (optional)"))
            with gr.Row():
                x_values = gr.Textbox(value=AXIS_EXAMPLES["guidance_scale"], label="X values", lines=2, max_lines=8)
                y_values = gr.Textbox(value="", label="Y values", lines=2, max_lines=8, placeholder="(one row)")
            gr.Markdown(VALUES_INFO, elem_classes=["hint"])
            picks = gr.Examples(
                examples=[
                    [
                        str(examples["chelsea the cat"]),
                        EXAMPLE_PROMPTS["chelsea the cat"],
                        "strength",
                        "0.3, 0.5, 0.7, 0.9",
                    ],
                    [str(examples["astronaut"]), EXAMPLE_PROMPTS["astronaut"], "guidance_scale", "1.5, 4.5, 7.5, 12"],
                    [str(examples["coffee"]), EXAMPLE_PROMPTS["coffee"], "seed", "1-4"],
                ],
                inputs=[inputs.image, inputs.prompt, x_axis, x_values],
                label="Examples (photos from scikit-image, each with a prompt)",
                visible_columns=[0, 2, 3],  # what each sweeps; the prompts are long, and a phone has no room
            )
            plan = gr.Markdown()
            with gr.Row():
                run = run_button("Run sweep")
                stop = stop_button()
            with gr.Accordion("Inpaint: sweep with a mask (optional)", open=False):
                gr.Markdown(
                    "With a mask, every cell inpaints the white part (the Inpaint tab's run; paint one there and "
                    "download its mask.png). Its axes: mask_blur, padding and inpaint_area besides the sampling "
                    "ones; the model list becomes the inpainting models.",
                    elem_classes=["hint"],
                )
                mask = image_input("Mask (white where to inpaint)", height=200)
                inpaint_area, mask_blur, padding = mask_settings()
            with gr.Accordion("Advanced", open=False):
                advanced_inputs(inputs, settings, default_model)
                schedulers = gr.Markdown(f"Schedulers for this model: {', '.join(schedulers_for(default_model))}")
        with gr.Column(scale=3):  # the grid gets the room: a row of four cells is wide
            grid = result_image("Grid", elem_id="sweep-grid")
            summary = summary_box("sweep-summary")
            gr.Markdown(
                "How to read it: each column is one X value, each row one Y value; every other setting is the "
                "same, so what changes along a row is that parameter's effect. Select a cell for its code.",
                elem_classes=["hint"],
            )
            cells = result_gallery("Cells", columns=4, height=300, elem_id="sweep-cells")
            files = downloads()  # grid, cells as CSV and JSON
            code, recipe_downloads = recipe_panel()
    return SweepTab(
        inputs=inputs,
        x_axis=x_axis,
        y_axis=y_axis,
        x_values=x_values,
        y_values=y_values,
        picks=picks,
        plan=plan,
        run=run,
        stop=stop,
        schedulers=schedulers,
        grid=grid,
        summary=summary,
        cells=cells,
        files=files,
        code=code,
        recipe_downloads=recipe_downloads,
        recipes=gr.State([]),
        mask=mask,
        mask_blur=mask_blur,
        inpaint_area=inpaint_area,
        padding=padding,
    )


def handler(engine: Engine) -> Callable:
    """The sweep handler (the /sweep endpoint and MCP tool); its defaults are the default model's values."""
    default_model = DEFAULT_MODEL
    settings = engine.settings
    strength0, guidance0, steps0 = model_defaults(default_model, settings)

    @documented(settings)
    @user_errors
    def sweep(
        image: str | None,
        prompt: str,
        negative_prompt: str = "",
        model: str = default_model,
        strength: float = strength0,
        guidance_scale: float = guidance0,
        num_inference_steps: int = steps0,
        seed: int = RANDOM_SEED,
        x_axis: str = "guidance_scale",
        x_values: str = AXIS_EXAMPLES["guidance_scale"],
        y_axis: str = "",
        y_values: str = "",
        weighted_prompt: bool = False,
        scheduler: str = "",
        loras: str = "",
        mask: str | None = None,
        mask_blur: int = 4,
        inpaint_area: str = WHOLE_PICTURE,
        padding: int = 32,
        cancel: CancelToken | None = None,
        live: bool = False,
        progress: gr.Progress = gr.Progress(),
    ):
        """Parameter sweep (the Sweep tab): the same image run over one or two axes of values, as a labelled grid.

        Use this to compare settings side by side. At most $max_sweep_cells cells and a grid of
        $max_grid_pixels pixels; cells that differ only in seed, prompt, negative prompt or guidance
        run batched. Returns the grid, a summary, each cell with its parameters, and CSV/JSON downloads.

        Args:
            $basic_args
            x_axis: the parameter that changes along the columns: strength, guidance_scale, num_inference_steps,
                seed, prompt, negative_prompt, scheduler, lora_weight (the first LoRA's weight) or model.
            x_values: its values: a list "0.3, 0.5", a range "0.2-1.0 (+0.2)" or a count "0.2-1.0 [5]", whole
                numbers "1-4"; prompts, schedulers (Euler, DDIM, DPM++ 2M Karras, ...) and models one per line
                ((none) for an empty negative prompt).
            y_axis: a second axis (not the same as x_axis), or empty for a single row.
            y_values: values for y_axis, in the same forms.
            weighted_prompt: read the prompts as Compel syntax.
            scheduler: $scheduler_arg A scheduler axis overrides it.
            loras: $loras_arg
            mask: a black and white image, white where to inpaint (any size: stretched to the image's). With a
                mask every cell inpaints (the /inpaint run), the model must have an inpainting pipeline, the axes
                may also be mask_blur, padding and inpaint_area ("Whole picture" / "Only masked", one per line),
                and weighted_prompt, scheduler and loras must be left empty.
            mask_blur: with a mask: pixels of feathered edge (0 to 64).
            inpaint_area: with a mask: "Whole picture" or "Only masked" (the masked part repainted at the working
                size with its padding, then pasted back).
            padding: with a mask and "Only masked": pixels around the masked part (0 to 256).

        An edit model as `model` (flux2-klein-4b, qwen-image-edit-2511, flux-kontext-dev) makes every cell an edit (the
        /edit run, the prompt its instruction): the axes are guidance_scale, num_inference_steps, seed, prompt,
        negative_prompt and model (edit models); strength is not used, and weighted_prompt, scheduler, loras and mask
        must be left empty.
        """
        spec = sweep_request(
            image=image,
            prompt=prompt,
            negative_prompt=negative_prompt,
            model=model,
            strength=strength,
            guidance_scale=guidance_scale,
            num_inference_steps=num_inference_steps,
            seed=seed,
            x_axis=x_axis,
            x_values=x_values,
            y_axis=y_axis,
            y_values=y_values,
            weighted_prompt=weighted_prompt,
            scheduler=scheduler,
            loras=loras,
            mask=mask,
            mask_blur=mask_blur,
            inpaint_area=inpaint_area,
            padding=padding,
        )
        plan = engine.plan(spec)
        total = len(plan.cells)
        cells_done = 0

        def report(done: int, steps_total: int) -> None:
            progress((done, steps_total), desc=f"Sweep: {cells_done}/{total} cells done", unit="steps")

        saved: dict[int, tuple[str, str]] = {}  # each cell's PNG is written once
        init = plan.cells[0].plan.image.image
        state = start_sweep(plan)
        running: dict[int, Image.Image] = {}  # the running cells' latest live previews
        for made in watched(
            lambda live_preview: engine.sweep(plan, progress=report, cancel=cancel, live_preview=live_preview),
            live=live,
            cancel=cancel,
        ):
            if isinstance(made, LivePreview):  # the page watches: the grid shows the running cells denoising
                running.update(zip(made.places, made.images, strict=False))
                yield state.grid(live=running), gr.skip(), gr.skip(), gr.skip(), gr.skip()
                continue
            state = made
            cells_done = len(state.done_cells)
            ids = [
                engine.results.put(state.recipes[cell.index], init, cell.script_inputs) for cell in state.done_cells
            ]
            for cell, key in zip(state.done_cells, ids, strict=True):
                if cell.index not in saved:
                    item = (state.images[cell.index], state.recipes[cell.index], cell.caption)
                    saved[cell.index] = png_outputs(settings, [item], [key])[0]
            gallery = [saved[cell.index] for cell in state.done_cells]
            last = state.finished
            grid = state.grid()
            yield grid, summary_text(state), gallery, export_files(settings, state, grid) if last else None, ids

    return sweep


def axis_example(axis: str, model: str = "") -> str:
    """Example values for an axis just chosen (for the model axis, models of the kind the chosen model is: the edit
    models when it is one)."""
    spec = known_spec(model)
    if axis == "model" and spec is not None and EDIT in spec.kinds:
        return "\n".join(models_for(EDIT))
    return AXIS_EXAMPLES.get(axis, "")


def unmasked_models() -> list[str]:
    """The models a sweep without a mask offers: the img2img ones, then the edit models (every cell an edit)."""
    return [*models_for("img2img"), *models_for(EDIT)]


def mask_models(mask: str | None, key: str) -> gr.Dropdown:
    """The model list for a sweep with a mask (the inpainting models) or without (the img2img and edit ones); the
    model stays where the new list has it."""
    keys = models_for("inpaint") if mask else unmasked_models()
    return gr.Dropdown(choices=[(model_label(k), k) for k in keys], value=key if key in keys else keys[0])


def schedulers_line(key: str) -> str:
    """The schedulers a model offers, under the Advanced accordion."""
    return f"Schedulers for this model: {', '.join(schedulers_for(key))}" if key in models_for("img2img") else ""


def build(engine: Engine, tools: list) -> Finished:
    """Lay out the Sweep tab and wire its events; adds its handler to `tools`."""
    tab = layout(engine)
    run_inputs = tab.api_inputs()
    wire_preview(run_inputs, lambda *values: plan_text(engine, *values), tab.plan)
    model = tab.inputs.model
    for axis, values in ((tab.x_axis, tab.x_values), (tab.y_axis, tab.y_values)):  # an example of the new axis
        axis.change(axis_example, inputs=[axis, model], outputs=values, queue=False, api_visibility="private")
    model.change(schedulers_line, inputs=model, outputs=tab.schedulers, queue=False, api_visibility="private")
    tab.mask.change(mask_models, inputs=[tab.mask, model], outputs=model, queue=False, api_visibility="private")
    wire_recipe_selection(engine, tab.cells, tab.recipes, tab.code, tab.recipe_downloads)
    outputs = [tab.grid, tab.summary, tab.cells, tab.files, tab.recipes]
    done = wire_generation(
        tab.run, tab.stop, handler(engine), inputs=run_inputs, outputs=outputs, tools=tools, live_output=tab.grid
    )
    return Finished(done, tab.cells)
