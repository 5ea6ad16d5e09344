"""Loading a catalog entry's pipeline: the from_pretrained options (weights format, variant, dtype, the safety
checker) and, when loading fails, the failure in words that say what to do."""

from __future__ import annotations

import logging
import pickle
import warnings

import torch
from huggingface_hub import constants as hub_constants

from engine.base.errors import first_line
from engine.models.catalog import ModelSpec
from engine.pipelines.device import DevicePolicy, model_dtype


class ModelUnavailable(RuntimeError):
    """A catalog model could not be loaded (no network, missing safetensors weights, ...)."""


class _ExpectedPickleFallback(logging.Filter):
    """Drops diffusers' two lines for a repository that publishes only `.bin` weights.

    For those (and only those) the app passes `use_safetensors=None`, and diffusers logs at error level that
    no safetensors file was found, then "Defaulting to unsafe serialization", though it goes on to read the
    `.bin` file with torch.load(weights_only=True): a log that looks broken in normal use, and contradicts
    the weights-only promise. The cache's own line says what was read (`PipelineCache._load`).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        fallback = text.startswith("An error occurred while trying to fetch") and "safetensors" in text
        return not (fallback or text.startswith("Defaulting to unsafe serialization"))


def quiet_expected_pickle_fallback() -> None:
    """Install the filter on diffusers' model loader (idempotent; done when a cache is made, not on import), and
    drop the deprecation warning diffusers' config loader causes by passing huggingface_hub's retired
    `local_dir_use_symlinks` on every config read (diffusers' own argument, ignored; nothing the app passes)."""
    loader = logging.getLogger("diffusers.models.modeling_utils")
    if not any(isinstance(existing, _ExpectedPickleFallback) for existing in loader.filters):
        loader.addFilter(_ExpectedPickleFallback())
    warnings.filterwarnings(
        "ignore", message="The `local_dir_use_symlinks` argument is deprecated", category=UserWarning
    )


# what diffusers and transformers say of a prompt past CLIP's 77 tokens
_TRUNCATION_WARNINGS = (
    "truncated because CLIP can only handle sequences up to",  # diffusers
    "Token indices sequence length is longer than the specified maximum sequence length",  # transformers
)


class _TwinTruncation(logging.Filter):
    """Drops the warnings that a prompt passed CLIP's 77 tokens, where every model is a twin (tiny mode, or hub
    mode on a cache of twins).

    The twins' tokenizers are byte-level (engine.models.tiny.build_tokenizer: every text tokenizes, nothing is
    downloaded), so any prompt over ~75 characters passes CLIP's 77 tokens there, the app's own examples
    included, while the real tokenizers take those prompts whole: the warnings would be about the twin.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(warning in text for warning in _TRUNCATION_WARNINGS)


def quiet_twin_truncation() -> None:
    """Install the filter on diffusers' and transformers' own log handlers (they take every record of their
    library's loggers); idempotent."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.get_logger("diffusers")  # each library sets up its handler on first use: make sure it has
    transformers_logging.get_logger("transformers")
    for library in ("diffusers", "transformers"):
        for handler in logging.getLogger(library).handlers:
            if not any(isinstance(existing, _TwinTruncation) for existing in handler.filters):
                handler.addFilter(_TwinTruncation())


def load_options(
    spec: ModelSpec, policy: DevicePolicy, *, hub: bool, safety_checker: bool = True, token: str = ""
) -> dict:
    """The `from_pretrained` keyword arguments for a catalog entry, besides its dtype.

    Safetensors only, except for entries whose repository publishes pickled `.bin` weights alone: for
    those `use_safetensors=None` lets diffusers prefer safetensors and fall back to `.bin`, which diffusers
    and transformers read with `torch.load(weights_only=True)` (torch >= 2.6 refuses a pickle that
    carries code). The `fp16` variant on a float16 device where the repository has one (half the
    download); in hub mode the pinned revision and the owner's token (gated repositories), no other, and with
    HF_HUB_OFFLINE the cache alone; and no safety checker when the owner turned it off.
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
        if hub and hub_constants.HF_HUB_OFFLINE:  # offline: read the cache, ask the Hub nothing (nor warn of it)
            options["local_files_only"] = True
    if not safety_checker and spec.adapter.has_safety_checker:
        options.update(safety_checker=None, requires_safety_checker=False)
    return options


def _auto_pipeline_class(kind: str):
    import diffusers

    classes = {
        "img2img": diffusers.AutoPipelineForImage2Image,
        "text2img": diffusers.AutoPipelineForText2Image,
        "inpaint": diffusers.AutoPipelineForInpainting,
        # instruction edits: diffusers maps the edit families' pipelines as image-to-image ones (FluxKontextPipeline,
        # Flux2KleinPipeline, QwenImageEditPlusPipeline); they take no strength and read one or several images
        "edit": diffusers.AutoPipelineForImage2Image,
        "upscale": diffusers.DiffusionPipeline,  # the upscalers' own classes, from model_index.json
        "controlnet": diffusers.ControlNetModel,  # a model, joined to a base pipeline by get_controlnet
    }
    if kind not in classes:
        raise ValueError(f"pipeline kind must be one of {', '.join(classes)}; got {kind!r}")
    return classes[kind]


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
