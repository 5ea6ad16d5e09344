"""What a recipe read from a file may hold: every field checked against what the app itself writes.

A recipe becomes a script that people run (`python recipe.py`), so a PNG made elsewhere must not be
able to put code into it. Each field is checked for its type and against the catalog or a fixed set;
the script writer (engine/recipes/script.py) then emits every value as a Python literal, never as pasted text,
so these checks and the writer each stop an injection on their own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from engine.base.errors import shown_value
from engine.models.catalog import CATALOG, REPO_ID, get_spec, owner_models
from engine.models.loras import MAX_WEIGHT
from engine.models.owner import LORA_NAME
from engine.pipelines.schedulers import lookup

DTYPES = ("float32", "float16", "bfloat16")
MODEL_MODES = ("hub", "tiny")
MAX_TEXT = 20_000  # longest string value (prompts are capped far lower by the settings)
MAX_ITEMS = 64  # longest list (seeds, sweep batch, chain stages)
SEED_END = 2**64

_LOCAL_PATH = re.compile(r"/[A-Za-z0-9_./ +-]{1,500}")  # a tiny-mode twin folder
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]{0,99}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_PIPELINE = re.compile(r"[A-Z][A-Za-z0-9]{0,80}Pipeline")
_VERSION = re.compile(r"\d{1,4}(\.\d{1,4}){0,3}([a-z0-9.+-]{0,20})")
_DEVICE = re.compile(r"cpu|mps|cuda(:\d{1,2})?")
_SHA256 = re.compile(r"[0-9a-f]{64}")
INFINITY_TEXT = ("-Infinity", "Infinity")  # an infinite number in a recipe's JSON: [negative, positive]
INIT_DIGEST = "init_sha256"  # a recipe's extra: its init's content hash (engine.base.images.image_digest)


def fail(name: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"recipe field {name} must be {expected}, got {shown_value(value)}")


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise fail(name, value, "true or false")
    return value


def digest(name: str, value: Any) -> str:
    """An image's content hash as a recipe writes it (engine.base.images.image_digest)."""
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise fail(name, value, "64 hexadecimal digits (a SHA-256)")
    return value


def choice(name: str, value: Any, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise fail(name, value, f"one of {', '.join(sorted(choices))}")
    return value


def match(name: str, value: Any, pattern: re.Pattern, expected: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value:
        raise fail(name, value, expected)
    return value


def whole(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
        raise fail(name, value, f"a whole number in [{low}, {high})")
    return value


def text(name: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise fail(name, value, f"text of at most {MAX_TEXT:,} characters")
    return value


def _scalar(name: str, value: Any, *, nested: bool = True, infinite: bool = False) -> Any:
    """A plain JSON value: text, a finite number (or +-inf where `infinite`), true/false, null, or a short
    list of those."""
    if isinstance(value, list):
        if not nested or len(value) > MAX_ITEMS:
            raise fail(name, value, f"a plain value or a list of at most {MAX_ITEMS} plain values")
        return [_scalar(f"{name}[{i}]", item, nested=False) for i, item in enumerate(value)]
    if value is None or isinstance(value, bool):
        return value
    if infinite and isinstance(value, str) and value in INFINITY_TEXT:  # how the app writes them (standard JSON)
        return -math.inf if value == INFINITY_TEXT[False] else math.inf
    if isinstance(value, int | float):
        if infinite and isinstance(value, float) and math.isinf(value):  # older recipes wrote -Infinity bare
            return value
        if abs(value) >= SEED_END or not math.isfinite(value):  # the bound first: float(10**400) overflows
            raise fail(name, value, "a finite number")
        return value
    return text(name, value)


def mapping(name: str, value: Any, *, skip: tuple[str, ...] = (), infinite: bool = False) -> dict[str, Any]:
    """A dict of identifier keys and plain values (call parameters, a scheduler config)."""
    if not isinstance(value, dict) or len(value) > 200:
        raise fail(name, value, "an object of at most 200 plain values")
    checked = {}
    for key, item in value.items():
        if key in skip:
            continue
        match(f"{name} key", key, _IDENTIFIER, "an identifier")
        checked[key] = _scalar(f"{name}.{key}", item, infinite=infinite)
    return checked


def size(name: str, value: Any, *, optional: bool = False) -> tuple[int, int] | None:
    if value is None and optional:
        return None
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise fail(name, value, "[width, height]")
    return (whole(f"{name}[0]", value[0], 1, 65_537), whole(f"{name}[1]", value[1], 1, 65_537))


def listed(size: tuple[int, int] | None) -> list[int] | None:
    """A stage's size as the app writes it (a JSON list)."""
    return None if size is None else list(size)


def _lora(name: str, value: Any) -> dict[str, Any]:
    """A run's LoRA as the app records it: a name (a file's or an allowed repo id) and a weight."""
    if not isinstance(value, dict):
        raise fail(name, value, "an object with name and weight")
    lora_name = value.get("name")
    if not isinstance(lora_name, str) or not (LORA_NAME.fullmatch(lora_name) or REPO_ID.fullmatch(lora_name)):
        raise fail(f"{name}.name", lora_name, "a LoRA name")
    weight = value.get("weight")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not abs(weight) <= MAX_WEIGHT:
        raise fail(f"{name}.weight", weight, f"a number in [-{MAX_WEIGHT:g}, {MAX_WEIGHT:g}]")
    return {"name": lora_name, "weight": float(weight)}


def model(name: str, value: Any) -> str:
    """A catalog key or one of the owner's models (an allowed Hub repo is looked up as a visitor's would be)."""
    try:
        spec = get_spec(value) if isinstance(value, str) else None
    except ValueError:
        spec = None
    if spec is None:
        raise fail(name, value, f"one of {', '.join([*CATALOG, *owner_models().entries])}")
    return value


def owner_file_names() -> set[str]:
    """The file names of the owner's checkpoints (as recipes record them)."""
    return {Path(spec.file).name for spec in owner_models().entries.values() if spec.file}


def model_id(name: str, value: Any, mode: str) -> str:
    """A Hub repo id, in tiny mode an absolute path (the twin's folder), or the name of an owner's file."""
    if isinstance(value, str) and mode == "tiny" and _LOCAL_PATH.fullmatch(value) and ".." not in value:
        return value
    if isinstance(value, str) and value in owner_file_names():
        return value
    return match(name, value, REPO_ID, "a Hugging Face repo id (owner/name)")


def revision(name: str, value: Any) -> str | None:
    return None if value is None else match(name, value, _REVISION, "a branch, tag or commit")


@cache
def _schedulers() -> frozenset[str]:
    """The scheduler classes diffusers exports."""
    import diffusers

    return frozenset(name for name in dir(diffusers) if name.endswith("Scheduler") and name[0].isupper())


def _families() -> set[str]:
    return {spec.family for spec in CATALOG.values()}


def items(name: str, value: Any, *, required: bool = False) -> list:
    if not isinstance(value, list) or len(value) > MAX_ITEMS or (required and not value):
        raise fail(name, value, f"a list of {'1' if required else '0'} to {MAX_ITEMS} items")
    return value


@dataclass(frozen=True)
class RecipeShape:
    """What one workflow's recipes hold beyond the fields every recipe has: each workflow registers its own
    (engine.workflows.registry), so this module knows no workflow.

    Args:
        parameters: (the recipe's parameters, model mode) -> the workflow's own parameters, checked (a chain's
            stages); the rest of `parameters` is plain values, checked here.
        extra: (the recipe's extra, model mode, its seeds) -> the workflow's own extra fields, checked (a sweep
            cell's batch, a depth run's ControlNet); each one its script reads, the rest dropped.
        required: the parameters its script reads by name (a sweep cell's latents need the strength and the
            step count), so a recipe without one is refused naming it, not failed on when written out.
    """

    parameters: Callable[[dict[str, Any], str], dict[str, Any]] | None = None
    extra: Callable[[dict[str, Any], str, tuple[int, ...]], dict[str, Any]] | None = None
    required: tuple[str, ...] = ()


def _extra(value: Any, shape: RecipeShape, mode: str, seeds: tuple[int, ...]) -> dict[str, Any]:
    """The extra fields every workflow may write, then the workflow's own; each one the script reads is checked,
    the rest dropped."""
    if not isinstance(value, dict):
        raise fail("extra", value, "an object")
    extra: dict[str, Any] = {}
    if "index" in value:
        extra["index"] = whole("extra.index", value["index"], 0, max(1, len(seeds)))
    if "pipeline_calls" in value:
        extra["pipeline_calls"] = whole("extra.pipeline_calls", value["pipeline_calls"], 1, MAX_ITEMS + 1)
    if "family" in value:
        extra["family"] = choice("extra.family", value["family"], _families())
    if "scheduler_name" in value:  # None: the checkpoint's own scheduler
        name = value["scheduler_name"]
        if name is not None:  # older recipes wrote PNDM and KDPM2, which lookup knows
            name = lookup(name) if isinstance(name, str) else None
            if name is None:
                raise fail("extra.scheduler_name", value["scheduler_name"], "a scheduler name the app writes")
        extra["scheduler_name"] = name
    if INIT_DIGEST in value:
        extra[INIT_DIGEST] = digest(f"extra.{INIT_DIGEST}", value[INIT_DIGEST])
    if "loras" in value:
        extra["loras"] = [
            _lora(f"extra.loras[{i}]", item) for i, item in enumerate(items("extra.loras", value["loras"]))
        ]
    if shape.extra is not None:
        extra.update(shape.extra(value, mode, seeds))
    return extra


def validated_fields(data: dict[str, Any], shapes: Mapping[str, RecipeShape]) -> dict[str, Any]:
    """The Recipe fields of a recipe's JSON object, each checked (see module docstring); `shapes` are the
    registered workflows' own fields, by workflow name.

    Raises:
        ValueError: naming the first field that is not what the app writes, and its value.
    """
    workflow = choice("workflow", data.get("workflow"), shapes)
    shape = shapes[workflow]
    mode = choice("model_mode", data.get("model_mode", "hub"), MODEL_MODES)
    seeds = tuple(whole(f"seeds[{i}]", s, 0, SEED_END) for i, s in enumerate(items("seeds", data.get("seeds", []))))
    raw = data.get("parameters")
    own = shape.parameters(raw, mode) if shape.parameters is not None and isinstance(raw, dict) else {}
    parameters = {**mapping("parameters", raw, skip=tuple(own)), **own}
    missing = [name for name in shape.required if parameters.get(name) is None]
    if missing:
        raise ValueError(f"recipe parameters.{missing[0]} is missing: a {workflow} recipe's script needs it")
    return {
        "workflow": workflow,
        "model": model("model", data.get("model")),
        "model_id": model_id("model_id", data.get("model_id"), mode),
        "pipeline": match("pipeline", data.get("pipeline"), _PIPELINE, "a diffusers pipeline class name"),
        "scheduler": choice("scheduler", data.get("scheduler"), _schedulers()),
        # DPM-Solver's config holds lambda_min_clipped = -inf; the script never reads this config
        "scheduler_config": mapping("scheduler_config", data.get("scheduler_config", {}), infinite=True),
        "dtype": choice("dtype", data.get("dtype"), DTYPES),
        "generator_device": match("generator_device", data.get("generator_device"), _DEVICE, "cpu, cuda or mps"),
        "seeds": seeds,
        "parameters": parameters,
        "size": size("size", data.get("size")),
        "model_mode": mode,
        "revision": revision("revision", data.get("revision")),
        "weighted_prompt": flag("weighted_prompt", data.get("weighted_prompt", False)),
        "app_version": match("app_version", data.get("app_version", "0"), _VERSION, "a version number"),
        "extra": _extra(data.get("extra", {}), shape, mode, seeds),
    }
