"""PipelineCache: lazy loading, kinds derived with from_pipe, LRU under a memory budget, one lock.

One set of weights per catalog key. The first `get(key, kind)` loads it; a later `get` for another kind
(text2img after img2img, say) derives that pipeline from the loaded one with
`AutoPipelineFor*.from_pipe(pipe, dtype=pipe.dtype)`, sharing every weight. The dtype is always passed
(`dtype`, diffusers 0.42's name for `torch_dtype`): without it diffusers casts the shared weights to
float32 (diffusers issue 12754). An entry whose kinds lack img2img (an upscaler, SD 1.5's dedicated 9-channel
inpainting checkpoint) has one kind, and that kind is what loads from its repository: nothing is derived for it.

What the cache asks of other modules: where and in which dtype a model runs (engine.pipelines.device), how it
is loaded and what a failed load says (engine.pipelines.loading), and the speed-ups the policy asks for
(engine.pipelines.speedups).
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.base.forks import renew_after_fork
from engine.models.catalog import ModelSpec, get_spec
from engine.pipelines.device import DevicePolicy, auto_offload, free_memory, model_dtype, module_bytes
from engine.pipelines.graphs import ungraph_forward
from engine.pipelines.loading import (
    ModelUnavailable,
    _auto_pipeline_class,
    load_options,
    quiet_expected_pickle_fallback,
    unavailable_message,
)
from engine.pipelines.speedups import apply_graphs, apply_speedups, denoisers

logger = logging.getLogger(__name__)


@dataclass
class _Weights:
    """One checkpoint in memory and the pipelines of each kind built on it."""

    key: str
    pipes: dict[str, Any] = field(default_factory=dict)  # kind -> diffusers pipeline (untyped)
    nbytes: int = 0
    placement: str = "cpu"  # cpu | cuda | model-offload | sequential-offload
    loaded_in_s: float = 0.0


CONTROLNET_PREFIX = "controlnet-img2img:"  # kind of a base's pipeline derived with a ControlNet


class PipelineCache:
    """Lazily loaded pipelines, keyed by catalog key and pipeline kind.

    Besides pipelines it holds ControlNet models (kind "controlnet") and depth estimators (kind
    "depth", see engine.models.estimators), under the same lock, LRU and budget.

    Args:
        source: maps a catalog entry to what `from_pretrained` loads (a Hub id or a twin folder).
        policy: device, dtype and offload policy.
        budget_bytes: weights kept resident before the least recently used checkpoint is evicted.
        load_kwargs: `from_pretrained` keyword arguments for a catalog entry; `load_options` when not given.
    """

    def __init__(
        self,
        source: Callable[[ModelSpec], str],
        policy: DevicePolicy | None = None,
        budget_bytes: int | None = None,
        load_kwargs: Callable[[ModelSpec], dict] | None = None,
    ) -> None:
        self._source = source
        self.policy = policy or DevicePolicy()
        self.budget_bytes = budget_bytes if budget_bytes else self.policy.default_budget()
        self._load_kwargs = load_kwargs or (lambda spec: load_options(spec, self.policy, hub=False))
        quiet_expected_pickle_fallback()
        self._weights: OrderedDict[str, _Weights] = OrderedDict()
        # Re-entrant: a workflow holds it around a pipeline call and may ask for another pipeline inside.
        self.lock = threading.RLock()
        renew_after_fork(self, "lock", threading.RLock)
        self.loads = 0  # from_pretrained calls, for tests and the status line

    def get(self, key: str, kind: str = "img2img"):
        """The pipeline of `kind` for catalog entry `key`, loading or deriving it on first use."""
        spec = get_spec(key)
        if kind not in spec.kinds:
            raise ValueError(f"model {key!r} has no {kind} pipeline; it serves {', '.join(spec.kinds)}")
        with self.lock:
            weights = self._weights.get(key)
            if weights is not None:
                self._weights.move_to_end(key)
                if kind not in weights.pipes:
                    weights.pipes[kind] = self._derive(weights, kind)
                return weights.pipes[kind]
            return self._load(spec, kind)

    def get_controlnet(self, base_key: str, controlnet_key: str):
        """img2img conditioned by a ControlNet, derived from `base_key`'s cached img2img pipeline.

        The base's UNet, VAE and text encoder are the same objects as in its img2img pipeline: only the
        ControlNet is loaded (once, as its own entry). Evicting either entry drops the derived pipeline.
        """
        kind = CONTROLNET_PREFIX + controlnet_key
        with self.lock:
            base = self.get(base_key, "img2img")
            controlnet = self.get(controlnet_key, "controlnet")
            weights = self._weights.get(base_key)
            if weights is None:  # loading the ControlNet evicted the base under a tight budget
                base = self.get(base_key, "img2img")
                weights = self._weights[base_key]
            pipe = weights.pipes.get(kind)
            if pipe is None or pipe.controlnet is not controlnet:
                import diffusers

                pipe = diffusers.AutoPipelineForImage2Image.from_pipe(base, controlnet=controlnet, dtype=base.dtype)
                self._attach(weights, pipe)
                weights.pipes[kind] = pipe
                logger.info("derived %s with ControlNet %s from its img2img pipeline", base_key, controlnet_key)
            return pipe

    def peek(self, key: str, kind: str = "img2img"):
        """The cached pipeline, or None; never loads."""
        with self.lock:
            weights = self._weights.get(key)
            return None if weights is None else weights.pipes.get(kind)

    def loaded(self) -> dict[str, dict]:
        """What is in memory: per key, its kinds, size in bytes and placement; least recently used first."""
        with self.lock:
            return {
                k: {"kinds": sorted(w.pipes), "bytes": w.nbytes, "placement": w.placement}
                for k, w in self._weights.items()
            }

    def evict(self, key: str) -> bool:
        """Drop a checkpoint and everything derived from it, and free its memory now."""
        with self.lock:
            weights = self._weights.pop(key, None)
            if weights is None:
                return False
            for other in self._weights.values():  # pipelines that joined this entry's ControlNet
                other.pipes.pop(CONTROLNET_PREFIX + key, None)
            for pipe in weights.pipes.values():
                remove_hooks = getattr(pipe, "remove_all_hooks", None)
                if weights.placement.endswith("offload") and remove_hooks is not None:
                    remove_hooks()
            weights.pipes.clear()
            del weights
            free_memory()
            logger.info("evicted %s", key)
            return True

    def relieve(self, pipe) -> str:
        """Make room after running out of memory with `pipe`; returns what was done, for the user.

        Every other model is evicted and, on CUDA, the pipeline's own weights move to model offload
        (only the running component on the GPU).
        """
        with self.lock:
            owner = next((w for w in self._weights.values() if any(p is pipe for p in w.pipes.values())), None)
            evicted = [key for key in list(self._weights) if owner is None or key != owner.key]
            for key in evicted:
                self.evict(key)
            if owner is not None and owner.placement == "cuda" and not self.policy.zero_gpu:
                for derived in owner.pipes.values():
                    for module in denoisers(derived):
                        ungraph_forward(module)  # offload moves the weights: captured addresses go stale
                    derived.enable_model_cpu_offload()
                owner.placement = "model-offload"
                return "model CPU offload" + (f" and {len(evicted)} other model(s) unloaded" if evicted else "")
            return f"{len(evicted)} other model(s) unloaded" if evicted else "memory freed"

    def clear(self) -> None:
        with self.lock:
            for key in list(self._weights):
                self.evict(key)

    # -- internals -------------------------------------------------------------------------------

    def _from_pretrained(self, spec: ModelSpec, kind: str, source: str):
        options = self._load_kwargs(spec)
        if kind == "depth":
            from engine.models.estimators import load_estimator

            # float32: estimators are small and fp16 costs them accuracy
            return load_estimator(spec, source, revision=options.get("revision"))
        if spec.origin == "file":  # `source` is the base's folder on this disk (engine.models.owner)
            from engine.pipelines.portable import single_file_pipeline

            dtype = model_dtype(spec, self.policy)
            auto_class = _auto_pipeline_class(kind)
            keep_checker = "safety_checker" not in options  # load_options drops it with safety_checker=None
            return single_file_pipeline(spec.file, source, auto_class, dtype, keep_checker)
        from diffusers.utils import is_torch_version

        if options.get("use_safetensors") is None and not is_torch_version(">=", "2.6"):
            # torch.load(weights_only=True) is only safe against crafted pickles from 2.6 (CVE-2025-32434)
            raise ValueError(f"reading the .bin weights of {spec.hub_id} safely needs torch >= 2.6")
        return _auto_pipeline_class(kind).from_pretrained(source, dtype=model_dtype(spec, self.policy), **options)

    def _load(self, spec: ModelSpec, kind: str):
        started = time.perf_counter()
        try:
            source = self._source(spec)
            pipe = self._from_pretrained(spec, kind, source)
        # OSError covers the Hub's HTTP and missing-file errors; the annotators add RuntimeError/ImportError;
        # torch.load(weights_only=True) raises UnpicklingError for a pickle that carries code
        except (OSError, ValueError, RuntimeError, ImportError, pickle.UnpicklingError) as exc:
            logger.warning("loading %s failed", spec.key, exc_info=True)
            raise ModelUnavailable(unavailable_message(spec, exc)) from exc
        except Exception as exc:
            if spec.origin != "file":
                raise
            # the owner's file is data from outside: diffusers' single-file conversion fails in its own ways
            # (SingleFileComponentError for a file without a text encoder's weights, KeyError, ...)
            logger.warning("loading %s failed", spec.key, exc_info=True)
            raise ModelUnavailable(unavailable_message(spec, exc)) from exc
        self.loads += 1
        weights = _Weights(key=spec.key, pipes={kind: pipe}, nbytes=module_bytes(pipe))
        self._make_room(weights.nbytes)
        weights.placement = self._place(pipe, weights.nbytes)
        weights.loaded_in_s = time.perf_counter() - started
        self._weights[spec.key] = weights
        logger.info(
            "loaded %s (%s) from %s: %.1f MB, %s, %.1fs%s",
            spec.key,
            kind,
            source,
            weights.nbytes / 1e6,
            weights.placement,
            weights.loaded_in_s,
            "; its repository publishes .bin weights only, read weights-only" if spec.pickle_weights else "",
        )
        return pipe

    def _derive(self, weights: _Weights, kind: str):
        parent = next(iter(weights.pipes.values()))
        pipe = _auto_pipeline_class(kind).from_pipe(parent, dtype=parent.dtype)
        self._attach(weights, pipe)
        logger.info("derived %s (%s) from its %s pipeline", weights.key, kind, next(iter(weights.pipes)))
        return pipe

    def _attach(self, weights: _Weights, pipe) -> None:
        """Give a derived pipeline its entry's placement."""
        pipe.set_progress_bar_config(disable=True)
        # Offload hooks sit on the shared modules; re-applying them covers any module the new kind adds.
        if weights.placement == "model-offload":
            pipe.enable_model_cpu_offload()
        elif weights.placement == "sequential-offload":
            pipe.enable_sequential_cpu_offload()
        elif weights.placement == "cuda":
            pipe.to("cuda")  # a ControlNet joining a resident pipeline
            apply_graphs(pipe, self.policy)

    def _resident_bytes(self) -> int:
        return sum(w.nbytes for w in self._weights.values() if w.placement in ("cpu", "cuda"))

    def _make_room(self, nbytes: int) -> None:
        while self._weights and self._resident_bytes() + nbytes > self.budget_bytes:
            self.evict(next(iter(self._weights)))

    def _place(self, pipe, nbytes: int) -> str:
        policy = self.policy
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)
        if not hasattr(pipe, "enable_model_cpu_offload"):  # a ControlNet model or a depth estimator
            pipe.to(policy.device)  # a derived pipeline's offload hooks take a ControlNet over
            return policy.device
        if policy.device != "cuda":
            apply_speedups(pipe, policy)  # off by default on CPU; benchmarks check the code paths here
            return "cpu"
        mode = policy.offload
        if mode == "auto":
            mode = auto_offload(pipe, nbytes, self._resident_bytes(), self.budget_bytes)
        if mode == "sequential":
            pipe.enable_sequential_cpu_offload()
            return "sequential-offload"
        if mode == "model":
            pipe.enable_model_cpu_offload()
            return "model-offload"
        pipe.to("cuda")
        apply_speedups(pipe, policy)  # only for resident models: compile and offload hooks do not mix
        return "cuda"

    def adopt(self, key: str, kind: str, pipe) -> None:
        """Register a pipeline built in memory (benchmarks with full-size random weights) as `key`'s `kind`."""
        get_spec(key)
        with self.lock:
            self.evict(key)
            weights = _Weights(key=key, pipes={kind: pipe}, nbytes=module_bytes(pipe))
            self._make_room(weights.nbytes)
            weights.placement = self._place(pipe, weights.nbytes)
            self._weights[key] = weights
