"""What a recipe read from a file may hold: every field checked against what the app itself writes.

A recipe becomes a script that people run (`python recipe.py`), so a PNG made elsewhere must not be
able to put code into it. Each field is checked for its type and against the catalog or a fixed set;
the script writer (engine/script.py) then emits every value as a Python literal, never as pasted text,
so these checks and the writer each stop an injection on their own.
"""

from __future__ import annotations

import math
import re
from functools import cache
from typing import Any

from engine.catalog import CATALOG, REPO_ID, get_spec, owner_models
from engine.errors import shown_value
from engine.lora import MAX_WEIGHT
from engine.owner import LORA_NAME

DTYPES = ("float32", "float16", "bfloat16")
MODEL_MODES = ("hub", "tiny")
HANDOVERS = ("latent", "image")
MAX_TEXT = 20_000  # longest string value (prompts are capped far lower by the settings)
MAX_ITEMS = 64  # longest list (seeds, sweep batch, chain stages)
SEED_END = 2**64

_LOCAL_PATH = re.compile(r"/[A-Za-z0-9_./ +-]{1,500}")  # a tiny-mode twin folder
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]{0,99}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_PIPELINE = re.compile(r"[A-Z][A-Za-z0-9]{0,80}Pipeline")
_VERSION = re.compile(r"\d{1,4}(\.\d{1,4}){0,3}([a-z0-9.+-]{0,20})")
_DEVICE = re.compile(r"cpu|mps|cuda(:\d{1,2})?")


def _fail(name: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"recipe field {name} must be {expected}, got {shown_value(value)}")


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, value, "true or false")
    return value


def _choice(name: str, value: Any, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _fail(name, value, f"one of {', '.join(sorted(choices))}")
    return value


def _match(name: str, value: Any, pattern: re.Pattern, expected: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value:
        raise _fail(name, value, expected)
    return value


def _int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
        raise _fail(name, value, f"a whole number in [{low}, {high})")
    return value


def _text(name: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _fail(name, value, f"text of at most {MAX_TEXT:,} characters")
    return value


def _scalar(name: str, value: Any, *, nested: bool = True, infinite: bool = False) -> Any:
    """A plain JSON value: text, a finite number (or +-inf where `infinite`), true/false, null, or a short
    list of those."""
    if isinstance(value, list):
        if not nested or len(value) > MAX_ITEMS:
            raise _fail(name, value, f"a plain value or a list of at most {MAX_ITEMS} plain values")
        return [_scalar(f"{name}[{i}]", item, nested=False) for i, item in enumerate(value)]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if infinite and isinstance(value, float) and math.isinf(value):
            return value
        if abs(value) >= SEED_END or not math.isfinite(value):  # the bound first: float(10**400) overflows
            raise _fail(name, value, "a finite number")
        return value
    return _text(name, value)


def _mapping(name: str, value: Any, *, skip: tuple[str, ...] = (), infinite: bool = False) -> dict[str, Any]:
    """A dict of identifier keys and plain values (call parameters, a scheduler config)."""
    if not isinstance(value, dict) or len(value) > 200:
        raise _fail(name, value, "an object of at most 200 plain values")
    checked = {}
    for key, item in value.items():
        if key in skip:
            continue
        _match(f"{name} key", key, _IDENTIFIER, "an identifier")
        checked[key] = _scalar(f"{name}.{key}", item, infinite=infinite)
    return checked


def _size(name: str, value: Any, *, optional: bool = False) -> tuple[int, int] | None:
    if value is None and optional:
        return None
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _fail(name, value, "[width, height]")
    return (_int(f"{name}[0]", value[0], 1, 65_537), _int(f"{name}[1]", value[1], 1, 65_537))


def _listed(size: tuple[int, int] | None) -> list[int] | None:
    """A stage's size as the app writes it (a JSON list)."""
    return None if size is None else list(size)


def _lora(name: str, value: Any) -> dict[str, Any]:
    """A run's LoRA as the app records it: a name (a file's or an allowed repo id) and a weight."""
    if not isinstance(value, dict):
        raise _fail(name, value, "an object with name and weight")
    lora_name = value.get("name")
    if not isinstance(lora_name, str) or not (LORA_NAME.fullmatch(lora_name) or REPO_ID.fullmatch(lora_name)):
        raise _fail(f"{name}.name", lora_name, "a LoRA name")
    weight = value.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not abs(weight) <= MAX_WEIGHT:
        raise _fail(f"{name}.weight", weight, f"a number in [-{MAX_WEIGHT:g}, {MAX_WEIGHT:g}]")
    return {"name": lora_name, "weight": float(weight)}


def _model(name: str, value: Any) -> str:
    """A catalog key or one of the owner's models (an allowed Hub repo is looked up as a visitor's would be)."""
    try:
        spec = get_spec(value) if isinstance(value, str) else None
    except ValueError:
        spec = None
    if spec is None:
        raise _fail(name, value, f"one of {', '.join([*CATALOG, *owner_models().entries])}")
    return value


def _model_id(name: str, value: Any, mode: str) -> str:
    """A Hub repo id, in tiny mode an absolute path (the twin's folder), or the path of an owner's file."""
    if isinstance(value, str) and mode == "tiny" and _LOCAL_PATH.fullmatch(value) and ".." not in value:
        return value
    if isinstance(value, str) and any(spec.file == value for spec in owner_models().entries.values()):
        return value
    return _match(name, value, REPO_ID, "a Hugging Face repo id (owner/name)")


def _revision(name: str, value: Any) -> str | None:
    return None if value is None else _match(name, value, _REVISION, "a branch, tag or commit")


@cache
def _schedulers() -> frozenset[str]:
    """The scheduler classes diffusers exports."""
    import diffusers

    return frozenset(name for name in dir(diffusers) if name.endswith("Scheduler") and name[0].isupper())


def _workflows() -> tuple[str, ...]:
    """The registered workflows' names (engine.workflows: its modules import engine.recipe, which imports this)."""
    from engine.workflows import WORKFLOWS

    return tuple(WORKFLOWS)


def _families() -> set[str]:
    return {spec.family for spec in CATALOG.values()}


def _stage(name: str, value: Any, mode: str) -> dict[str, Any]:
    from engine.chain import KINDS  # engine.chain imports engine.recipe, which imports this module

    if not isinstance(value, dict):
        raise _fail(name, value, "an object")
    receives = value.get("receives")
    return {
        "model": _model(f"{name}.model", value.get("model")),
        "model_id": _model_id(f"{name}.model_id", value.get("model_id"), mode),
        "revision": _revision(f"{name}.revision", value.get("revision")),
        "kind": _choice(f"{name}.kind", value.get("kind"), KINDS),
        "receives": None if receives is None else _choice(f"{name}.receives", receives, HANDOVERS),
        "input_size": _listed(_size(f"{name}.input_size", value.get("input_size"), optional=True)),
        "call": _mapping(f"{name}.call", value.get("call")),
    }


def _batch_cell(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(name, value, "an object")
    guidance = value.get("guidance_scale")
    if isinstance(guidance, bool) or not isinstance(guidance, int | float) or not 0 <= guidance <= 1000:
        raise _fail(f"{name}.guidance_scale", guidance, "a number in [0, 1000]")
    return {
        "prompt": _text(f"{name}.prompt", value.get("prompt")),
        "negative_prompt": _text(f"{name}.negative_prompt", value.get("negative_prompt"), optional=True),
        "seed": _int(f"{name}.seed", value.get("seed"), 0, SEED_END),
        "guidance_scale": guidance,
    }


def _list(name: str, value: Any, *, required: bool = False) -> list:
    if not isinstance(value, list) or len(value) > MAX_ITEMS or (required and not value):
        raise _fail(name, value, f"a list of {'1' if required else '0'} to {MAX_ITEMS} items")
    return value


def _extra(value: Any, workflow: str, mode: str, seeds: tuple[int, ...]) -> dict[str, Any]:
    """The workflow-specific fields; each one the script reads is checked, the rest dropped."""
    from engine.schedulers import lookup

    if not isinstance(value, dict):
        raise _fail("extra", value, "an object")
    extra: dict[str, Any] = {}
    if "index" in value:
        extra["index"] = _int("extra.index", value["index"], 0, max(1, len(seeds)))
    if "pipeline_calls" in value:
        extra["pipeline_calls"] = _int("extra.pipeline_calls", value["pipeline_calls"], 1, MAX_ITEMS + 1)
    if "family" in value:
        extra["family"] = _choice("extra.family", value["family"], _families())
    if "scheduler_name" in value:  # None: the checkpoint's own scheduler
        name = value["scheduler_name"]
        if name is not None:  # older recipes wrote PNDM and KDPM2, which lookup knows
            name = lookup(name) if isinstance(name, str) else None
            if name is None:
                raise _fail("extra.scheduler_name", value["scheduler_name"], "a scheduler name the app writes")
        extra["scheduler_name"] = name
    if "loras" in value:
        extra["loras"] = [
            _lora(f"extra.loras[{i}]", item) for i, item in enumerate(_list("extra.loras", value["loras"]))
        ]
    if workflow == "sweep":
        batch = _list("extra.batch", value.get("batch"), required=True)
        extra["batch"] = [_batch_cell(f"extra.batch[{i}]", cell) for i, cell in enumerate(batch)]
        extra["position"] = _int("extra.position", value.get("position"), 0, len(batch))
    if workflow == "depth":
        extra["controlnet"] = _choice("extra.controlnet", value.get("controlnet"), CATALOG)
        extra["controlnet_id"] = _model_id("extra.controlnet_id", value.get("controlnet_id"), mode)
        extra["depth_source"] = _text("extra.depth_source", value.get("depth_source", ""))
        for flag in ("invert_depth", "normalize_depth"):
            extra[flag] = _flag(f"extra.{flag}", value.get(flag, False))
    return extra


def validated_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The Recipe fields of a recipe's JSON object, each checked (see module docstring).

    Raises:
        ValueError: naming the first field that is not what the app writes, and its value.
    """
    workflow = _choice("workflow", data.get("workflow"), _workflows())
    mode = _choice("model_mode", data.get("model_mode", "hub"), MODEL_MODES)
    seeds = tuple(_int(f"seeds[{i}]", s, 0, SEED_END) for i, s in enumerate(_list("seeds", data.get("seeds", []))))
    parameters = _mapping("parameters", data.get("parameters"), skip=("stages",))
    if workflow == "chain":
        stages = _list("parameters.stages", data["parameters"].get("stages"), required=True)
        parameters["stages"] = [_stage(f"parameters.stages[{i}]", stage, mode) for i, stage in enumerate(stages)]
    return {
        "workflow": workflow,
        "model": _model("model", data.get("model")),
        "model_id": _model_id("model_id", data.get("model_id"), mode),
        "pipeline": _match("pipeline", data.get("pipeline"), _PIPELINE, "a diffusers pipeline class name"),
        "scheduler": _choice("scheduler", data.get("scheduler"), _schedulers()),
        # DPM-Solver's config holds lambda_min_clipped = -inf; the script never reads this config
        "scheduler_config": _mapping("scheduler_config", data.get("scheduler_config", {}), infinite=True),
        "dtype": _choice("dtype", data.get("dtype"), DTYPES),
        "generator_device": _match("generator_device", data.get("generator_device"), _DEVICE, "cpu, cuda or mps"),
        "seeds": seeds,
        "parameters": parameters,
        "size": _size("size", data.get("size")),
        "model_mode": mode,
        "revision": _revision("revision", data.get("revision")),
        "weighted_prompt": _flag("weighted_prompt", data.get("weighted_prompt", False)),
        "app_version": _match("app_version", data.get("app_version", "0"), _VERSION, "a version number"),
        "extra": _extra(data.get("extra", {}), workflow, mode, seeds),
    }
