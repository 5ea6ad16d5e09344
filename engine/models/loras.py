"""The owner's LoRAs as a run names them: checked against what the owner offers, each with a finite weight, for
a model whose family takes them; written back as text and kept in recipes. No torch here: applying them to a
pipeline is engine.pipelines.lora's business.
"""

from __future__ import annotations

import math

from engine.base.errors import shown_number, shown_value
from engine.models.catalog import LoraSpec, ModelSpec, owner_models

MAX_LORAS = 8  # LoRAs in one run
MAX_WEIGHT = 4.0  # |weight|; the web UI's sliders stop at 2, negative weights invert a LoRA

Choice = tuple[LoraSpec, float]


def offered() -> list[str]:
    """The names of the LoRAs offered so far (files, and allowed Hub repos already named)."""
    return list(owner_models().loras)


def _pairs(value: object, name: str) -> list[tuple[object, object]]:
    """(name, weight) pairs from `a:0.8, b`, [["a", 0.8]], [{"name": "a", "weight": 0.8}] or ["a"]."""
    if value is None or value == "" or value == () or value == []:
        return []
    if isinstance(value, str):
        pairs: list[tuple[object, object]] = []
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            head, sep, tail = item.rpartition(":")
            try:
                pairs.append((head.strip(), float(tail)) if sep else (item, 1.0))
            except ValueError:
                pairs.append((item, 1.0))  # a name with a colon and no weight
        return pairs
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be text like 'my-style:0.8, other:0.5' or a list of [name, weight]")
    pairs = []
    for item in value:
        if isinstance(item, str):
            pairs.append((item, 1.0))
        elif isinstance(item, dict):
            pairs.append((item.get("name"), item.get("weight", 1.0)))
        elif isinstance(item, list | tuple) and len(item) == 2:
            pairs.append((item[0], item[1]))
        else:
            raise ValueError(f"{name} holds {shown_value(item)}; give [name, weight] pairs")
    return pairs


def check_loras(value: object, spec: ModelSpec, *, name: str = "loras") -> tuple[Choice, ...]:
    """The LoRAs a run asks for, each offered by the owner with a finite weight, for a model that takes them.

    Raises:
        ValueError: naming the parameter and the value: an unknown name (listing the offered ones), a weight out
            of range, a name twice, too many, or a model family that takes no LoRA.
    """
    pairs = _pairs(value, name)
    if not pairs:
        return ()
    if not spec.adapter.takes_lora:
        raise ValueError(f"{name} cannot be used with {spec.label}: its pipeline takes no LoRA")
    if len(pairs) > MAX_LORAS:
        raise ValueError(f"{name} names {len(pairs)} LoRAs; at most {MAX_LORAS} apply to one run")
    chosen: list[Choice] = []
    for lora_name, weight in pairs:
        lora = _lookup(lora_name, name)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise ValueError(f"{name}: the weight of {lora.name!r} must be a finite number, got {shown_value(weight)}")
        if abs(weight) > MAX_WEIGHT:
            raise ValueError(
                f"{name}: the weight of {lora.name!r} must be in [-{MAX_WEIGHT:g}, {MAX_WEIGHT:g}], "
                f"got {shown_number(weight)}"
            )
        if any(lora == seen for seen, _ in chosen):
            raise ValueError(f"{name} names {lora.name!r} twice; give it once with one weight")
        chosen.append((lora, float(weight)))
    return tuple(chosen)


def _lookup(lora_name: object, name: str) -> LoraSpec:
    owner = owner_models()
    lora = None
    if isinstance(lora_name, str):
        try:
            lora = owner.lora(lora_name)
        except ValueError as exc:  # an allowed Hub repo that cannot be used here
            raise ValueError(f"{name}: {exc}") from None
    if lora is None:
        names = ", ".join(owner.loras) or "none (the owner sets STUDIO_LORA_DIR)"
        raise ValueError(f"{name}: {shown_value(lora_name)} is not an offered LoRA; offered: {names}")
    return lora


def text(loras: tuple[Choice, ...] | list[dict]) -> str:
    """`name:0.8, other:0.5`, the form the Basic field takes and `check_loras` reads."""
    pairs = [(item["name"], item["weight"]) if isinstance(item, dict) else (item[0].name, item[1]) for item in loras]
    return ", ".join(f"{lora_name}:{weight:g}" for lora_name, weight in pairs)


def recorded(loras: tuple[Choice, ...]) -> list[dict]:
    """What a recipe keeps of a run's LoRAs: names and weights (the source is looked up again when replayed)."""
    return [{"name": lora.name, "weight": weight} for lora, weight in loras]
