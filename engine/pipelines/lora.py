"""LoRA: low-rank deltas the owner offers, applied per run with a weight (several at once).

The owner puts LoRA `.safetensors` files in STUDIO_LORA_DIR (each offered by its file name without the suffix)
or allows Hub repos in STUDIO_ALLOW_HUB_MODELS (offered by repo id, hub mode). A run names them with weights
(`check_loras`); `applied` loads each into the cached pipeline once with diffusers' PEFT integration
(`load_lora_weights(adapter_name=...)`), activates the run's set with `set_adapters`, and disables them after
the run, so the next run without them gets the base model's exact output without reloading it. Adapters stay
loaded for the next run that wants them; past MAX_LOADED per model the least recently used is deleted, and
`unload` drops them all.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator

from engine.base.errors import first_line, shown_value
from engine.models.catalog import LoraSpec, ModelSpec, owner_models
from engine.pipelines.graphs import ungraph_forward
from engine.pipelines.loading import ModelUnavailable
from engine.pipelines.speedups import denoisers

logger = logging.getLogger(__name__)

MAX_LORAS = 8  # LoRAs in one run
MAX_LOADED = 8  # adapters kept loaded per model
MAX_WEIGHT = 4.0  # |weight|; the web UI's sliders stop at 2, negative weights invert a LoRA

Choice = tuple[LoraSpec, float]


class LoraUnavailable(ModelUnavailable):
    """A LoRA could not be applied to a model (it was made for another family, or could not be read)."""


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
                f"{name}: the weight of {lora.name!r} must be in [-{MAX_WEIGHT:g}, {MAX_WEIGHT:g}], got {weight:g}"
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


# -- applying ----------------------------------------------------------------------------------------------


def _loaded(pipe) -> list[str]:
    return sorted({adapter for adapters in pipe.get_list_adapters().values() for adapter in adapters})


def _denoiser_adapters(pipe) -> list[str]:
    adapters = pipe.get_list_adapters()
    return [*adapters.get("unet", []), *adapters.get("transformer", [])]


def _order(pipe) -> list[str]:
    """The model's loaded adapters, least recently used first; kept on its denoiser, which every pipeline of the
    model shares."""
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    return denoiser.__dict__.setdefault("_studio_lora_order", [])


def _load(pipe, lora: LoraSpec, label: str, keep: set[str]) -> None:
    for module in denoisers(pipe):  # captured graphs would replay the layers without the new adapter
        ungraph_forward(module)
    order = _order(pipe)
    spare = [adapter for adapter in order if adapter not in keep]  # never one the run itself applies
    while len(order) >= MAX_LOADED and spare:
        adapter = spare.pop(0)
        order.remove(adapter)
        pipe.delete_adapters(adapter)
    try:  # a file on this disk (an allowed Hub repo's is in the Hugging Face cache: engine.models.owner.hub_lora)
        pipe.load_lora_weights(lora.source, adapter_name=lora.adapter)
    except (ValueError, RuntimeError, OSError, KeyError) as exc:
        if lora.adapter in _loaded(pipe):
            pipe.delete_adapters(lora.adapter)
        raise LoraUnavailable(f"LoRA {lora.name!r} could not be applied to {label}: {first_line(exc)}") from exc
    if lora.adapter not in _denoiser_adapters(pipe):
        if lora.adapter in _loaded(pipe):
            pipe.delete_adapters(lora.adapter)
        raise LoraUnavailable(
            f"LoRA {lora.name!r} has no weights for {label}'s denoiser: it was made for another model family"
        )
    order.append(lora.adapter)
    logger.info("loaded LoRA %s into %s", lora.name, label)


@contextlib.contextmanager
def applied(pipe, loras: tuple[Choice, ...], label: str) -> Iterator[None]:
    """The run's LoRAs active on `pipe` (loaded on first use) for the block, disabled after it.

    The caller holds the cache's lock: adapters live on modules every pipeline of the model shares.
    """
    if not loras:
        yield
        return
    order = _order(pipe)
    for lora, _ in loras:
        if lora.adapter not in _loaded(pipe):
            _load(pipe, lora, label, keep={chosen.adapter for chosen, _ in loras})
        elif lora.adapter in order:  # most recently used last
            order.remove(lora.adapter)
            order.append(lora.adapter)
    pipe.enable_lora()
    pipe.set_adapters([lora.adapter for lora, _ in loras], adapter_weights=[weight for _, weight in loras])
    try:
        yield
    finally:
        pipe.disable_lora()


def unload(pipe) -> list[str]:
    """Every LoRA taken out of a pipeline (the base weights stay loaded); the adapters removed."""
    adapters = _loaded(pipe)
    if adapters:
        pipe.unload_lora_weights()
    _order(pipe).clear()
    return adapters
