"""One pipeline call: seeds to generators, progress and cancel through callback_on_step_end.

Every workflow (Basic, sweep, chain, depth) calls pipelines through `call_pipeline`, so seeding,
progress, cancellation and the cache lock behave the same everywhere.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from engine.pipelines.device import free_memory
from engine.pipelines.live import LivePreview, LivePreviewFn, LiveView, latent_rgb_images

logger = logging.getLogger(__name__)

# progress(steps done, steps total); total may grow as later stages start
ProgressFn = Callable[[int, int], None]


class OutOfMemory(RuntimeError):
    """The device ran out of memory twice: once, and again after the one remedy tried."""


class NonFiniteOutput(RuntimeError):
    """The VAE decoded NaN or inf (an fp16 VAE overflowing): raised instead of returning a black image."""


class GenerationCancelled(Exception):
    """The user pressed Stop; raised out of the pipeline at the next step boundary."""

    def __init__(self, steps_done: int) -> None:
        super().__init__(f"stopped by the user after {steps_done} denoising step(s)")
        self.steps_done = steps_done

    def __reduce__(self):  # crosses processes (ZeroGPU's worker, a Ray replica) as itself
        return (type(self), (self.steps_done,))


class CancelToken:
    """A per-session Stop flag. Copies are fresh tokens, so Gradio's per-session State gets its own.

    `child()` makes a token for one job: cancelled with its parent (the session's Stop) or on its own
    (the job's event cancelled), without leaving the session's token set for the next job.
    """

    def __init__(self, parent: CancelToken | None = None, *, alive: Callable[[], bool] | None = None) -> None:
        self._event = threading.Event()
        self._parent = parent
        self._alive = alive  # e.g. "is anyone still waiting for this job?", asked at every step

    def cancel(self) -> None:
        self._event.set()

    def reset(self) -> None:
        self._event.clear()

    def child(self, *, alive: Callable[[], bool] | None = None) -> CancelToken:
        """A token for one job; `alive` returning False cancels it too (a client that went away)."""
        return CancelToken(parent=self, alive=alive)

    @property
    def cancelled(self) -> bool:
        if self._alive is not None and not self._event.is_set() and not self._alive():
            self._event.set()
        return self._event.is_set() or (self._parent is not None and self._parent.cancelled)

    def __deepcopy__(self, memo: dict) -> CancelToken:
        return CancelToken()


def denoiser_of(pipe):
    """The pipeline that owns the denoising UNet and scheduler (a combined pipeline's decoder)."""
    return getattr(pipe, "decoder_pipe", pipe)


def make_generators(seeds: Sequence[int], device: str) -> list[torch.Generator]:
    """One generator per image, so image i of a batch equals a single run with seeds[i]."""
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]


LIVE_PREVIEW_SECONDS = 0.5  # at most one live preview per this many seconds (and the first step of each call)


@dataclass
class StepReporter:
    """callback_on_step_end that counts steps, reports progress, raises on cancel and makes live previews.

    One reporter can span several pipeline calls of a job (one per seed, per sweep cell...): call
    `start_call(calls_left)` before each, and the bar runs on from where the last call ended.

    With `live_preview` set (someone watches the run: the web page), a call given a `LiveView` asks diffusers
    for its latents and sends a `LivePreview` on its first step and then at most every `live_seconds`;
    without it (API and MCP calls) no latents are asked for and nothing is projected.
    """

    progress: ProgressFn | None = None
    cancel: CancelToken | None = None
    live_preview: LivePreviewFn | None = None
    live_seconds: float = LIVE_PREVIEW_SECONDS
    steps: int = 0  # every step of every call so far
    calls: int = 0
    notes: list[str] = field(default_factory=list)  # what went wrong and was recovered from, for the user
    live_view: LiveView | None = None  # what the running call previews (set by call_pipeline)
    _call_start: int = 0
    _calls_left: int = 1
    _last_live: float = -math.inf

    def start_call(self, calls_left: int = 1) -> None:
        self._call_start = self.steps
        self._calls_left = max(1, calls_left)
        self.calls += 1

    @property
    def wants_latents(self) -> bool:
        """The running call makes live previews: someone watches, and its family has a projection."""
        view = self.live_view
        return self.live_preview is not None and view is not None and view.latent_rgb is not None

    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        self.steps += 1
        in_call = self.steps - self._call_start
        per_call = max(getattr(pipe, "num_timesteps", None) or in_call, in_call)
        if self.progress is not None:
            self.progress(self.steps, self._call_start + per_call * self._calls_left)
        if self.cancel is not None and self.cancel.cancelled:
            raise GenerationCancelled(self.steps)
        if self.wants_latents and "latents" in callback_kwargs:
            now = time.monotonic()
            if now - self._last_live >= self.live_seconds:  # the call's first step: -inf before it
                self._last_live = now
                self._send_live(callback_kwargs["latents"], in_call, per_call)
        return callback_kwargs

    def _send_live(self, latents: torch.Tensor, step: int, steps: int) -> None:
        view, send = self.live_view, self.live_preview
        assert view is not None and view.latent_rgb is not None and send is not None  # wants_latents
        images = latent_rgb_images(latents, view.latent_rgb, view.size)
        places = view.places[: len(images)]
        send(LivePreview(images=tuple(images), places=places, size=view.size, step=step, steps=steps))


def step_callback_kwargs(pipe, reporter: StepReporter) -> dict:
    """The reporter as `callback_on_step_end`, or as the legacy `callback` for pipelines that only take that
    (the x2 and x4 upscalers)."""
    parameters = inspect.signature(type(pipe).__call__).parameters
    if "callback_on_step_end" in parameters:
        if reporter.wants_latents and "callback_on_step_end_tensor_inputs" in parameters:
            return {"callback_on_step_end": reporter, "callback_on_step_end_tensor_inputs": ["latents"]}
        return {"callback_on_step_end": reporter}
    if "callback" in parameters:

        def legacy(step: int, timestep, latents) -> None:
            reporter(pipe, step, timestep, {})

        return {"callback": legacy, "callback_steps": 1}
    return {}


def call_pipeline(
    pipe,
    kwargs: dict,
    *,
    seeds: Sequence[int],
    cache,
    reporter: StepReporter | None = None,
    generators: list[torch.Generator] | None = None,
    live: LiveView | None = None,
):
    """Call `pipe(**kwargs)` under the cache lock with per-image generators and the step callback.

    `live` says what the call's images are for live previews (made only when the reporter has a
    `live_preview` to send them to).

    `generators` are used as given when a caller has already drawn from them (the sweep draws each
    cell's init-latent sample first, as the pipeline would). `cache` gives the lock, the generator
    device and `relieve()`, which makes room when memory runs out outside a VAE decode.

    Faults: out of memory, or a VAE that decodes NaN, gets one retry with the same generator states
    (the memory freed first, outside the except block, so the failed call's tensors are gone): after
    out of memory with what `cache.relieve` did (VAE tiling, offload, freeing other models), after
    NaN with the VAE upcast to float32. A second failure raises OutOfMemory or NonFiniteOutput with
    a message for the user; a recovery adds a note to `reporter.notes`.

    Raises GenerationCancelled when the token is set.
    """
    reporter = reporter or StepReporter()
    if reporter.calls == 0:
        reporter.start_call()
    call = dict(kwargs)
    call["generator"] = generators if generators is not None else make_generators(seeds, cache.policy.generator_device)
    reporter.live_view = live
    reporter._last_live = -math.inf
    call.update(step_callback_kwargs(pipe, reporter))
    states = [generator.get_state() for generator in call["generator"]]
    steps_before = reporter.steps
    upcast_vae = False
    with cache.lock:
        for attempt in (1, 2):
            if reporter.cancel is not None and reporter.cancel.cancelled:
                raise GenerationCancelled(reporter.steps)
            oom_in = None  # where memory ran out; None for NaN from the VAE
            try:
                with torch.inference_mode(), _finite_vae(pipe, upcast=upcast_vae):
                    output = pipe(**call)
                _check_finite(output)
                return output
            except torch.cuda.OutOfMemoryError as exc:
                oom_in = _where(exc)
            except NonFiniteOutput:
                pass
            fault = f"out of memory in the {oom_in}" if oom_in else "the VAE decoded NaN"
            # Outside the except block: the exception and its frames (holding the failed call's tensors)
            # are gone, so this really frees them.
            free_memory()
            if attempt == 2:
                break
            if oom_in is None:
                upcast_vae, remedy = True, "the VAE upcast to float32"
            elif oom_in == "VAE decode" and _enable_vae_tiling(pipe):
                remedy = "VAE tiling"
            else:
                remedy = cache.relieve(pipe)
            logger.warning("%s; retrying once with %s", fault, remedy)
            reporter.notes.append(f"Recovered: {fault}; retried once with {remedy}.")
            for generator, state in zip(call["generator"], states, strict=True):
                generator.set_state(state)
            reporter.steps = steps_before
    if oom_in:
        raise OutOfMemory(
            f"{fault}, again after a retry: this image is too large for the device. "
            "Use a smaller image, fewer images per run or fewer sweep cells per batch (STUDIO_MAX_BATCH)."
        )
    raise NonFiniteOutput(
        "the VAE decoded NaN even in float32: the result would be a black image. Try another seed or a lower "
        "guidance scale."
    )


def _where(exc: BaseException) -> str:
    """Which part of the pipeline ran out of memory, from the traceback's innermost diffusers frames."""
    tb = exc.__traceback__
    names = []
    while tb is not None:
        names.append((tb.tb_frame.f_code.co_name, tb.tb_frame.f_code.co_filename))
        tb = tb.tb_next
    del tb
    for name, filename in reversed(names):
        if name == "decode" and ("autoencoder" in filename or "vq_model" in filename):
            return "VAE decode"
    return "denoising loop"


def _vae_of(pipe):
    denoiser = denoiser_of(pipe)
    return getattr(denoiser, "vae", None) or getattr(denoiser, "movq", None)


def _enable_vae_tiling(pipe) -> bool:
    """Decode in tiles from now on; False where the VAE cannot tile or already does."""
    vae = _vae_of(pipe)
    if vae is None or not hasattr(vae, "enable_tiling") or getattr(vae, "use_tiling", False):
        return False
    vae.enable_tiling()
    return True


@contextlib.contextmanager
def _finite_vae(pipe, *, upcast: bool) -> Iterator[None]:
    """Within the block the VAE's decode raises NonFiniteOutput on NaN/inf, and with `upcast` runs in float32."""
    vae = _vae_of(pipe)
    if vae is None:
        yield
        return
    original = vae.decode
    shadowed = "decode" in vars(vae)  # someone's own instance attribute, put back afterwards

    def decode(latents, *args, **kwargs):
        dtype = vae.dtype
        if upcast and dtype != torch.float32:
            vae.to(torch.float32)
            try:
                out = original(latents.float(), *args, **kwargs)
            finally:
                vae.to(dtype)
        else:
            out = original(latents, *args, **kwargs)
        sample = out[0] if isinstance(out, tuple) else out.sample
        if not torch.isfinite(sample).all():
            raise NonFiniteOutput("the VAE decoded NaN or inf")
        if sample.dtype != dtype:
            sample = sample.to(dtype)
            out = (sample, *out[1:]) if isinstance(out, tuple) else type(out)(sample=sample)
        return out

    vae.decode = decode  # an instance attribute, under the cache lock; removed below
    try:
        yield
    finally:
        if shadowed:
            vae.decode = original
        else:
            del vae.decode


def _check_finite(output) -> None:
    """Latents handed on (output_type="latent") must be finite too."""
    images = getattr(output, "images", None)
    if isinstance(images, torch.Tensor) and not torch.isfinite(images).all():
        raise NonFiniteOutput("the pipeline produced NaN latents")
