"""PipelineCache: lazy loading, kinds derived with from_pipe, LRU under a memory budget, one lock.

One set of weights per catalog key. The first `get(key, kind)` loads it; a later `get` for another kind
(text2img after img2img, say) derives that pipeline from the loaded one with
`AutoPipelineFor*.from_pipe(pipe, dtype=pipe.dtype)`, sharing every weight. The dtype is always passed
(`dtype`, diffusers 0.42's name for `torch_dtype`): without it diffusers casts the shared weights to
float32 (diffusers issue 12754).
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.base.errors import first_line
from engine.base.forks import renew_after_fork
from engine.models.catalog import ModelSpec, get_spec
from engine.pipelines.graphs import graph_forward, ungraph_forward

logger = logging.getLogger(__name__)


class ModelUnavailable(RuntimeError):
    """A catalog model could not be loaded (no network, missing safetensors weights, ...)."""


def model_dtype(spec: ModelSpec, policy: DevicePolicy) -> torch.dtype:
    """The dtype a catalog entry runs in: the policy's, or its family's own on CUDA (bfloat16 for FLUX.1, SD3.5)."""
    wanted = spec.adapter.cuda_dtype
    if wanted and policy.device == "cuda":
        return getattr(torch, wanted)
    return policy.dtype


def load_options(
    spec: ModelSpec, policy: DevicePolicy, *, hub: bool, safety_checker: bool = True, token: str = ""
) -> dict:
    """The `from_pretrained` keyword arguments for a catalog entry, besides its dtype.

    Safetensors only, except for entries whose repository publishes pickled `.bin` weights alone: for
    those `use_safetensors=None` lets diffusers prefer safetensors and fall back to `.bin`, which diffusers
    and transformers read with `torch.load(weights_only=True)` (torch >= 2.6 refuses a pickle that
    carries code). The `fp16` variant on a float16 device where the repository has one (half the
    download); in hub mode the pinned revision and the owner's token (gated repositories), no other; and no
    safety checker when the owner turned it off.
    """
    options: dict = {}
    if (
        spec.origin != "file"
    ):  # a single file reads its base's files from disk (engine.pipelines.portable.single_file_pipeline)
        options["use_safetensors"] = None if spec.pickle_weights else True
        if spec.fp16_variant and model_dtype(spec, policy) == torch.float16:
            options["variant"] = "fp16"
        if hub and spec.revision:
            options["revision"] = spec.revision
        if hub:  # the owner's STUDIO_HF_TOKEN, or explicitly none: never HF_TOKEN or a stored login
            options["token"] = token or False
    if not safety_checker and spec.adapter.has_safety_checker:
        options.update(safety_checker=None, requires_safety_checker=False)
    return options


@dataclass(frozen=True)
class DevicePolicy:
    """Where and how pipelines run: CUDA in fp16 with SDPA and offload when short, else CPU in float32."""

    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    offload: str = "none"
    compile: bool = False
    compile_mode: str | None = None  # torch.compile mode; "reduce-overhead"/"max-autotune" add its CUDA graphs
    channels_last: bool = False
    fuse_qkv: bool = False
    cuda_graphs: bool = (
        False  # the denoisers replay CUDA graphs (engine.pipelines.graphs); CUDA and resident models only
    )
    cudnn_benchmark: bool = False  # cuDNN times its convolution algorithms once per shape and keeps the fastest
    zero_gpu: bool = False  # a ZeroGPU Space: resident models only, never offloaded (detect says why)

    @classmethod
    def detect(
        cls,
        offload: str = "auto",
        compile: bool = False,
        cuda_graphs: bool = True,
        *,
        zero_gpu: bool = False,
        cuda: bool | None = None,
    ) -> DevicePolicy:
        """The machine's policy. On CUDA: fp16 with SDPA, channels_last, CUDA graphs unless turned off,
        torch.compile when asked (benchmarks/RESULTS.md has the H100 figures). Not cuDNN's algorithm search:
        it gained 3% and its trials took up to 75 GiB for a moment, which could starve a process beside it.

        On ZeroGPU (`zero_gpu`): models stay on the (lent) GPU, never offloaded (its workers get the weights
        moved onto their GPU at start; offload hooks would move them back), and neither torch.compile nor
        CUDA graphs (ZeroGPU supports no compile; a capture would be redone in every new worker within the
        call's paid seconds). `cuda`: whether CUDA is available, for tests; None asks torch.
        """
        cuda = torch.cuda.is_available() if cuda is None else cuda
        if cuda and zero_gpu:
            return cls(device="cuda", dtype=torch.float16, offload="none", channels_last=True, zero_gpu=True)
        if cuda:
            return cls(
                device="cuda",
                dtype=torch.float16,
                offload=offload,
                compile=compile,
                channels_last=True,
                cuda_graphs=cuda_graphs,
            )
        return cls()

    @property
    def generator_device(self) -> str:
        return self.device

    def default_budget(self) -> int:
        """Bytes of weights the cache keeps resident: most of the GPU, or a third of RAM on CPU."""
        if self.device == "cuda":
            return int(torch.cuda.get_device_properties(0).total_memory * 0.8)
        try:
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 3)
        except (ValueError, OSError, AttributeError):
            return 8 * 2**30


def auto_offload(pipe, nbytes: int, resident: int, budget: int) -> str:
    """The offload a pipeline needs beside `resident` bytes under `budget`: none when all of it fits; model
    offload (one component on the GPU at a time) when its largest component fits; else sequential (layer by
    layer: FLUX.1's 24 GB transformer on a 16 GB card)."""
    if resident + nbytes <= budget:
        return "none"
    components = getattr(pipe, "components", {}).values()
    largest = max((module_bytes(c) for c in components if isinstance(c, torch.nn.Module)), default=nbytes)
    return "model" if largest <= budget else "sequential"


def module_bytes(pipe: object) -> int:
    """Bytes held by a pipeline's weights and buffers (each tensor counted once)."""
    seen: set[int] = set()
    total = 0
    components = {"model": pipe} if isinstance(pipe, torch.nn.Module) else getattr(pipe, "components", {})
    for component in components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for tensor in list(component.parameters()) + list(component.buffers()):
            key = id(tensor)
            if key not in seen:
                seen.add(key)
                total += tensor.numel() * tensor.element_size()
    return total


def _auto_pipeline_class(kind: str):
    import diffusers

    classes = {
        "img2img": diffusers.AutoPipelineForImage2Image,
        "text2img": diffusers.AutoPipelineForText2Image,
        "inpaint": diffusers.AutoPipelineForInpainting,
        "upscale": diffusers.DiffusionPipeline,  # the upscalers' own classes, from model_index.json
        "controlnet": diffusers.ControlNetModel,  # a model, joined to a base pipeline by get_controlnet
    }
    if kind not in classes:
        raise ValueError(f"pipeline kind must be one of {', '.join(classes)}; got {kind!r}")
    return classes[kind]


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
        self.loads += 1
        weights = _Weights(key=spec.key, pipes={kind: pipe}, nbytes=module_bytes(pipe))
        self._make_room(weights.nbytes)
        weights.placement = self._place(pipe, weights.nbytes)
        weights.loaded_in_s = time.perf_counter() - started
        self._weights[spec.key] = weights
        logger.info(
            "loaded %s (%s) from %s: %.1f MB, %s, %.1fs",
            spec.key,
            kind,
            source,
            weights.nbytes / 1e6,
            weights.placement,
            weights.loaded_in_s,
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


def apply_speedups(pipe, policy: DevicePolicy) -> None:
    """channels_last, fused QKV projections, torch.compile and CUDA graphs, as the policy asks.

    Compilation is in place (`module.compile()`), so the module objects that from_pipe shares and
    that hooks attach to stay the same. The VAE's encoder and decoder are compiled separately
    because pipelines call `vae.encode`/`vae.decode`, not `vae.forward`. With both compile and
    `cuda_graphs`, the denoiser's compiled forward is what the graphs capture.
    """
    unet = getattr(pipe, "unet", None)
    vae = getattr(pipe, "vae", None)
    if policy.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    if policy.fuse_qkv and hasattr(pipe, "fuse_qkv_projections"):
        pipe.fuse_qkv_projections()
    if policy.channels_last:
        for module in (unet, vae):
            if module is not None:
                module.to(memory_format=torch.channels_last)
    if policy.compile:
        options: dict[str, Any] = {"mode": policy.compile_mode} if policy.compile_mode else {}
        if unet is not None:
            if policy.cuda_graphs and policy.device == "cuda":
                graph_forward(unet, torch.compile(unet.forward, **options))
            else:
                unet.compile(**options)
        if vae is not None:
            vae.encoder.compile(**options)
            vae.decoder.compile(**options)
    apply_graphs(pipe, policy)


def apply_graphs(pipe, policy: DevicePolicy) -> None:
    """CUDA graphs for the pipeline's denoisers (UNet, ControlNet) when the policy asks for them."""
    if policy.cuda_graphs and policy.device == "cuda":
        for module in denoisers(pipe):
            graph_forward(module)


def denoisers(pipe) -> list[torch.nn.Module]:
    """The modules a pipeline calls at every step."""
    return [m for m in (getattr(pipe, "unet", None), getattr(pipe, "controlnet", None)) if m is not None]


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it was raised from, outermost first (libraries wrap the real cause)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def load_failure(spec: ModelSpec, exc: BaseException) -> str:
    """The real reason a catalog entry did not load, in words, from the chain of exceptions."""
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RevisionNotFoundError

    chain = _causes(exc)
    for cause in chain:
        if isinstance(cause, pickle.UnpicklingError):
            return (
                f"a weights file of {spec.hub_id} is a pickle that does not hold plain tensors, so it was refused "
                f"unread (weights-only loading; {first_line(cause)})"
            )
        if isinstance(cause, RevisionNotFoundError) or ("revision" in str(cause).lower() and spec.revision):
            return f"revision {spec.revision!r} of {spec.hub_id} was not found ({first_line(cause)})"
        if isinstance(cause, GatedRepoError):
            return (
                f"{spec.hub_id} is gated and this app's token has no access to it: accept its licence at "
                f"https://huggingface.co/{spec.hub_id} with your Hugging Face account, then start the app with "
                "STUDIO_HF_TOKEN set to a read token of that account (HF_TOKEN and stored logins are not used)"
            )
    mismatch = ("size mismatch", "expected shape")  # torch's load_state_dict, diffusers' meta loading
    if spec.origin == "file" and any(words in str(cause) for cause in chain for words in mismatch):
        return (
            f"its tensors do not fit {spec.config_spec.label}'s configs here: a checkpoint file loads with its base's "
            "configs, which in tiny mode are the tiny twin's, so only a twin-sized file fits there; start the app "
            "with --models hub for real checkpoints"
        )
    if spec.origin == "file" and any(
        isinstance(cause, LocalEntryNotFoundError) or "local cache" in str(cause) for cause in chain
    ):
        base = spec.config_spec
        return (
            f"its base {base.label} ({base.hub_id}) is not in the Hugging Face cache: a checkpoint file's configs and "
            f"tokenizers are read from disk, never downloaded. Run {base.key} once in hub mode (or "
            f"`hf download {base.hub_id}`) so they are cached"
        )
    for cause in chain:
        text = str(cause)
        if "safetensors" in text and ("Could not find" in text or "not found" in text.lower()):
            return f"{spec.hub_id} publishes no safetensors weights for this load ({first_line(cause)})"
        if isinstance(cause, LocalEntryNotFoundError) or "local cache" in text or "disk cache" in text:
            at = f" at revision {spec.revision!r}" if spec.revision else ""
            gated = (
                f"; it is gated: its licence must be accepted at https://huggingface.co/{spec.hub_id} and "
                "STUDIO_HF_TOKEN set to download it"
                if spec.gated
                else ""
            )
            return (
                f"the weights of {spec.hub_id}{at} are not in the Hugging Face cache and the Hub could not be "
                f"reached ({first_line(cause)}){gated}"
            )
    return first_line(chain[-1]) if len(chain) > 1 else first_line(exc)


def unavailable_message(spec: ModelSpec, exc: BaseException) -> str:
    """Why a catalog entry could not be loaded (the real cause), and what to do instead."""
    reason = load_failure(spec, exc)
    if "depth" in spec.kinds:
        return (
            f"depth_estimator {spec.key!r} ({spec.label}) could not be loaded: it needs {spec.weights} from "
            f"{spec.hub_id}: {reason}. Upload a depth map instead, or pick another depth_estimator."
        )
    offline = "Hub could not be reached" in reason
    advice = (
        "Start the app with --models tiny, or download the weights once with network access."
        if offline
        else "Pick another model."
    )
    return f"model {spec.key!r} ({spec.hub_id}) could not be loaded: {reason}. {advice}"


def free_memory() -> None:
    """Collect garbage and give cached CUDA blocks back, so freed tensors really leave the device."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
