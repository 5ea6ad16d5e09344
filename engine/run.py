"""One pipeline call: seeds to generators, progress and cancel through callback_on_step_end.

Every workflow (Basic, sweep, chain, depth) calls pipelines through `call_pipeline`, so seeding,
progress, cancellation and the cache lock behave the same everywhere.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

# progress(steps done, steps total); total may grow as later stages start
ProgressFn = Callable[[int, int], None]


class GenerationCancelled(Exception):
    """The user pressed Stop; raised out of the pipeline at the next step boundary."""

    def __init__(self, steps_done: int) -> None:
        super().__init__(f"stopped by the user after {steps_done} denoising step(s)")
        self.steps_done = steps_done


class CancelToken:
    """A per-session Stop flag. Copies are fresh tokens, so Gradio's per-session State gets its own."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    def reset(self) -> None:
        self._event.clear()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def __deepcopy__(self, memo: dict) -> CancelToken:
        return CancelToken()


def denoiser_of(pipe):
    """The pipeline that owns the denoising UNet and scheduler (a combined pipeline's decoder)."""
    return getattr(pipe, "decoder_pipe", pipe)


def make_generators(seeds: Sequence[int], device: str) -> list[torch.Generator]:
    """One generator per image, so image i of a batch equals a single run with seeds[i]."""
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]


@dataclass
class StepReporter:
    """callback_on_step_end that counts steps, reports progress and raises on cancel.

    One reporter can span several pipeline calls of a job (one per seed, per sweep cell...): call
    `start_call(calls_left)` before each, and the bar runs on from where the last call ended.
    """

    progress: ProgressFn | None = None
    cancel: CancelToken | None = None
    steps: int = 0  # every step of every call so far
    calls: int = 0
    _call_start: int = 0
    _calls_left: int = 1

    def start_call(self, calls_left: int = 1) -> None:
        self._call_start = self.steps
        self._calls_left = max(1, calls_left)
        self.calls += 1

    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        self.steps += 1
        if self.progress is not None:
            in_call = self.steps - self._call_start
            per_call = max(getattr(pipe, "num_timesteps", None) or in_call, in_call)
            self.progress(self.steps, self._call_start + per_call * self._calls_left)
        if self.cancel is not None and self.cancel.cancelled:
            raise GenerationCancelled(self.steps)
        return callback_kwargs


def step_callback_kwargs(pipe, reporter: StepReporter) -> dict:
    """The reporter as `callback_on_step_end`, or as the legacy `callback` for pipelines that only take that
    (the x2 and x4 upscalers)."""
    parameters = inspect.signature(type(pipe).__call__).parameters
    if "callback_on_step_end" in parameters:
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
    generator_device: str,
    lock: threading.RLock,
    reporter: StepReporter | None = None,
    generators: list[torch.Generator] | None = None,
):
    """Call `pipe(**kwargs)` under the cache lock with per-image generators and the step callback.

    `generators` are used as given when a caller has already drawn from them (the sweep draws each
    cell's init-latent sample first, as the pipeline would). Returns the pipeline's output object.
    Raises GenerationCancelled when the token is set.
    """
    reporter = reporter or StepReporter()
    if reporter.calls == 0:
        reporter.start_call()
    call = dict(kwargs)
    call["generator"] = generators if generators is not None else make_generators(seeds, generator_device)
    call.update(step_callback_kwargs(pipe, reporter))
    with lock:
        if reporter.cancel is not None and reporter.cancel.cancelled:
            raise GenerationCancelled(reporter.steps)
        with torch.inference_mode():
            return pipe(**call)
