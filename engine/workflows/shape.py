"""One shape for every workflow.

    request --validate(settings)--> plan --run(plan, context)--> progress, progress, ...

* A **request** is a frozen dataclass of what the user asked for, as typed (strings, None for the
  model's default). Its one `validate(settings)` checks every value before any work and returns the
  plan, or raises ValueError naming the parameter and the value.
* A **plan** holds resolved values only: the catalog entry, the working-size image, the seeds, the
  steps that will run. The UI previews it (the plan line under each run button) before anything loads.
* **run(plan, context)** yields progress objects as work finishes (a cell, a stage, an image). A
  `RunContext` carries what every run shares: the pipeline cache, the settings, the step reporter
  (progress bar, Stop, a closed page) and how recipes name models.
* **Stop** is one thing everywhere: the reporter raises GenerationCancelled at the next denoising step,
  and `stoppable` turns it into the progress so far with `stopped` set, yielded last.

* **parts(plan)** splits a plan into independent plans (a sweep's pipeline calls) and **gather** takes
  their results back in order: the Ray Serve backend (engine.scale_out) fans them out across replicas.
* **work(plan)** lists the denoising loops a plan will run (`GpuWork`), before any of them runs: a
  ZeroGPU call asks for the seconds they need (engine.hosting).

engine.workflows.registry registers each workflow (name, request and plan types, run, work, script writer) for the
Engine, the recipe checks and the script export.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from engine.pipelines.calls import GenerationCancelled, NonFiniteOutput, OutOfMemory, StepReporter
from engine.pipelines.loading import ModelUnavailable
from engine.recipes.schema import RecipeShape

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from engine.base.settings import Settings
    from engine.pipelines.cache import PipelineCache
    from engine.recipes.recipe import Recipe


@dataclass(frozen=True)
class RunContext:
    """What a running workflow uses besides its plan.

    Args:
        cache: the pipelines (loaded lazily, shared, evicted by budget).
        settings: the limits, for work validated while running (a depth restyle's image).
        reporter: counts steps, reports progress, raises GenerationCancelled on Stop; one per run.
        model_id: the id a recipe records for a catalog key (Hub id, or the twin's folder).
        model_mode: "hub" or "tiny", as recipes record it.
        estimate: depth maps by estimator key (the Engine's remembers recent ones); None: uncached.
    """

    cache: PipelineCache
    settings: Settings
    reporter: StepReporter = field(default_factory=StepReporter)
    model_id: Callable[[str], str] = str
    model_mode: str = "tiny"
    estimate: Callable[[str, Image.Image], np.ndarray] | None = None


class Stoppable(Protocol):
    stopped: str | None


class Failable(Protocol):
    failed: str | None


def failure_text(exc: Exception) -> str:
    """Why a part of a run failed, for the person who asked: the message of a fault the app words (out of memory,
    NaN, a model that cannot load, bad input), else that the app failed inside (logged here with its traceback)."""
    if isinstance(exc, OutOfMemory | NonFiniteOutput | ModelUnavailable | ValueError):
        return str(exc)
    logger.error("a run failed part-way; what it finished is kept", exc_info=exc)
    return f"something went wrong inside the app ({type(exc).__name__}); the server logged it"


F = TypeVar("F", bound=Failable)


def keeps_finished(progress: F, steps: Iterator[F], where: Callable[[F], str | None]) -> Iterator[F]:
    """A workflow's progress; a failure after some of its parts finished ends it with `progress.failed` set (the
    failed part, `where(progress)`, and why), yielded last, so the finished parts are kept, as on Stop. A failure
    before any part finished (`where` gives None) is raised as it is. Stop passes through."""
    try:
        yield from steps
    except GenerationCancelled:
        raise
    except Exception as exc:
        part = where(progress)
        if part is None:
            raise
        progress.failed = f"{part} failed: {failure_text(exc)}"
        yield progress


P = TypeVar("P", bound=Stoppable)


def stoppable(progress: P, steps: Iterator[P]) -> Iterator[P]:
    """A workflow's progress; Stop (GenerationCancelled) ends it with `progress.stopped` set, yielded last.

    `steps` updates `progress` in place and yields it; what it finished before the Stop stays in it.
    """
    try:
        yield from steps
    except GenerationCancelled as stopped:
        progress.stopped = str(stopped)
        yield progress


@dataclass(frozen=True)
class GpuWork:
    """One denoising loop a plan will run: which model, how many steps, on how much image.

    Args:
        key: the catalog key of the model whose denoiser runs (its family sets the cost of a step).
        steps: denoiser calls, as the progress bar counts them.
        pixels: output pixels of one image.
        images: images denoised together in each step (a batch, or the seeds of a Basic run).
    """

    key: str
    steps: int
    pixels: int
    images: int = 1


@dataclass(frozen=True)
class Workflow:
    """One registered workflow.

    Args:
        name: as recipes name it (Recipe.workflow).
        request: the request type; `request.validate(settings)` returns a `plan`.
        plan: the plan type.
        run: (plan, context) -> progress objects; a Basic run yields its one result.
        work: plan -> the denoising loops it will run (what a GPU call is sized by).
        script: a recipe of this workflow -> the runnable diffusers script (engine.recipes.script's helpers).
        streams: its progress is worth showing as it comes (False: one result at the end).
        start: plan -> its progress before any work (what a Stop before the first result gives); None for a
            workflow with one result (Basic: a Stop raises GenerationCancelled).
        parts: plan -> independent plans that together make it (a sweep: one per pipeline call), which a
            backend with several workers runs side by side; None: the plan runs whole.
        gather: (progress, a finished part's last progress) -> None: the part's work taken into `progress`
            (made by `start`), parts gathered in their order.
        recipe: what its recipes hold beyond every recipe's fields, checked when a recipe is read (a sweep
            cell's batch, a chain's stages); the recipe layer knows no workflow.
        reads_init: recipe -> whether its script reads an init image (a chain from text does not).
        reads_files: recipe -> the files its script reads after the init, by their download names (an inpaint's
            mask.png).
    """

    name: str
    request: type
    plan: type
    run: Callable[[Any, RunContext], Iterator[Any]]
    work: Callable[[Any], list[GpuWork]]
    script: Callable[[Recipe], str]
    streams: bool = True
    start: Callable[[Any], Any] | None = None
    parts: Callable[[Any], list[Any]] | None = None
    gather: Callable[[Any, Any], None] | None = None
    recipe: RecipeShape = field(default_factory=RecipeShape)
    reads_init: Callable[[Recipe], bool] = lambda recipe: True  # every workflow's script but a text chain's
    reads_files: Callable[[Recipe], tuple[str, ...]] = lambda recipe: ()
