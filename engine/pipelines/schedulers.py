"""Schedulers by the names people know them by: the AUTOMATIC1111 web UI's sampler names.

One table serves both directions: a name typed in a sweep, the Basic tab or a pasted infotext becomes
a diffusers scheduler class plus config overrides; a scheduler that ran (class and config) becomes the
name written into a PNG's `Sampler:` field, as the web UI names it (`DPM++ 2M Karras` and
`DPM++ 2M SDE` are one class with two configs, so the name is read from both).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any

from engine.base.errors import shown_value
from engine.models.catalog import get_spec
from engine.models.repos import repo_facts

# Web UI sampler name -> (diffusers class, config overrides), after diffusers' own mapping table
# (docs: "Schedulers", A1111/k-diffusion names).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "DDIM": ("DDIMScheduler", {}),
    "DDPM": ("DDPMScheduler", {}),
    "PLMS": ("PNDMScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    "DPM++ SDE": ("DPMSolverSinglestepScheduler", {}),
    "DPM++ SDE Karras": ("DPMSolverSinglestepScheduler", {"use_karras_sigmas": True}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 Karras": ("KDPM2DiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "DEIS": ("DEISMultistepScheduler", {}),
}
# Other spellings accepted on input: diffusers' names for the same samplers.
ALIASES = {"PNDM": "PLMS", "KDPM2": "DPM2", "DPM++ 2M a": "DPM++ 2M SDE"}


def _class(name: str):
    import diffusers

    return getattr(diffusers, name)


@functools.cache
def _defaults(class_name: str) -> dict[str, Any]:
    """The config defaults of a scheduler class (its __init__ keyword defaults)."""
    parameters = inspect.signature(_class(class_name).__init__).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _keys(class_name: str) -> set[str]:
    """The config keys that tell this class's names apart."""
    return {key for cls, overrides in SCHEDULERS.values() if cls == class_name for key in overrides}


# Schedulers the table has no entry for (no web UI sampler to pick), by the name Forge and ComfyUI write for them
OTHER_NAMES = {"FlowMatchEulerDiscreteScheduler": "Euler"}  # FLUX.1 and SD3.5: flow-matching Euler


def sampler_name(class_name: str, config: dict[str, Any]) -> str:
    """The web UI's name for a scheduler that ran: the entry whose class and distinguishing config
    values match exactly; the name other tools write (OTHER_NAMES), else the class name, where no web UI
    sampler of the table is that scheduler."""
    keys = _keys(class_name)
    if not keys and not any(cls == class_name for cls, _ in SCHEDULERS.values()):
        return OTHER_NAMES.get(class_name, class_name)
    defaults = _defaults(class_name)
    ran = {key: config.get(key, defaults.get(key)) for key in keys}
    for name, (cls, overrides) in SCHEDULERS.items():
        if cls == class_name and ran == {key: overrides.get(key, defaults.get(key)) for key in keys}:
            return name
    return OTHER_NAMES.get(class_name, class_name)


@functools.cache
def _names() -> dict[str, str]:
    """Every accepted spelling, lower-cased -> the table's name (built once: a sweep looks up every cell)."""
    names = {name.lower(): name for name in SCHEDULERS} | {alias.lower(): name for alias, name in ALIASES.items()}
    return names | {cls.lower(): name for name, (cls, overrides) in SCHEDULERS.items() if not overrides}


def lookup(value: object) -> str | None:
    """The table's name for a typed sampler or scheduler name (any case, aliases and class names too)."""
    return _names().get(str(value).strip().lower())


def schedulers_for(model: str) -> list[str]:
    """Sampler names that fit a model: their class is compatible with the model's own scheduler."""
    own = _class(get_spec(model).scheduler)
    compatible = set(own._compatibles) | {own.__name__}  # _compatibles holds class names
    return [name for name, (cls, _) in SCHEDULERS.items() if cls in compatible]


def denoising_steps(num_inference_steps: int, strength: float, model: str | None = None) -> int:
    """How many of the schedule's steps img2img keeps: diffusers' own `get_timesteps` arithmetic (0 is
    refused). `steps_run` counts the model calls, which a scheduler may add to.

    The UNet pipelines keep int(n x strength); SD3's and FLUX.1's skip int(n - n x strength) and keep the
    rest (4 steps at 0.95: 4, not 3), which their family says (`Family.keeps_partial_step`)."""
    n = num_inference_steps
    if model is not None and get_spec(model).adapter.keeps_partial_step:
        return n - int(max(n - n * strength, 0))
    return min(int(n * strength), n)


@functools.lru_cache(maxsize=1024)
def steps_run(model: str, num_inference_steps: int, strength: float = 1.0, scheduler: str | None = None) -> int:
    """Model calls per image of a run (strength 1: a full text-to-image or upscaler run), as the progress bar
    counts them: diffusers' `get_timesteps` on the scheduler's own timesteps. Most schedules have one
    timestep per step, so int(steps x strength); PNDM (SD 1.5's default) repeats one (41 of 50 at 0.8),
    second-order schedulers (Heun, DPM2) call the model twice per step."""
    n = int(num_inference_steps)
    kept = denoising_steps(n, strength, model)
    try:
        config = repo_facts(get_spec(model).hub_id).config("scheduler/scheduler_config.json")
    except ValueError:
        config = None
    if config is None or kept < 1:
        return kept
    class_name, overrides = SCHEDULERS[scheduler] if scheduler else (config["_class_name"], {})
    instance = _class(class_name).from_config(config, **overrides)
    # FLUX.1 dev shifts its schedule by the image size (`mu`); the count of timesteps does not depend on it
    instance.set_timesteps(n, **({"mu": 1.0} if config.get("use_dynamic_shifting") else {}))
    return len(instance.timesteps) - (n - kept) * instance.order


def steps_text(model: str, num_inference_steps: int, strength: float = 1.0, scheduler: str | None = None) -> str:
    """The plan's sentence for a run's step count, with the arithmetic when the scheduler adds calls."""
    n = int(num_inference_steps)
    kept = denoising_steps(n, strength, model)
    run = steps_run(model, n, strength, scheduler)
    formula = f"int({n} × {strength:g}) = {kept}" if strength != 1 else f"{n}"
    if strength != 1 and get_spec(model).adapter.keeps_partial_step:
        formula = f"{n} − int({n} − {n} × {strength:g}) = {kept}"
    if run == kept:
        return f"**{run}** of {n} steps will run: {formula}." if strength != 1 else f"**{run}** steps will run."
    name = scheduler or get_spec(model).scheduler.removesuffix("Scheduler")
    return f"**{run}** denoising steps will run: {formula} of the {n}-step schedule; {name} makes it {run}."


def check_scheduler(value: object, model: str, *, name: str = "scheduler") -> str | None:
    """A scheduler for `model` by name; empty means the model's own (None).

    Raises:
        ValueError: an unknown name or one that does not fit the model, listing those that do.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    found = lookup(value) if isinstance(value, str) else None
    fitting = schedulers_for(model)
    if found is None or found not in fitting:
        raise ValueError(
            f"{name} {shown_value(value)} does not fit model {shown_value(model)}; choose from {', '.join(fitting)}"
        )
    return found


@contextlib.contextmanager
def swapped_scheduler(pipe, name: str | None, lock):
    """Use the named scheduler for one call, built from the pipeline's own config (so the checkpoint's
    betas and timestep spacing carry over); the cached pipeline gets its own back afterwards."""
    if name is None:
        yield
        return
    from engine.pipelines.calls import denoiser_of  # here, not on top: the scheduler checks import no torch

    target = denoiser_of(pipe)
    class_name, overrides = SCHEDULERS[name]
    with lock:
        original = target.scheduler
        target.scheduler = _class(class_name).from_config(original.config, **overrides)
        try:
            yield
        finally:
            target.scheduler = original
