"""Event wiring every tab shares: the GPU queue, Stop and closed pages, errors shown to users, previews."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import html
import inspect
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import gradio as gr
from gradio.context import LocalContext
from PIL import Image

from engine.models.catalog import models_for
from engine.models.loras import offered
from engine.pipelines.calls import CancelToken, GenerationCancelled, NonFiniteOutput, OutOfMemory
from engine.pipelines.live import LivePreview, LivePreviewFn
from engine.pipelines.loading import ModelUnavailable
from engine.workflows.checks import MAX_GUIDANCE, MAX_SIDE
from ui.components import is_summary
from ui.outputs import recipe_files
from ui.tools import tool_spec

logger = logging.getLogger(__name__)


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


def lora_arg() -> str:
    """The loras argument's description, naming the LoRAs the owner offers."""
    names = ", ".join(offered()) or "none are offered here"
    return f'the owner\'s LoRAs with weights, "name:0.8, other:0.5" (weights -4 to 4), or empty: {names}.'


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
            {**limits, "basic_args": text.strip(), "scheduler_arg": SCHEDULER_ARG, "loras_arg": lora_arg()}
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


_FAILED: OrderedDict[str, str] = OrderedDict()  # browser session -> why its last run failed (the newest 1,000)


def remembered(message: str, title: str) -> gr.Error:
    """The error to raise, its reason kept for the session's summary box (`reason_of_failure`): a toast is gone
    in seconds, and the panels would say only "Error"."""
    session = getattr(LocalContext.request.get(None), "session_hash", None)
    if session:
        _FAILED[session] = f"{title}: {message}"
        _FAILED.move_to_end(session)
        while len(_FAILED) > 1000:
            _FAILED.popitem(last=False)
    return gr.Error(message, title=title, print_exception=False)


def reason_of_failure(outputs: list) -> Callable:
    """A failed run's follow-up: the reason in its summary box, every other output left as it was (which also
    clears their red Error badges)."""

    def follow_up(request: gr.Request) -> list:
        reason = _FAILED.pop(getattr(request, "session_hash", None) or "", "The run failed.")
        return [f"⚠️ {reason}" if is_summary(output) else gr.skip() for output in outputs]

    return follow_up


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
            raise remembered(as_text(exc), "Invalid input") from None
        except GenerationCancelled as exc:
            raise remembered(as_text(f"Stopped: {exc}"), "Stopped") from None
        except ModelUnavailable as exc:
            raise remembered(as_text(exc), "Model unavailable") from None
        except OutOfMemory as exc:
            raise remembered(as_text(exc), "Out of memory") from None
        except NonFiniteOutput as exc:
            raise remembered(as_text(exc), "No image") from None
        except gr.Error as exc:
            raise remembered(str(exc.message), exc.title or "Error") from None
        except Exception as exc:  # a bug or an input no check foresaw: logged whole, shown without internals
            logger.exception("unexpected error in %s", fn.__name__)
            raise remembered(
                f"Something went wrong inside the app ({type(exc).__name__}); the server logged it and keeps "
                "serving. Try again, or change the input.",
                "Internal error",
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

        def swap(value):  # only the session's token: with none, a None argument stays None
            return job if session is not None and value is session else value

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
    run: gr.Button,
    stop: gr.Button | None,
    fn: Callable,
    *,
    inputs: list,
    outputs: list | gr.components.Component,
    tools: list,
    live_output: gr.components.Component | None = None,
    prepare: tuple[Callable, list, list] | None = None,
) -> gr.events.Dependency:
    """Run `fn` on the shared GPU queue when `run` is clicked; `stop` (if any) ends it at the next step.

    The event is the API endpoint named like `fn`, and `fn` is added to `tools` (the MCP tools). Each
    browser session gets its own CancelToken (passed as fn's `cancel` input), reset before every run, so
    one user's Stop never stops another's job.

    A handler with a `live` parameter gets True when the page's own click started the run (the click's first
    step, which API clients never run: they call the endpoint itself) and may then stream live previews to
    `live_output`; the progress bar goes on the other outputs (each progress update would cover the
    preview again).

    `prepare` (function, inputs, outputs): a first step of the page's click only, filling some of `fn`'s inputs
    from what the page shows (the Inpaint tab's editor becomes an image and a mask); the run follows if it
    succeeds. API clients send those inputs themselves.
    """
    tools.append(tool_spec(fn, inputs, outputs))
    cancel_state = gr.State(CancelToken())
    live_state = gr.State(False) if "live" in inspect.signature(fn).parameters else None
    states = [cancel_state] if live_state is None else [cancel_state, live_state]
    started = [component for component in (stop, live_state) if component is not None]

    def start(token: CancelToken):
        """The page's click, before its run: a fresh Stop, shown; live previews on (someone watches this page)."""
        token.reset()
        values: list = [gr.Button(visible=True)] if stop is not None else []
        values += [True] if live_state is not None else []
        return values if len(values) > 1 else (values[0] if values else None)

    click = run.click
    if prepare is not None:
        prepared, prepare_inputs, prepare_outputs = prepare
        click = run.click(
            prepared,
            inputs=prepare_inputs,
            outputs=prepare_outputs,
            queue=False,
            api_visibility="private",
            show_progress="hidden",
        ).success
    event = click(
        start, inputs=cancel_state, outputs=started, queue=False, api_visibility="private", show_progress="hidden"
    ).then(
        cancellable(fn),
        inputs=[*inputs, *states],
        outputs=outputs,
        api_name=fn.__name__,
        concurrency_id=GPU_QUEUE,
        concurrency_limit=1,
        show_progress_on=_progress_outputs(outputs, live_output),
    )
    if stop is not None:  # shown while a run is on (`start`), hidden when it ends, however it ends
        stop.click(lambda token: token.cancel(), inputs=cancel_state, queue=False, api_visibility="private")
        for ended in (event.then, event.failure):  # `then` follows a run that finished, not one that raised
            ended(
                lambda: gr.Button(visible=False),
                outputs=stop,
                queue=False,
                api_visibility="private",
                show_progress="hidden",
            )
    wire_failure(event, outputs if isinstance(outputs, list) else [outputs])
    return event


def _progress_outputs(outputs: list | gr.components.Component, live_output) -> list | None:
    """Where a run's progress bar shows: every output but the one its live previews go to (None: all)."""
    if live_output is None:
        return None
    listed = outputs if isinstance(outputs, list) else [outputs]
    return [output for output in listed if output is not live_output and not isinstance(output, gr.State)]


T = TypeVar("T")


@dataclass(frozen=True)
class _Raised:
    error: BaseException


def watched(
    run: Callable[[LivePreviewFn | None], Iterator[T]], *, live: bool, cancel: CancelToken | None
) -> Iterator[T | LivePreview]:
    """`run(live_preview)`'s items, with the live previews of its denoising steps between them when `live`.

    Not live (an API or MCP call): `run(None)` in this thread, no previews made. Live: the run works in a
    thread of its own, since a pipeline call only hands out previews from inside its step callback, and
    sends its items, previews and errors here in order; the Stop token reaches it as before (it stops at
    its next step), and a caller that goes away cancels it and waits for it to let go of the pipeline.
    """
    if not live:
        yield from run(None)
        return
    handed: queue.Queue = queue.Queue()
    finished = object()

    def work() -> None:
        try:
            for item in run(handed.put):
                handed.put(item)
        except BaseException as exc:  # every error reaches the handler, which shows it as it would have
            handed.put(_Raised(exc))
        finally:
            handed.put(finished)

    worker = threading.Thread(target=contextvars.copy_context().run, args=(work,), name="live-run", daemon=True)
    worker.start()  # in this event's context: its progress bar reaches the page
    try:
        while (item := handed.get()) is not finished:
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        if worker.is_alive():  # the caller went away mid-run
            if cancel is not None:
                cancel.cancel()
            worker.join()


def live_images(preview: LivePreview) -> list:
    """A preview's images at the output's size, each with its place: [(place, image), ...]."""
    return [
        (place, image.resize(preview.size, Image.Resampling.BILINEAR))
        for place, image in zip(preview.places, preview.images, strict=False)
    ]


def wire_failure(event: gr.events.Dependency, outputs: list) -> None:
    """When `event` fails, its reason goes to the summary box among `outputs`, where the result would have been,
    and stays until the next run; the other outputs keep what they showed, without a bare "Error" badge."""
    if any(is_summary(output) for output in outputs):
        event.failure(
            reason_of_failure(outputs), outputs=outputs, queue=False, api_visibility="private", show_progress="hidden"
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
