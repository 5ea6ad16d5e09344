"""LoRA: low-rank deltas the owner offers, applied per run with a weight (several at once).

The owner puts LoRA `.safetensors` files in STUDIO_LORA_DIR (each offered by its file name without the
suffix) or allows Hub repos in STUDIO_ALLOW_HUB_MODELS (offered by repo id, hub mode). A run names them with
weights (engine.models.loras: `check_loras`); `applied` loads each into the cached pipeline once with
diffusers' PEFT integration (`load_lora_weights(adapter_name=...)`), activates the run's set with
`set_adapters`, and disables them after the run, so the next run without them gets the base model's exact
output without reloading it. Adapters stay loaded for the next run that wants them; past MAX_LOADED per
model the least recently used is deleted, and `unload` drops them all.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from engine.base.errors import first_line
from engine.models.catalog import LoraSpec
from engine.models.loras import Choice
from engine.pipelines.graphs import ungraph_forward
from engine.pipelines.loading import ModelUnavailable
from engine.pipelines.speedups import denoisers

logger = logging.getLogger(__name__)

MAX_LOADED = 8  # adapters kept loaded per model


class LoraUnavailable(ModelUnavailable):
    """A LoRA could not be applied to a model (it was made for another family, or could not be read)."""


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
