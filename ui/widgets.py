"""The few widgets and helpers every tab shares: model picker, seed row, progress, error boundary."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import inspect
import itertools
import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image

from engine.cache import ModelUnavailable
from engine.catalog import CATALOG, get_spec, models_for
from engine.images import HeaderOnly
from engine.recipe import Recipe, save_png
from engine.requests import MAX_GUIDANCE, MAX_SIDE, RANDOM_SEED, SEED_LIMIT, Img2ImgRequest, model_defaults
from engine.run import CancelToken, GenerationCancelled, NonFiniteOutput, OutOfMemory
from engine.schedulers import schedulers_for
from engine.script import script_for
from engine.settings import Settings

logger = logging.getLogger(__name__)

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


def install_preprocess_hooks() -> None:
    """Route the preprocessing of marked components past Gradio's own (idempotent; called when building).

    The marker is a CSS class, not an attribute of the instance: Gradio rebuilds a component from its
    constructor arguments whenever an event (an Example, say) updates its properties, and a patch on
    the old instance would be lost, while the class travels with the arguments. (Not a subclass: Gradio
    writes a .pyi file beside the source of every Component subclass.)
    """
    if getattr(gr.Image, "_studio_hooks", False):
        return
    for kind in (gr.Image, gr.Slider, gr.Number, gr.Dropdown):
        original = kind.preprocess

        def preprocess(self, payload, _original=original):
            if _marked(self, UNOPENED_UPLOAD):
                return str(payload.path) if payload is not None and payload.path else None
            if _marked(self, ENGINE_CHECKED):
                return payload
            return _original(self, payload)

        kind.preprocess = preprocess
    gr.Image._studio_hooks = True


def engine_checked(component: gr.Slider | gr.Number | gr.Dropdown) -> gr.Slider | gr.Number | gr.Dropdown:
    """Let an input hand its value to the engine unchecked; its bounds or choices still guide the browser.

    Gradio's own check answers "Value 1.5 is greater than maximum value 1.0" without naming the
    parameter (and a dropdown echoes whatever was sent, at any length); the engine's answers
    "strength must be in (0, 1], got 1.5".
    """
    install_preprocess_hooks()
    component.elem_classes = [*_classes(component), ENGINE_CHECKED]
    component.constructor_args["elem_classes"] = component.elem_classes  # kept when Gradio rebuilds it
    return component


def image_input(label: str = "Init image", *, height: int = 320) -> gr.Image:
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
    )


def summary_box(elem_id: str, label: str = "Summary") -> gr.Textbox:
    """A run's facts as plain text: shown as typed on the page, and the same plain text for API clients."""
    return gr.Textbox(label=label, interactive=False, lines=2, max_lines=40, elem_id=elem_id)


def header_only(image: str | None) -> HeaderOnly | None:
    """An upload for a plan preview: sized from its header, never decoded (previews run outside the queue)."""
    return HeaderOnly(image) if image else None


OUTPUT_CLASS = "studio-output"  # marks result areas (the browser tests check none offers an upload)
RUN_CLASS = "studio-run"  # the button Ctrl+Enter presses on its tab


def run_button(label: str) -> gr.Button:
    """A tab's main button (the one Ctrl+Enter presses)."""
    return gr.Button(label, variant="primary", scale=3, elem_classes=[RUN_CLASS])


def result_image(
    label: str, *, elem_id: str | None = None, slider: bool = False, type: str = "pil", visible: bool = True
):
    """A result image (or an init | result slider): PNG, with the download button, not editable."""
    kind = gr.ImageSlider if slider else gr.Image
    return kind(
        label=label,
        type=type,
        format="png",
        interactive=False,
        elem_id=elem_id,
        elem_classes=[OUTPUT_CLASS],
        visible=visible,
    )


def result_gallery(label: str, *, columns: int, height: int, elem_id: str | None = None, **options) -> gr.Gallery:
    """Result images as a gallery: PNGs (with their recipes), an output, with no upload area or delete buttons."""
    return gr.Gallery(
        label=label, format="png", columns=columns, height=height, interactive=False, elem_id=elem_id,
        elem_classes=[OUTPUT_CLASS], **options,
    )  # fmt: skip


def downloads(label: str = "Downloads") -> gr.File:
    """Files to download: a list with download links, no upload area or remove buttons."""
    return gr.File(label=label, file_count="multiple", interactive=False, elem_classes=[OUTPUT_CLASS])


def model_picker(
    kind: str,
    value: str,
    label: str = "Model",
    *,
    keys: list[str] | None = None,
    extra: list[tuple] = (),
    info: str = "The checkpoint that repaints the image; each has its own style and defaults.",
    **options,
) -> gr.Dropdown:
    """A dropdown of the catalog models that serve a pipeline kind (or of `keys`); values are catalog keys."""
    choices = [*extra, *[(f"{CATALOG[key].label} ({key})", key) for key in (keys or models_for(kind))]]
    # allow_custom_value: the engine's check answers an unknown key, naming the parameter and listing the keys
    return gr.Dropdown(choices=choices, value=value, label=label, info=info, allow_custom_value=True, **options)


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


def gradio_progress(progress: gr.Progress, desc: str = "Denoising") -> Callable[[int, int], None]:
    """Adapt the engine's progress(done, total) callback to a gr.Progress bar."""

    def report(done: int, total: int) -> None:
        progress((done, total), desc=desc, unit="steps")

    return report


BASIC_ARGS = """
            image: the init image (PNG/JPEG/WebP, at most $max_input_pixels pixels; scaled to at most
                $working_pixels pixels, sides rounded to the model's multiple).
            prompt: what the image should become (at most $max_prompt_chars characters).
            negative_prompt: what to steer away from; may be empty.
            model: catalog key: $img2img_models.
            strength: in (0, 1]: how far to move from the init; int(num_inference_steps x strength) steps run.
            guidance_scale: in [0, $max_guidance]: how literally to follow the prompt (classifier-free guidance).
            num_inference_steps: 1 to $max_steps: steps of the full schedule.
            seed: -1 for random, else in [0, 2^32); the seed used is in the summary."""
SCHEDULER_ARG = (
    "empty for the model's own scheduler, or a web UI sampler name: DDIM, PLMS, Euler, Euler a, DPM++ 2M, "
    "DPM++ 2M Karras, DPM++ 2M SDE, UniPC, ... (those that fit the model)."
)


def documented(settings) -> Callable[[Callable], Callable]:
    """Fill a handler's docstring with the live limits ($max_steps, ...) and the shared Basic arguments
    ($basic_args): the API page and the MCP tool descriptions are read from it."""
    from string import Template

    limits = {name: f"{value:,}" if isinstance(value, int) else value for name, value in vars(settings).items()}
    limits["working_pixels"] = f"{settings.working_pixels:,}"
    limits.update(max_side=f"{MAX_SIDE:,}", max_guidance=f"{MAX_GUIDANCE:g}")  # the engine's fixed limits
    limits["img2img_models"] = ", ".join(models_for("img2img"))

    def apply(fn: Callable) -> Callable:
        text = Template(BASIC_ARGS).safe_substitute(limits)
        fn.__doc__ = Template(fn.__doc__ or "").safe_substitute(
            {**limits, "basic_args": text.strip(), "scheduler_arg": SCHEDULER_ARG}
        )
        return fn

    return apply


def as_text(message: object) -> str:
    """A message for the page as text: Gradio renders error toasts and Markdown as HTML, and a value a
    person typed (a prompt, a model id) must show as typed, never as markup."""
    return html.escape(str(message), quote=False)


def warning_text(exc: Exception) -> str:
    """A plan preview's warning line."""
    return f"⚠️ {as_text(exc)}"


def user_errors(fn: Callable) -> Callable:
    """Turn bad input (ValueError), Stop and a model that cannot load into messages the browser shows.

    ValueError messages already name the parameter and value; they reach the page as text (escaped)
    so the user sees exactly what to fix, and the server keeps serving.
    """

    @contextlib.contextmanager
    def shown_to_user():
        try:
            yield
        except ValueError as exc:
            raise gr.Error(as_text(exc), title="Invalid input", print_exception=False) from None
        except GenerationCancelled as exc:
            raise gr.Error(as_text(f"Stopped: {exc}"), title="Stopped", print_exception=False) from None
        except ModelUnavailable as exc:
            raise gr.Error(as_text(exc), title="Model unavailable", print_exception=False) from None
        except OutOfMemory as exc:
            raise gr.Error(as_text(exc), title="Out of memory", print_exception=False) from None
        except NonFiniteOutput as exc:
            raise gr.Error(as_text(exc), title="No image", print_exception=False) from None
        except gr.Error:
            raise
        except Exception as exc:  # a bug or an input no check foresaw: logged whole, shown without internals
            logger.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(
                f"Something went wrong inside the app ({type(exc).__name__}); the server logged it and keeps "
                "serving. Try again, or change the input.",
                title="Internal error",
                print_exception=False,
            ) from None

    if inspect.isgeneratorfunction(fn):  # Gradio streams generators; errors arrive while iterating

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with shown_to_user():
                yield from fn(*args, **kwargs)

    else:

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with shown_to_user():
                return fn(*args, **kwargs)

    return wrapper


WEIGHTING_INFO = "Compel syntax: (word)1.3 or word++ to stress, (word)0.7 or word-- to soften."
SCHEDULER_INFO = "Named as the web UI names its samplers; the model's own unless you pick one."


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
    summary: gr.Textbox | None = None  # the tab's result summary (Send to Basic says there what it filled)

    def api_inputs(self) -> list:
        """image, prompt, negative_prompt, model, strength, guidance_scale, num_inference_steps, seed."""
        return [
            self.image,
            self.prompt,
            self.negative_prompt,
            self.model,
            self.strength,
            self.guidance_scale,
            self.num_inference_steps,
            self.seed,
        ]


def main_inputs(settings, default_model: str, *, image_label: str = "Init image") -> GenerationInputs:
    """Image, prompt, negative prompt, model and strength: the top of a generating tab."""
    strength0, _, _ = model_defaults(default_model, settings)
    image = image_input(image_label)
    prompt = gr.Textbox(label="Prompt", lines=2, max_length=settings.max_prompt_chars)
    negative_prompt = gr.Textbox(
        value="", label="Negative prompt", lines=1, info=NEGATIVE_INFO, max_length=settings.max_prompt_chars
    )
    model = model_picker("img2img", default_model)
    # minimum 0, not 0.01: a typed 0 reaches the engine, whose error says why (the slider would clamp it silently)
    strength = engine_checked(gr.Slider(0.0, 1.0, value=strength0, step=0.01, label="Strength", info=STRENGTH_INFO))
    return GenerationInputs(image, prompt, negative_prompt, model, strength)


def guidance_slider(value: float, *, label: str = "Guidance scale", info: str | None = GUIDANCE_INFO) -> gr.Slider:
    """A guidance_scale slider over the engine's whole range (0 to MAX_GUIDANCE)."""
    return engine_checked(gr.Slider(0.0, MAX_GUIDANCE, value=value, step=0.5, label=label, info=info))


def advanced_inputs(inputs: GenerationInputs, settings, default_model: str) -> GenerationInputs:
    """Guidance, steps, seed row and Compel weighting (call inside the tab's Advanced accordion)."""
    _, guidance0, steps0 = model_defaults(default_model, settings)
    inputs.guidance_scale = guidance_slider(guidance0)
    inputs.num_inference_steps = engine_checked(
        gr.Slider(1, settings.max_steps, value=steps0, step=1, label="Steps", info=STEPS_INFO)
    )
    inputs.seed, _, inputs.reuse_seed = seed_row()
    inputs.weighted_prompt = gr.Checkbox(label="Weighted prompt (Compel)", value=False, info=WEIGHTING_INFO)
    inputs.scheduler = engine_checked(
        gr.Dropdown(scheduler_choices(default_model), value="", label="Scheduler (sampler)", info=SCHEDULER_INFO)
    )
    # .input, not .change: a person picking a model gets its defaults; Send to Basic keeps the values it sets
    inputs.model.input(
        functools.partial(on_model_change, settings=settings),
        inputs=inputs.model,
        outputs=[
            inputs.strength,
            inputs.guidance_scale,
            inputs.num_inference_steps,
            inputs.weighted_prompt,
            inputs.scheduler,
        ],
        queue=False,
        api_visibility="private",
    )
    return inputs


def scheduler_choices(model: str) -> list[tuple[str, str]]:
    """The schedulers that fit a model, by their web UI names; "" is the checkpoint's own."""
    return [(f"the model's own ({get_spec(model).scheduler})", ""), *[(n, n) for n in schedulers_for(model)]]


def on_model_change(key: str, settings: Settings):
    """A model's defaults and schedulers, and Compel weighting disabled with the reason where the model
    cannot take it."""
    try:
        strength_value, guidance_value, steps_value = model_defaults(key, settings)
    except ValueError:  # a typed, unknown key: leave the values; Generate will name the problem
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    reason = get_spec(key).weighting_unavailable_reason
    weighting = gr.Checkbox(
        value=False if reason else gr.skip(),
        interactive=reason is None,
        info=f"Not available: {reason}." if reason else WEIGHTING_INFO,
    )
    schedulers = gr.Dropdown(choices=scheduler_choices(key), value="")
    return strength_value, guidance_value, steps_value, weighting, schedulers


def img2img_request(
    image, prompt, negative_prompt, model, strength, guidance_scale, num_inference_steps, seed, **extra
) -> Img2ImgRequest:
    """The Basic request from the values every generating tab starts with, in the API's order."""
    return Img2ImgRequest(
        image=image,
        prompt=prompt,
        negative_prompt=negative_prompt,
        model=model,
        strength=strength,
        guidance_scale=guidance_scale,
        num_inference_steps=num_inference_steps,
        seed=seed,
        **extra,
    )


@dataclass(frozen=True)
class Finished:
    """A tab's main run, for what follows it (the history): its event and the gallery it fills."""

    event: object
    gallery: gr.Gallery


GPU_QUEUE = "gpu"  # every event that runs a pipeline shares this concurrency id, one at a time


def client_connected() -> Callable[[], bool] | None:
    """For the event being run: a check that its page or API client is still connected.

    When the event stream of a session closes (a closed tab, a client that went away), Gradio's
    queue marks that session's running events dead but lets a running function go on; a job that
    asks this at every step stops within one. None outside a queued event.
    """
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    queue = getattr(blocks, "_queue", None)
    if queue is None or event_id is None:
        return None
    for events in queue.active_jobs:
        for event in events or ():
            if event._id == event_id:
                return lambda: event.alive
    return None


def cancellable(fn: Callable) -> Callable:
    """`fn` run in a worker thread, with its CancelToken set when Gradio cancels the event.

    Gradio cancels a job (an API client's cancel, a closed page) by cancelling its asyncio task; a
    thread running a pipeline would not notice and would hold the GPU lock to the end. Here the task
    awaits the thread, and its cancellation sets the job's token, so the pipeline stops at its next
    step and the next job runs. Works for plain functions and generators; keeps fn's signature and
    docstring for the API page.
    """

    def with_job_token(args, kwargs) -> tuple[list, dict, CancelToken]:
        """The session's token in the arguments swapped for a child token of this job's own."""
        session = next((v for v in (*args, *kwargs.values()) if isinstance(v, CancelToken)), None)
        alive = client_connected()
        job = session.child(alive=alive) if session is not None else CancelToken(alive=alive)

        def swap(value):
            return job if value is session else value

        return [swap(v) for v in args], {name: swap(v) for name, v in kwargs.items()}, job

    @contextlib.contextmanager
    def cancelled_with_the_task(token: CancelToken):
        try:
            yield
        except asyncio.CancelledError:
            token.cancel()  # the worker thread stops at its next step and lets go of the GPU lock
            raise

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        async def stream(*args, **kwargs):
            args, kwargs, token = with_job_token(args, kwargs)
            iterator = fn(*args, **kwargs)
            done = object()
            with cancelled_with_the_task(token):
                while (item := await asyncio.to_thread(next, iterator, done)) is not done:
                    yield item

        return stream

    @functools.wraps(fn)
    async def call(*args, **kwargs):
        args, kwargs, token = with_job_token(args, kwargs)
        with cancelled_with_the_task(token):
            return await asyncio.to_thread(fn, *args, **kwargs)

    return call


def wire_generation(
    run: gr.Button, stop: gr.Button | None, fn: Callable, *, inputs: list, outputs: list, tools: list
) -> gr.events.Dependency:
    """Run `fn` on the shared GPU queue when `run` is clicked; `stop` (if any) ends it at the next step.

    The event is the API endpoint named like `fn`, and `fn` is added to `tools` (the MCP tools). Each
    browser session gets its own CancelToken (passed as fn's last input), reset before every run, so
    one user's Stop never stops another's job.
    """
    from ui.mcp import tool_spec  # ui.mcp builds on this module

    tools.append(tool_spec(fn, inputs, outputs))
    cancel_state = gr.State(CancelToken())
    event = run.click(lambda token: token.reset(), inputs=cancel_state, queue=False, api_visibility="private").then(
        cancellable(fn),
        inputs=[*inputs, cancel_state],
        outputs=outputs,
        api_name=fn.__name__,
        concurrency_id=GPU_QUEUE,
        concurrency_limit=1,
    )
    if stop is not None:
        stop.click(lambda token: token.cancel(), inputs=cancel_state, queue=False, api_visibility="private")
    return event


def clear_errors_on_example(examples: gr.Examples, outputs: list) -> None:
    """Picking an example clears the red Error badges a failed run left on `outputs` (their values stay)."""
    examples.load_input_event.then(
        lambda: [gr.skip()] * len(outputs),
        outputs=outputs,
        queue=False,
        api_visibility="private",
        show_progress="hidden",
    )


def compare(engine, ids: list, gallery: list | None, *, last: bool = False):
    """A before/after slider's pair: the init the first result was made from, as the pipeline saw it, and
    the first (or `last`) result; None when there is no result or no init (a chain from text)."""
    made = [(key, item) for key, item in zip(ids or [], gallery or [], strict=False) if key]
    stored = engine.results.get(made[0][0]) if made else None
    if stored is None or stored.init is None:
        return None
    item = made[-1 if last else 0][1]
    return (stored.init, item[0] if isinstance(item, list | tuple) else item)


def wire_comparison(engine, done, ids: gr.State, gallery: gr.Gallery, slider, *, last: bool = False) -> None:
    """After a run succeeds, the before/after slider shows the init and the first (or last) result."""
    done.success(
        lambda kept, shown: compare(engine, kept, shown, last=last),
        inputs=[ids, gallery],
        outputs=slider,
        queue=False,
        api_visibility="private",
        show_progress="hidden",
    )


def wire_preview(components: list, describe: Callable, output: gr.Markdown) -> None:
    """Re-describe what a run will do whenever one of `components` changes (no queue, no API)."""
    for component in components:
        component.change(
            describe,
            inputs=components,
            outputs=output,
            queue=False,
            api_visibility="private",
            show_progress="hidden",
        )


MAX_KEPT_OUTPUTS = 1000  # result PNGs kept on disk for the per-browser history; the oldest go first
MAX_KEPT_DOWNLOADS = 200  # download folders (script, recipe, init; sweep exports); the oldest go first
PRUNE_EVERY = 20  # writes between prunes: a sweep writes one PNG per cell, and pruning lists the folder
_writes = itertools.count(1)


def outputs_dir(settings) -> Path:
    """Where result PNGs are written: <data dir>/outputs, one `<32 hex>.png` per result."""
    return Path(settings.data_dir) / "outputs"


def downloads_dir(settings) -> Path:
    """Where download folders are written: <data dir>/downloads/<32 hex>/."""
    return Path(settings.data_dir) / "downloads"


def served_dirs(settings) -> list[str]:
    """The folders whose files the app hands to Gradio (outputs, downloads, examples), for allowed_paths:
    a data dir outside the working directory and the temp folder must work (a Space's /data)."""
    data = Path(settings.data_dir).resolve()
    return [str(data / "outputs"), str(data / "downloads"), str(data / "examples")]


def png_outputs(settings, items: list[tuple], ids: list[str] | None = None) -> list[tuple[str, str]]:
    """(image, recipe, caption) items as PNG files carrying their recipes (unless metadata is off).

    Returns (path, caption) pairs for a Gallery. Gradio keeps the files' bytes, so the recipe chunks
    reach the browser and the API as written. A result (an item with a recipe) is named by its id in
    engine.results (`ids`, one per item; "" or none: a random one), so the history and the Recipe tab
    can find its init image from the file name; inputs shown beside results (init, depth map) are not.
    """
    folder = outputs_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    outputs = []
    for index, (image, recipe, caption) in enumerate(items):
        known = ids[index] if ids is not None and index < len(ids) else ""
        name = (known or uuid.uuid4().hex) + (".png" if recipe is not None else "-input.png")
        path = save_png(image, recipe if settings.metadata else None, folder / name)
        outputs.append((str(path), caption))
        if next(_writes) % PRUNE_EVERY == 0:
            prune_disk(settings)
    return outputs


def download_folder(settings) -> Path:
    """A fresh folder for one result's downloads, under the data dir (bounded, see prune_disk)."""
    folder = downloads_dir(settings) / uuid.uuid4().hex
    folder.mkdir(parents=True)
    if next(_writes) % PRUNE_EVERY == 0:
        prune_disk(settings)
    return folder


def _size_of(path: Path) -> int:
    if path.is_dir():
        return sum(child.stat().st_size for child in path.iterdir() if child.is_file())
    return path.stat().st_size


def prune_disk(settings) -> None:
    """Delete the oldest result PNGs and download folders past their counts or the data dir's byte cap.

    Outputs keep at most MAX_KEPT_OUTPUTS files and downloads MAX_KEPT_DOWNLOADS folders; together
    they stay under STUDIO_MAX_OUTPUTS_MB (each kind gets half).
    """
    budget = settings.max_outputs_mb * 2**20 // 2
    for folder, limit in ((outputs_dir(settings), MAX_KEPT_OUTPUTS), (downloads_dir(settings), MAX_KEPT_DOWNLOADS)):
        if not folder.is_dir():
            continue
        entries = []
        for path in folder.iterdir():
            with contextlib.suppress(FileNotFoundError):  # another job's prune got there first
                entries.append((path.stat().st_mtime, path, _size_of(path)))
        entries.sort(key=lambda entry: entry[0], reverse=True)
        total = 0
        for kept, (_, path, size) in enumerate(entries):
            total += size
            if kept >= limit or total > budget:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


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


def recipe_files(
    settings, recipe: Recipe | None, init: Image.Image | None, inputs: dict[str, Image.Image] | None = None
) -> tuple[str, list[str] | None]:
    """The script text and its downloads for one result's recipe (`inputs`: more images it reads)."""
    if recipe is None:
        return "", None
    try:
        script = script_for(recipe)
    except ValueError as exc:
        return f"# {exc}", None
    folder = download_folder(settings)
    (folder / "recipe.py").write_text(script, encoding="utf-8")
    (folder / "recipe.json").write_text(recipe.to_json(), encoding="utf-8")
    paths = [str(folder / "recipe.py"), str(folder / "recipe.json")]
    if init is not None:
        init.save(folder / "init.png")
        paths.insert(1, str(folder / "init.png"))
    for name, image in (inputs or {}).items():
        image.save(folder / name)
        paths.append(str(folder / name))
    return script, paths


def wire_recipe_selection(engine, gallery: gr.Gallery, ids: gr.State, code: gr.Code, files: gr.File) -> None:
    """Selecting an image in `gallery` shows its script; `ids` holds each image's id in engine.results."""

    def show(kept, event: gr.SelectData):
        if not kept or event.index is None or event.index >= len(kept) or not kept[event.index]:
            return "", None
        stored = engine.results.get(kept[event.index])
        if stored is None:
            return "# No longer kept on the server: the PNG still carries its recipe (Recipe tab).", None
        return recipe_files(engine.settings, stored.recipe, stored.init, stored.inputs)

    gallery.select(show, inputs=ids, outputs=[code, files], queue=False, api_visibility="private")
