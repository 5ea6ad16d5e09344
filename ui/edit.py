"""Edit tab: say what to change ("make it a snowy night") and the edit model remakes the image, with reference images
where the model reads them. **Use as input** puts a result back as the image to edit, so edits follow one another;
the last one's recipe and script replay the whole sequence from the first image.

The handler (the /edit endpoint and MCP tool) takes the image, up to three references as files, and `previous`: the
id of the result the image is (a result PNG's name), which continues that result's sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from engine.base.errors import shown_value
from engine.core import Engine
from engine.models.catalog import get_spec, known_spec, models_for
from engine.pipelines.calls import CancelToken, GenerationCancelled
from engine.recipes.results import is_result_id
from engine.workflows.checks import FOLLOW_INPUT, RANDOM_SEED, RESIZE_MODES, model_defaults
from engine.workflows.edit import DEFAULT_EDIT_MODEL, KIND, EditRequest, PreviousEdit
from ui.basic import result_text, size_inputs
from ui.components import (
    engine_checked,
    guidance_slider,
    image_input,
    model_label,
    model_picker,
    recipe_panel,
    result_gallery,
    result_image,
    run_button,
    seed_row,
    stop_button,
    summary_box,
)
from ui.events import (
    Finished,
    documented,
    gradio_progress,
    user_errors,
    wire_comparison,
    wire_generation,
    wire_recipe_selection,
)
from ui.outputs import seed_results

DEFAULT_INSTRUCTION = "make it a snowy night"
REFERENCE_SLOTS = 3  # images 2 to 4: the most an edit family reads besides the image (Qwen-Image-Edit: 3 in all)
EXAMPLES = {  # scikit-image's photos, each with an instruction
    "chelsea the cat": "make it a snowy night",
    "coffee": "make the cup blue",
    "astronaut": "turn it into a watercolour painting",
}


def model_info() -> str:
    """The dropdown's info: each edit model, how many images it reads and its licence."""
    lines = []
    for key in models_for(KIND):
        spec = get_spec(key)
        most = spec.adapter.max_references
        images = "the image only" if most == 1 else f"the image and up to {most - 1} references"
        lines.append(f"{model_label(key)}: {images}; licence {spec.license}")
    return ". ".join(lines) + "."


def model_settings(key: str, settings) -> tuple:
    """What picking a model sets: its guidance and steps, the negative prompt where it reads one, as many reference
    slots as it reads (an unknown, typed key: left as they are; the run names the problem)."""
    spec = known_spec(key)
    if spec is None or KIND not in spec.kinds:
        return (gr.skip(),) * (3 + REFERENCE_SLOTS)
    _, guidance, steps = model_defaults(key, settings)
    slots = spec.adapter.max_references - 1
    return (
        guidance,
        steps,
        gr.Textbox(visible=spec.adapter.negative_prompt),
        *(gr.Image(visible=index < slots) for index in range(REFERENCE_SLOTS)),
    )


@dataclass(frozen=True)
class EditTab:
    """The Edit tab's components, as its events read and fill them."""

    image: gr.Image
    prompt: gr.Textbox
    model: gr.Dropdown
    references: list  # images 2 to 4
    negative_prompt: gr.Textbox
    guidance_scale: gr.Slider
    num_inference_steps: gr.Slider
    seed: gr.Number
    num_images: gr.Slider
    size: dict  # output_size, width, height, scale_by, resize_mode
    previous: gr.Textbox  # the result the image is (Use as input), hidden
    sequence: gr.Markdown
    start_over: gr.Button
    run: gr.Button
    stop: gr.Button
    gallery: gr.Gallery
    use_as_input: gr.Button
    slider: gr.Image
    grid: gr.Image
    summary: gr.Textbox
    code: gr.Code
    files: gr.File
    recipes: gr.State
    picked: gr.State
    last_seed: gr.State

    def api_inputs(self) -> list:
        """The edit handler's inputs, in its signature's (and the API's) order."""
        return [
            self.image,
            self.prompt,
            self.model,
            *self.references,
            self.negative_prompt,
            self.guidance_scale,
            self.num_inference_steps,
            self.seed,
            self.num_images,
            *self.size.values(),
            self.previous,
        ]


def layout(engine: Engine) -> EditTab:
    """The Edit tab's layout: the image, the instruction and the settings on the left, results on the right."""
    settings = engine.settings
    spec = get_spec(DEFAULT_EDIT_MODEL)
    _, guidance0, steps0 = model_defaults(DEFAULT_EDIT_MODEL, settings)
    gr.Markdown(
        "Say what to change and **Edit**: an edit model remakes the image as told, keeping the rest. **Use as "
        "input** edits a result again; the last result's script replays every edit from the first image."
    )
    with gr.Row():
        with gr.Column(scale=1):
            image = image_input("Image to edit", height=360, elem_id="edit-image")
            prompt = gr.Textbox(
                value=DEFAULT_INSTRUCTION,
                label="Instruction (prompt)",
                lines=2,
                max_length=settings.max_prompt_chars,
                info='What to change, as you would tell a person: "make it night", "put the cat of image 2 on it"',
            )
            photos = engine.example_images()
            gr.Examples(
                examples=[[str(photos[label]), text] for label, text in EXAMPLES.items()],
                inputs=[image, prompt],
                label="Examples (photos from scikit-image)",
            )
            sequence = gr.Markdown("", elem_id="edit-sequence")
            with gr.Row():
                run = run_button("Edit")
                stop = stop_button()
                start_over = gr.Button("Start over", visible=False, size="sm")
            model = model_picker(KIND, DEFAULT_EDIT_MODEL, info=model_info())
            slots = spec.adapter.max_references - 1
            with gr.Row():
                references = [
                    image_input(f"Image {number}", height=160, visible=number - 2 < slots)
                    for number in range(2, 2 + REFERENCE_SLOTS)
                ]
            negative_prompt = gr.Textbox(
                value="",
                label="Negative prompt",
                max_length=settings.max_prompt_chars,
                visible=spec.adapter.negative_prompt,
            )
            with gr.Accordion("Advanced", open=False):
                guidance = guidance_slider(guidance0)
                steps = engine_checked(gr.Slider(1, settings.max_steps, value=steps0, step=1, label="Steps"))
                seed, _, reuse_seed = seed_row()
                num_images = engine_checked(
                    gr.Slider(1, settings.max_images, value=1, step=1, label="Number of images")
                )
                size = size_inputs(settings, "edit")
            previous = gr.Textbox(
                value="",
                visible=False,
                label="previous: the id of the edit result given as the image (its PNG's name), to continue it",
            )
        with gr.Column(scale=1):
            gallery = result_gallery("Results", columns=2, height=420, preview=True, elem_id="edit-gallery")
            use_as_input = gr.Button("Use as input", visible=False, elem_id="edit-use-as-input")
            slider = result_image("Before | after: drag to compare", elem_id="edit-slider", slider=True)
            grid = result_image("Grid")  # image | references | results
            summary = summary_box("edit-summary")
            code, files = recipe_panel()
    last_seed = gr.State(RANDOM_SEED)
    reuse_seed.click(lambda value: value, inputs=last_seed, outputs=seed, queue=False, api_visibility="private")
    return EditTab(
        image=image,
        prompt=prompt,
        model=model,
        references=references,
        negative_prompt=negative_prompt,
        guidance_scale=guidance,
        num_inference_steps=steps,
        seed=seed,
        num_images=num_images,
        size=size,
        previous=previous,
        sequence=sequence,
        start_over=start_over,
        run=run,
        stop=stop,
        gallery=gallery,
        use_as_input=use_as_input,
        slider=slider,
        grid=grid,
        summary=summary,
        code=code,
        files=files,
        recipes=gr.State([]),
        picked=gr.State(0),
        last_seed=last_seed,
    )


def previous_edit(engine: Engine, previous: object) -> PreviousEdit | None:
    """The result `previous` names (its id, as its PNG is named), as an edit continuing it reads it; None for none.

    Raises:
        ValueError: not an id, or a result the server no longer keeps (named, with what to do).
    """
    if previous in ("", None):
        return None
    stored = engine.results.get(previous) if is_result_id(previous) else None
    if stored is None or stored.init is None:
        raise ValueError(
            f"previous must be the id of a result this server still keeps (a result PNG's name, 32 hex digits); got "
            f"{shown_value(previous)}: leave it empty to start a new sequence from the image"
        )
    return PreviousEdit(stored.recipe, stored.init, stored.inputs)


def handler(engine: Engine) -> Callable:
    """The edit handler (the /edit endpoint and MCP tool)."""
    settings = engine.settings
    _, guidance0, steps0 = model_defaults(DEFAULT_EDIT_MODEL, settings)

    @documented(settings)
    @user_errors
    def edit(
        image: str | None,
        prompt: str = DEFAULT_INSTRUCTION,
        model: str = DEFAULT_EDIT_MODEL,
        reference_2: str | None = None,
        reference_3: str | None = None,
        reference_4: str | None = None,
        negative_prompt: str = "",
        guidance_scale: float = guidance0,
        num_inference_steps: int = steps0,
        seed: int = RANDOM_SEED,
        num_images: int = 1,
        output_size: str = FOLLOW_INPUT,
        width: int = 512,
        height: int = 512,
        scale_by: float = 1.0,
        resize_mode: str = RESIZE_MODES[0],
        previous: str = "",
        cancel: CancelToken | None = None,
        progress: gr.Progress = gr.Progress(),
    ):
        """Edit (the Edit tab): change an image by an instruction, with reference images where the model reads them.

        Use this to change what an image shows or how it looks, told in words ("make it night", "put the cat of
        image 2 on the sofa"). Returns the result images (PNGs carrying their recipe, each named by its id), an
        [image | references | results] grid, a summary, the diffusers script that reproduces the first image, and
        downloads (the script, the first image and the references it reads).

        Args:
            image: the image to edit.
            prompt: the instruction: what to change (at most $max_prompt_chars characters).
            model: an edit model: flux2-klein-4b (the image and up to 3 references), flux-kontext-dev (the image only).
            reference_2: a second image the instruction may name, for models that read references.
            reference_3: a third image.
            reference_4: a fourth image.
            negative_prompt: what to steer away from, for models with classifier-free guidance; empty otherwise.
            guidance_scale: in [0, $max_guidance] (the default is the default model's; each model has its own).
            num_inference_steps: 1 to $max_steps (the default is the default model's: give it for another model).
            seed: -1 for random, else in [0, 2^32).
            num_images: 1 to $max_images images, from consecutive seeds.
            output_size: Follow input (the image's size, rounded to the model's multiple), Resize to (width x
                height) or Resize by (scale_by).
            width: Resize to: the output's width.
            height: Resize to: the output's height.
            scale_by: Resize by: 0.05 to 4.
            resize_mode: Just resize, Crop and resize, or Resize and fill.
            previous: the id of the edit result `image` is (its PNG's name without .png): the edit continues that
                result's sequence, and its script replays every edit from the first image. Empty: a new sequence.
        """
        references = tuple(path for path in (reference_2, reference_3, reference_4) if path not in (None, ""))
        request = EditRequest(
            image=image,
            prompt=prompt,
            model=model,
            references=references,
            negative_prompt=negative_prompt,
            guidance_scale=guidance_scale,
            num_inference_steps=num_inference_steps,
            seed=seed,
            num_images=num_images,
            output_size=output_size,
            width=width,
            height=height,
            scale_by=scale_by,
            resize_mode=resize_mode,
            previous=previous_edit(engine, previous),
        )
        try:
            (result,) = engine.run(request, progress=gradio_progress(progress, "Edit"), cancel=cancel)
        except GenerationCancelled as stopped:
            message = f"Stopped after {stopped.steps_done} denoising step(s); nothing was kept."
            return [], None, message, "", None, gr.skip(), []
        gallery, ids, script, downloads = seed_results(engine, result, result.plan.script_inputs)
        text = result_text(result)
        if result.plan.earlier:
            text += f"\n\nEdit {len(result.plan.earlier) + 1} of a sequence: the script replays every edit before it."
        return gallery, result.grid, text, script, downloads, result.plan.seeds[0], ids

    return edit


def sequence_text(edits: int) -> str:
    return f"Editing the result of edit {edits}: the next result's script replays all {edits + 1} edits."


def build(engine: Engine, tools: list) -> Finished:
    """Lay out the Edit tab and wire its events; adds its handler to `tools`."""
    tab = layout(engine)
    outputs = [tab.gallery, tab.grid, tab.summary, tab.code, tab.files, tab.last_seed, tab.recipes]
    sequence_outputs = [tab.previous, tab.sequence, tab.start_over]

    def start_over():
        return "", "", gr.Button(visible=False)

    def follows_on(path: str | None, previous: str):
        """The page's click, before its run: an image that is not the result Use as input put there (an upload, an
        example: a file not named by the result's id) starts a new sequence."""
        if not previous or (path and Path(path).stem == previous):
            return gr.skip(), gr.skip(), gr.skip()
        return start_over()

    done = wire_generation(
        tab.run,
        tab.stop,
        handler(engine),
        inputs=tab.api_inputs(),
        outputs=outputs,
        tools=tools,
        prepare=(follows_on, [tab.image, tab.previous], sequence_outputs),
    )
    wire_comparison(engine, done, tab.recipes, tab.gallery, tab.slider)
    wire_recipe_selection(engine, tab.gallery, tab.recipes, tab.code, tab.files)
    done.success(
        lambda kept: (gr.Button(visible=bool(kept)), 0),
        inputs=tab.recipes,
        outputs=[tab.use_as_input, tab.picked],
        queue=False,
        api_visibility="private",
        show_progress="hidden",
    )

    def pick(event: gr.SelectData):
        return event.index or 0

    tab.gallery.select(pick, outputs=tab.picked, queue=False, api_visibility="private")

    def use_as_input(kept: list, shown: list | None, index: int):
        """The picked result as the image to edit, and its id as the edit it continues."""
        if not kept or not shown or index >= len(kept) or not kept[index]:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        stored = engine.results.get(kept[index])
        item = shown[index]
        path = item[0] if isinstance(item, list | tuple) else item
        edits = 1 + len((stored.recipe.extra.get("edits") or []) if stored is not None else [])
        return path, kept[index], sequence_text(edits), gr.Button(visible=True)

    tab.use_as_input.click(
        use_as_input,
        inputs=[tab.recipes, tab.gallery, tab.picked],
        outputs=[tab.image, *sequence_outputs],
        queue=False,
        api_visibility="private",
    )

    def back_to_first(previous: str):
        """Start over: the sequence's first image back as the image to edit (while the server keeps it)."""
        stored = engine.results.get(previous) if previous else None
        first = stored.init if stored is not None and stored.init is not None else gr.skip()
        return (first, *start_over())

    tab.start_over.click(
        back_to_first,
        inputs=tab.previous,
        outputs=[tab.image, *sequence_outputs],
        queue=False,
        api_visibility="private",
    )
    for event in (tab.image.upload, tab.image.clear):  # a new image starts a new sequence
        event(start_over, outputs=sequence_outputs, queue=False, api_visibility="private")
    tab.model.input(
        lambda key: model_settings(key, engine.settings),
        inputs=tab.model,
        outputs=[tab.guidance_scale, tab.num_inference_steps, tab.negative_prompt, *tab.references],
        queue=False,
        api_visibility="private",
    )
    return Finished(done, tab.gallery)
