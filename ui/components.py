"""Components every tab builds from: inputs, pickers, result areas, and the engine's checks on them."""

from __future__ import annotations

import functools
import inspect
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import gradio as gr
from gradio import processing_utils
from PIL import Image, ImageDraw

from engine.base.errors import shown_value
from engine.base.images import HeaderOnly
from engine.base.settings import Settings
from engine.models.catalog import get_spec, known_spec, models_for
from engine.models.loras import offered
from engine.pipelines.schedulers import schedulers_for
from engine.workflows.checks import MAX_GUIDANCE, RANDOM_SEED, SEED_LIMIT, model_defaults
from engine.workflows.inpaint import INPAINT_AREAS, MAX_MASK_BLUR, MAX_PADDING, WHOLE_PICTURE

STRENGTH_INFO = (
    "How far to move away from the init image: the share of the noise schedule that is run. "
    "Low keeps the layout and colours; 1.0 ignores the image almost entirely."
)


GUIDANCE_INFO = (
    "How strongly each step is pushed towards the prompt (classifier-free guidance). "
    "Higher follows the prompt more literally, at the cost of variety and, past ~12, of quality."
)


NEGATIVE_INFO = "What to steer away from: guidance pushes from this text instead of from an empty prompt."


STEPS_INFO = "Steps of the full schedule; img2img runs only int(steps x strength) of them."


ENGINE_CHECKED = "studio-engine-checked"


UNOPENED_UPLOAD = "studio-unopened-upload"


def _classes(component: gr.components.Component) -> list[str]:
    classes = component.elem_classes or []
    return [classes] if isinstance(classes, str) else list(classes)


def _marked(component: gr.components.Component, marker: str) -> bool:
    return marker in _classes(component)


_hooks_installed = False


def install_preprocess_hooks() -> None:
    """Route the preprocessing of marked components past Gradio's own (idempotent; called when building).

    The marker is a CSS class, not an attribute of the instance: Gradio rebuilds a component from its
    constructor arguments whenever an event (an Example, say) updates its properties, and a patch on
    the old instance would be lost, while the class travels with the arguments. (Not a subclass: Gradio
    writes a .pyi file beside the source of every Component subclass.)
    """
    global _hooks_installed
    if _hooks_installed:
        return
    for kind in (gr.Image, gr.Slider, gr.Number, gr.Dropdown):
        original = kind.preprocess

        def preprocess(self, payload, _original=original):
            if _marked(self, UNOPENED_UPLOAD):
                return str(payload.path) if payload is not None and payload.path else None
            if _marked(self, ENGINE_CHECKED):
                return payload
            return _original(self, payload)

        kind.preprocess = preprocess  # type: ignore[method-assign]  # the one patch of Gradio, for marked inputs
    _hooks_installed = True


def _is_file_reference(value: object) -> bool:
    """What Gradio's file inputs take: null, or {"path": ...} / {"url": ...} (FileData, handle_file's output)."""
    if value is None:
        return True
    return isinstance(value, dict) and any(isinstance(value.get(key), str) for key in ("path", "url"))


@functools.cache
def _parameter_names(fn: Callable) -> list[str]:
    """A handler's parameter names, in the order of its event's inputs (read once per handler)."""
    return list(inspect.signature(fn).parameters)


def check_file_inputs(app: gr.Blocks) -> None:
    """Refuse an upload input sent as anything but a file reference with a message naming the parameter.

    Gradio validates those with a pydantic model before any component code runs, and answers a raw API call
    that sends `123` or plain text with an untitled "1 validation error for ImageData ... pydantic.dev". This
    wraps this app's own `process_api` (no other app's), checking an event's first call, not its later steps.
    """
    original = app.process_api

    @functools.wraps(original)
    async def process_api(block_fn, inputs, state=None, request=None, iterator=None, **kwargs):
        if iterator is None:
            fn = app.fns[block_fn] if isinstance(block_fn, int) else block_fn
            names = _parameter_names(fn.fn) if fn.fn is not None else []
            for index, block in enumerate(fn.inputs):
                if _marked(block, UNOPENED_UPLOAD) and index < len(inputs) and not _is_file_reference(inputs[index]):
                    name = names[index] if index < len(names) else block.label
                    raise gr.Error(
                        f'{name} must be an uploaded file (handle_file(...), or {{"path": ...}} from '
                        f"/gradio_api/upload) or null; got {shown_value(inputs[index])}",
                        title="Invalid input",
                    )
        return await original(block_fn, inputs, state, request, iterator, **kwargs)

    app.process_api = process_api  # type: ignore[method-assign,assignment]  # this app's instance only


Checked = TypeVar("Checked", gr.Slider, gr.Number, gr.Dropdown)


def engine_checked(component: Checked) -> Checked:
    """Let an input hand its value to the engine unchecked; its bounds or choices still guide the browser.

    Gradio's own check answers "Value 1.5 is greater than maximum value 1.0" without naming the
    parameter (and a dropdown echoes whatever was sent, at any length); the engine's answers
    "strength must be in (0, 1], got 1.5".
    """
    install_preprocess_hooks()
    component.elem_classes = [*_classes(component), ENGINE_CHECKED]
    component.constructor_args["elem_classes"] = component.elem_classes  # kept when Gradio rebuilds it
    return component


def image_input(
    label: str = "Init image",
    *,
    height: int = 320,
    visible: bool = True,
    render: bool = True,
    elem_id: str | None = None,
) -> gr.Image:
    """An image upload whose file reaches the engine unopened.

    Gradio's own preprocessing opens every upload with PIL and, for a non-RGB file, decodes and
    re-encodes it, before any handler runs: a 12 KB PNG of 10000x10000 pixels would be decoded in
    full, and a file that is no image gets Gradio's raw error. Here the uploaded file's path goes
    straight to the engine, whose checks refuse it unread, with a message naming the parameter.
    (Gradio still refuses paths that were not uploaded and fetches of private addresses.)
    """
    install_preprocess_hooks()
    return gr.Image(
        label=label,
        type="filepath",
        sources=["upload", "clipboard"],
        format="png",
        image_mode=None,  # keep 16-bit, grey and RGBA files as uploaded
        height=height,
        elem_classes=[UNOPENED_UPLOAD],
        visible=visible,
        render=render,
        elem_id=elem_id,
    )


SUMMARY_CLASS = "studio-summary"  # marks a run's summary box: where a failed run's reason stays


def summary_box(elem_id: str, label: str = "Summary") -> gr.Textbox:
    """A run's facts as plain text: shown as typed on the page, and the same plain text for API clients."""
    return gr.Textbox(
        label=label, interactive=False, lines=2, max_lines=40, elem_id=elem_id, elem_classes=[SUMMARY_CLASS]
    )


def is_summary(component: object) -> bool:
    return isinstance(component, gr.components.Component) and _marked(component, SUMMARY_CLASS)


def header_only(image: str | None) -> HeaderOnly | None:
    """An upload for a plan preview: sized from its header, never decoded (previews run outside the queue)."""
    return HeaderOnly(image) if image else None


OUTPUT_CLASS = "studio-output"  # marks result areas (the browser tests check none offers an upload)


RUN_CLASS = "studio-run"  # the button Ctrl+Enter presses on its tab


def run_button(label: str) -> gr.Button:
    """A tab's main button (the one Ctrl+Enter presses)."""
    return gr.Button(label, variant="primary", scale=3, elem_classes=[RUN_CLASS])


def stop_button() -> gr.Button:
    """A tab's Stop: hidden until its run starts, hidden again when it ends (`ui/events.py: wire_generation`)."""
    return gr.Button("Stop", variant="stop", scale=1, visible=False)


def result_image(
    label: str,
    *,
    elem_id: str | None = None,
    slider: bool = False,
    type: Literal["numpy", "pil", "filepath"] = "pil",
    visible: bool = True,
):
    """A result image (or an init | result slider): PNG, with the download button, not editable."""
    kind = gr.ImageSlider if slider else gr.Image
    return written_whole(
        kind(
            label=label,
            type=type,
            format="png",
            interactive=False,
            elem_id=elem_id,
            elem_classes=[OUTPUT_CLASS],
            visible=visible,
        )
    )


Shown = TypeVar("Shown", bound=gr.Image | gr.ImageSlider | gr.Gallery)


def written_whole(component: Shown) -> Shown:
    """`component` hands Gradio the images a handler returns as files written whole.

    Gradio writes a returned image into its cache under a name made from the image's bytes, and writes it
    in place: two runs that return the same image at once (two visitors on one example, the same seed)
    rewrite the file while the first one's download is under way, and that download ends short ("peer
    closed connection without sending complete message body"). Here each image is written under a
    temporary name and renamed into place, under the name Gradio would have used, which Gradio then
    finds and serves as it is (it copies files that way itself).
    """
    postprocess = component.postprocess

    def with_files(value):
        return postprocess(image_files(value, component.GRADIO_CACHE, component.format or "png"))

    component.postprocess = with_files  # type: ignore[method-assign]  # this one component's, on purpose
    return component


def image_files(value, cache_dir: str, format: str):
    """`value` with each PIL image in it (alone, in a slider's pair, in a gallery's items) as a cached file."""
    if isinstance(value, Image.Image):
        data = processing_utils.encode_pil_to_bytes(value, format)
        folder = Path(cache_dir) / processing_utils.hash_bytes(data)  # Gradio's own name for these bytes
        path = folder / f"image.{format}"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            fd, staging = tempfile.mkstemp(dir=folder, prefix=".image.")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                os.replace(staging, path)
            except BaseException:
                Path(staging).unlink(missing_ok=True)
                raise
        return str(path)
    if isinstance(value, tuple | list):
        return type(value)(image_files(item, cache_dir, format) for item in value)
    return value


def result_gallery(label: str, *, columns: int, height: int, elem_id: str | None = None, **options) -> gr.Gallery:
    """Result images as a gallery: PNGs (with their recipes), an output, with no upload area or delete buttons."""
    return written_whole(
        gr.Gallery(
            label=label,
            format="png",
            columns=columns,
            height=height,
            interactive=False,
            elem_id=elem_id,
            elem_classes=[OUTPUT_CLASS],
            **options,
        )
    )


def downloads(label: str = "Downloads") -> gr.File:
    """Files to download: a list with download links, no upload area or remove buttons."""
    return gr.File(label=label, file_count="multiple", interactive=False, elem_classes=[OUTPUT_CLASS])


def model_picker(
    kind: str,
    value: str,
    label: str = "Model",
    *,
    keys: list[str] | None = None,
    extra: Sequence[tuple] = (),
    info: str = "The checkpoint that repaints the image; each has its own style and defaults.",
    **options,
) -> gr.Dropdown:
    """A dropdown of the catalog models that serve a pipeline kind (or of `keys`); values are catalog keys."""
    choices = [*extra, *[(model_label(key), key) for key in (keys or models_for(kind))]]
    # allow_custom_value: the engine's check answers an unknown key, naming the parameter and listing the keys
    return gr.Dropdown(choices=choices, value=value, label=label, info=info, allow_custom_value=True, **options)


def model_label(key: str) -> str:
    """A model as a picker shows it: its label and, unless the label already names it, its key (what the API takes)."""
    label = get_spec(key).label
    return label if key in label else f"{label} ({key})"


def seed_row(settings_max: int = SEED_LIMIT - 1) -> tuple[gr.Number, gr.Button, gr.Button]:
    """Seed box (-1 = random) with a dice button (random) and a recycle button (last seed used)."""
    with gr.Row(equal_height=True):
        seed = gr.Number(
            value=RANDOM_SEED,
            label="Seed",
            info="-1 picks a random seed; the seed used is shown with the result.",
            precision=0,
            minimum=RANDOM_SEED,
            maximum=settings_max,
            scale=4,
        )
        engine_checked(seed)
        dice = gr.Button("🎲 Random", scale=1, min_width=80)
        reuse = gr.Button("♻️ Last seed", scale=1, min_width=80)
    dice.click(lambda: RANDOM_SEED, outputs=seed, queue=False, api_visibility="private")
    return seed, dice, reuse


WEIGHTING_INFO = "Compel syntax: (word)1.3 or word++ to stress, (word)0.7 or word-- to soften."


SCHEDULER_INFO = "Named as the web UI names its samplers; the model's own unless you pick one."


# The fields every generating tab's handler starts with, in the API's order.
BASIC_FIELDS = (
    "image",
    "prompt",
    "negative_prompt",
    "model",
    "strength",
    "guidance_scale",
    "num_inference_steps",
    "seed",
)


# Basic's output size controls, in the API's order (after loras).
OUTPUT_FIELDS = ("output_size", "width", "height", "scale_by", "resize_mode")


@dataclass
class GenerationInputs:
    """The Basic parameters every generating tab starts from, in the order the API names them."""

    image: gr.Image
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    model: gr.Dropdown
    strength: gr.Slider
    guidance_scale: gr.Slider | None = None
    num_inference_steps: gr.Slider | None = None
    seed: gr.Number | None = None
    reuse_seed: gr.Button | None = None
    weighted_prompt: gr.Checkbox | None = None
    scheduler: gr.Dropdown | None = None
    loras: gr.Textbox | None = None
    summary: gr.Textbox | None = None  # the tab's result summary (Send to Basic says there what it filled)
    output: dict | None = None  # Basic's output size controls by OUTPUT_FIELDS name (ui/basic.py: size_inputs)

    def api_inputs(self) -> list:
        """The components of BASIC_FIELDS, in that order."""
        return [getattr(self, name) for name in BASIC_FIELDS]


def built(*components: gr.components.Component | None) -> list[gr.components.Component]:
    """The components, each of which the tab built (advanced_inputs builds GenerationInputs' optional ones).

    Raises:
        ValueError: one was not built, naming its position.
    """
    missing = [index for index, component in enumerate(components) if component is None]
    if missing:
        raise ValueError(f"components at {missing} were not built: call advanced_inputs first")
    return [component for component in components if component is not None]


def prompt_inputs(settings, *, image_label: str = "Init image") -> tuple[gr.Image, gr.Textbox]:
    """The init image and the prompt: the top of a generating tab (its run button may follow them)."""
    return image_input(image_label), gr.Textbox(label="Prompt", lines=2, max_length=settings.max_prompt_chars)


def main_inputs(
    settings,
    default_model: str,
    *,
    image_label: str = "Init image",
    top: tuple[gr.Image, gr.Textbox] | None = None,
    model_keys: list[str] | None = None,
) -> GenerationInputs:
    """Image, prompt, negative prompt, model and strength: the top of a generating tab (`top`: the image and
    prompt, built already by `prompt_inputs`; `model_keys`: the models offered, else the img2img ones)."""
    strength0, _, _ = model_defaults(default_model, settings)
    image, prompt = top or prompt_inputs(settings, image_label=image_label)
    negative_prompt = gr.Textbox(
        value="", label="Negative prompt", lines=1, info=NEGATIVE_INFO, max_length=settings.max_prompt_chars
    )
    model = model_picker("img2img", default_model, keys=model_keys)
    # minimum 0, not 0.01: a typed 0 reaches the engine, whose error says why (the slider would clamp it silently)
    strength = engine_checked(gr.Slider(0.0, 1.0, value=strength0, step=0.01, label="Strength", info=STRENGTH_INFO))
    return GenerationInputs(image, prompt, negative_prompt, model, strength)


def mask_settings() -> tuple[gr.Dropdown, gr.Slider, gr.Slider]:
    """How a mask is used (the web UI's names and defaults): the inpaint area, the mask blur and the padding."""
    inpaint_area = engine_checked(
        gr.Dropdown(
            list(INPAINT_AREAS),
            value=WHOLE_PICTURE,
            label="Inpaint area",
            info="Whole picture: the image at the working size. Only masked: the painted part and its "
            "padding, cropped and repainted at the working size (more detail), then pasted back.",
        )
    )
    mask_blur = engine_checked(
        gr.Slider(0, MAX_MASK_BLUR, value=4, step=1, label="Mask blur", info="Pixels of feathered edge")
    )
    padding = engine_checked(gr.Slider(0, MAX_PADDING, value=32, step=4, label="Only masked padding, pixels"))
    return inpaint_area, mask_blur, padding


def guidance_slider(value: float, *, label: str = "Guidance scale", info: str | None = GUIDANCE_INFO) -> gr.Slider:
    """A guidance_scale slider over the engine's whole range (0 to MAX_GUIDANCE)."""
    return engine_checked(gr.Slider(0.0, MAX_GUIDANCE, value=value, step=0.5, label=label, info=info))


def sampling_inputs(inputs: GenerationInputs, settings, default_model: str) -> GenerationInputs:
    """Guidance and steps: beside strength where a tab names them as key controls, else in its Advanced accordion
    (`advanced_inputs` builds them there when this was not called)."""
    _, guidance0, steps0 = model_defaults(default_model, settings)
    inputs.guidance_scale = guidance_slider(guidance0)
    inputs.num_inference_steps = engine_checked(
        gr.Slider(1, settings.max_steps, value=steps0, step=1, label="Steps", info=STEPS_INFO)
    )
    return inputs


def advanced_inputs(inputs: GenerationInputs, settings, default_model: str) -> GenerationInputs:
    """Seed row, Compel weighting, scheduler and LoRAs, and guidance and steps unless `sampling_inputs` built them
    (call inside the tab's Advanced accordion)."""
    if inputs.guidance_scale is None or inputs.num_inference_steps is None:
        sampling_inputs(inputs, settings, default_model)
    inputs.seed, _, inputs.reuse_seed = seed_row()
    inputs.weighted_prompt = gr.Checkbox(label="Weighted prompt (Compel)", value=False, info=WEIGHTING_INFO)
    inputs.scheduler = engine_checked(
        gr.Dropdown(scheduler_choices(default_model), value="", label="Scheduler (sampler)", info=SCHEDULER_INFO)
    )
    inputs.loras = lora_input(settings)
    # .input, not .change: a person picking a model gets its defaults; Send to Basic keeps the values it sets
    inputs.model.input(
        functools.partial(on_model_change, settings=settings),
        inputs=inputs.model,
        outputs=built(
            inputs.strength,
            inputs.guidance_scale,
            inputs.num_inference_steps,
            inputs.weighted_prompt,
            inputs.scheduler,
        ),
        queue=False,
        api_visibility="private",
    )
    return inputs


def lora_input(settings) -> gr.Textbox:
    """The run's LoRAs as `name:weight, ...`; shown where the owner offers LoRAs (STUDIO_LORA_DIR, allowed repos)."""
    names = offered()
    hub = " Allowed Hub repos by id." if settings.allow_hub_models else ""
    return gr.Textbox(
        value="",
        label="LoRAs",
        placeholder=f"{names[0]}:0.8" if names else "name:0.8",
        info=f"name:weight, comma-separated (weights -4 to 4). Offered: {', '.join(names) or 'none'}.{hub}",
        visible=bool(names or settings.allow_hub_models),
        max_lines=2,
    )


def scheduler_choices(model: str) -> list[tuple[str, str]]:
    """The schedulers that fit a model, by their web UI names; "" is the checkpoint's own."""
    return [(f"the model's own ({get_spec(model).scheduler})", ""), *[(n, n) for n in schedulers_for(model)]]


def model_sampling(key: str, settings: Settings) -> tuple:
    """A model's strength, guidance and steps, for the sliders when a person picks it (a typed, unknown key: the
    values left as they are; the run will name the problem)."""
    try:
        return model_defaults(key, settings)
    except ValueError:
        return gr.skip(), gr.skip(), gr.skip()


def on_model_change(key: str, settings: Settings):
    """A model's defaults and schedulers, and Compel weighting disabled with the reason where the model
    cannot take it."""
    sampling = model_sampling(key, settings)
    spec = known_spec(key)
    if spec is None:  # a typed, unknown key: leave the values; Generate will name the problem
        return (*sampling, gr.skip(), gr.skip())
    reason = spec.weighting_unavailable_reason
    weighting = gr.Checkbox(
        value=False if reason else gr.skip(),
        interactive=reason is None,
        info=f"Not available: {reason}." if reason else WEIGHTING_INFO,
    )
    schedulers = gr.Dropdown(choices=scheduler_choices(key), value="")
    return (*sampling, weighting, schedulers)


def recipe_panel() -> tuple[gr.Code, gr.File]:
    """The script behind the selected result, with downloads (script, init image, recipe JSON)."""
    with gr.Accordion("Recipe: the diffusers code behind the selected image", open=False):
        gr.Markdown(
            "Run it with `python recipe.py result.png init.png`. Downloads: the script, the init image as the "
            "pipeline saw it, the recipe as JSON."
        )
        code = gr.Code(language="python", label="Script", interactive=False)
        files = downloads()
    return code, files


# the examples: a scikit-image photo, the part painted over (a box in its pixels), and what it becomes
EXAMPLE_MASKS = {
    "chelsea the cat": ((150, 30, 340, 230), "a red fox's head, detailed fur, soft light"),
    "coffee": ((160, 40, 460, 330), "a cup of green matcha tea, top view"),
}


def example_mask(engine, label: str) -> str:
    """An example photo's black and white mask (white over its box in EXAMPLE_MASKS), written once beside it."""
    photo = engine.example_images()[label]
    mask = photo.with_name(f"{photo.stem}-inpaint-mask.png")
    if not mask.is_file():
        with Image.open(photo) as opened:
            drawn = Image.new("L", opened.size, 0)
        ImageDraw.Draw(drawn).ellipse(EXAMPLE_MASKS[label][0], fill=255)
        drawn.save(mask)
    return str(mask)
