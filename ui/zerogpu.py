"""ZeroGPU: the engine's GPU work runs in `spaces.GPU` calls, each asking for the seconds its plan needs.

On a ZeroGPU Space (engine.hosting.on_zero_gpu) `attach(engine)` makes the engine send every run and every
depth estimate through three wrapped functions (every tab, API endpoint and MCP tool reaches the GPU
only through Engine.run and Engine.estimate_depth, so nothing else changes):

* a Basic run, one result: a plain function, so the worker's progress bar reaches the page;
* Sweep, Chain and Depth runs: a generator, so each cell, stage or image reaches the page as it is made;
* a depth estimate (the Depth tab's Estimate button).

Each asks ZeroGPU for `engine.gpu_seconds(plan)`: the plan's denoising loops sized by engine.hosting. A
plan past STUDIO_GPU_SECONDS_MAX is refused before it is queued, with the estimate and what to change.
The call runs in a forked worker: plans, images and progress objects cross as pickles, and Stop takes
effect when the call ends (the worker cannot see the page's Stop). Off ZeroGPU nothing here is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from engine.core import Engine
from engine.workflows.registry import workflow_of
from ui.events import gradio_progress

PROGRESS_TEXT = "Denoising on ZeroGPU"


class ZeroGpuCalls:
    """The engine's GPU work as ZeroGPU calls (engine.core.GpuCalls).

    Args:
        engine: the engine whose work runs in the calls.
        gpu: `spaces.GPU`; tests pass a decorator that records what it wraps and the durations asked.
    """

    def __init__(self, engine: Engine, gpu: Callable[..., Callable]) -> None:
        self.engine = engine
        self.concurrency: int | None = None  # each call gets a GPU slice: ZeroGPU's scheduler queues them, not the app
        self.where = engine.device_text
        self._once = gpu(duration=engine.gpu_seconds)(self._run_to_end)
        self._stream = gpu(duration=engine.gpu_seconds)(self._run_streaming)
        self._depth = gpu(duration=engine.depth_seconds)(self._estimate)

    def run(self, plan: Any, progress: Any = None, cancel: Any = None) -> Iterator[Any]:
        """The worker reports progress to the page itself; Stop takes effect when the call ends."""
        if workflow_of(plan).streams:
            yield from self._stream(plan)
        else:
            yield from self._once(plan)

    def depth(self, key: str, image) -> Any:
        return self._depth(key, image)

    # What the worker runs (on the GPU it was lent). Its progress goes to the page through Gradio's
    # context, which the spaces package carries into the worker.

    def _run_to_end(self, plan: Any) -> list[Any]:
        return list(self.engine.run_here(plan, progress=gradio_progress(gr.Progress(), PROGRESS_TEXT)))

    def _run_streaming(self, plan: Any) -> Iterator[Any]:
        yield from self.engine.run_here(plan, progress=gradio_progress(gr.Progress(), PROGRESS_TEXT))

    def _estimate(self, key: str, image) -> Any:
        return self.engine.depth_array(key, image, here=True)


def attach(engine: Engine, gpu: Callable[..., Callable] | None = None) -> ZeroGpuCalls:
    """Run the engine's GPU work in ZeroGPU calls (`gpu`: spaces.GPU unless given)."""
    if gpu is None:
        gpu = importlib.import_module("spaces").GPU
    calls = ZeroGpuCalls(engine, gpu)
    engine.gpu_calls = calls
    return calls
