"""The owner's own models: single-file checkpoints in STUDIO_MODELS_DIR, Hub repos STUDIO_ALLOW_HUB_MODELS allows.

Each becomes a model beside the catalog (engine.models.catalog.OwnerModels), run by the family adapter of the catalog
entry it is built like (its `base`):

- A single file's family is read from its tensors' names and shapes (`detect`), never from its name. It loads
  with `from_single_file`, its configs and tokenizers from the base's folder on this disk (the twin in tiny mode,
  the Hugging Face cache in hub mode: `local_files_only`, never from the network). A file holding only a
  denoiser (SD3.5's MMDiT, FLUX.1's transformer, as they are usually shared) gets the base's other components.
  `.safetensors` are read as they are; a pickle (`.ckpt`, `.pt`, `.pth`, `.bin`) only with
  `torch.load(weights_only=True)`: one that carries code is refused, unread.
- An allowed Hub repo's family comes from its `model_index.json` (`family_of_index`). The owner lists ids or
  patterns (`me/my-model`, `me/*`); a visitor's text becomes a repo id only when it is a well-formed id matching
  one of them.

Nothing a visitor types is a path: files are named `file:<name>` and looked up in the folder's listing.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import pickle
import re
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from engine.base.errors import first_line
from engine.base.settings import Settings
from engine.models.catalog import CATALOG, REPO_ID, LoraSpec, ModelSpec, OwnerModels, install_owner_models

logger = logging.getLogger(__name__)

FILE_PREFIX = "file:"
SAFETENSORS = ".safetensors"
PICKLES = (".ckpt", ".pt", ".pth", ".bin")
DENOISER = "model.diffusion_model."  # the original (LDM) checkpoints' UNet prefix
PATTERN = re.compile(r"[A-Za-z0-9*?][A-Za-z0-9_.*?-]{0,95}/[A-Za-z0-9*?][A-Za-z0-9_.*?-]{0,95}")
MAX_HUB_MODELS = 64  # allowed repos looked up on demand and kept, per process
# a LoRA file's name without its suffix, as a visitor can type it and a recipe can carry it
LORA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+ -]{0,99}")
LORA_SUFFIX = SAFETENSORS


MAX_STATE_NESTING = 4  # state_dict inside state_dict: how deep a pickle's tensors are looked for


class Refused(ValueError):
    """An owner's checkpoint that cannot be used here, and why."""


# -- single files --------------------------------------------------------------------------------------------


def read_pickle(path: Path) -> dict:
    """A pickled checkpoint's tensors, read weights-only (plain tensors and containers; no code runs).

    Raises:
        Refused: the pickle holds anything else (code, custom classes), or no tensors.
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise Refused(
            f"{path.name} is a pickle that does not hold plain tensors only, so it was refused unread "
            f"(weights-only loading: {first_line(exc)}); convert it to .safetensors"
        ) from None
    for _ in range(MAX_STATE_NESTING):  # a state_dict may sit in a training checkpoint's dict, or refer to itself
        if not (isinstance(state, dict) and isinstance(state.get("state_dict"), dict)):
            break
        state = state["state_dict"]
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise Refused(f"{path.name} holds no tensors")
    if not all(isinstance(name, str) for name in tensors):
        raise Refused(f"{path.name} names its tensors with something other than text; a checkpoint's names are text")
    return tensors


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape: from a safetensors header (nothing else read), or a weights-only pickle.

    Raises:
        Refused: an unreadable file, or a pickle that carries code.
    """
    if path.suffix == SAFETENSORS:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as exc:
            raise Refused(f"{path.name} is not a readable safetensors file ({exc})") from None
    return {key: tuple(tensor.shape) for key, tensor in read_pickle(path).items()}


def detect(shapes: dict[str, tuple[int, ...]]) -> tuple[str, str]:
    """(catalog key of the base, "pipeline" or "transformer") for a checkpoint's tensor names and shapes.

    Raises:
        Refused: no family of the catalog has this layout (naming what it looks like where known).
    """

    def has(fragment: str) -> bool:
        return any(fragment in key for key in shapes)

    if has("double_blocks.") and has("single_blocks."):  # FLUX.1 (Black Forest Labs' layout)
        return ("flux-dev" if has("guidance_in.") else "flux-schnell"), "transformer"
    if has("joint_blocks."):  # SD3's MMDiT; 3.5 Medium's has a second attention in its first blocks (MMDiT-X)
        if has("x_block.attn2."):
            return "sd35-medium", "transformer"
        raise Refused(
            "it is a Stable Diffusion 3 / 3.5 Large MMDiT; only SD3.5 Medium's layout has a base in the catalog"
        )
    conv_in = shapes.get(DENOISER + "input_blocks.0.0.weight")
    if conv_in is None:
        raise Refused("no Stable Diffusion UNet, SD3 MMDiT or FLUX.1 transformer was found among its tensors")
    if len(conv_in) != 4 or conv_in[1] != 4:
        channels = conv_in[1] if len(conv_in) > 1 else "?"
        raise Refused(
            f"its UNet takes {channels} input channels (9: an inpainting model, 8: instruct-pix2pix); "
            "image-to-image checkpoints take 4"
        )
    if has("conditioner.embedders.1.model."):
        return "sdxl-base", "pipeline"
    if has("conditioner.embedders.0.model."):
        return "sdxl-refiner", "pipeline"
    if has("cond_stage_model.transformer."):
        return "sd15", "pipeline"
    if has("cond_stage_model.model."):
        raise Refused("it is a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder); the catalog has no 2.x base")
    raise Refused("it holds a UNet but no text encoder the catalog's families use")


def _owned(base: ModelSpec, key: str, **fields) -> ModelSpec:
    """An owner's model built like catalog entry `base`: its family, kinds and defaults; none of its own trigger
    words, revision, gating or preloading."""
    return replace(
        base, key=key, trigger_words="", revision=None, gated=False, preloaded=False, base=base.key, **fields
    )


def file_spec(path: Path, config_id: Callable[[str], str]) -> ModelSpec:
    """The model a checkpoint file becomes, built like its detected base (`config_id(base_key)`: where the
    base's configs are).

    Raises:
        Refused: see `tensor_shapes` and `detect`.
    """
    base_key, part = detect(tensor_shapes(path))
    base = CATALOG[base_key]
    what = "a whole checkpoint" if part == "pipeline" else "its denoiser (the rest from the base)"
    return _owned(
        base,
        FILE_PREFIX + path.name,
        hub_id=path.name,
        label=f"{path.stem}: your {base.label} checkpoint",
        license="the owner's",
        notes=f"{path.name} from STUDIO_MODELS_DIR: {what}, read as {base.label}",
        origin="file",
        file=str(path.resolve()),
        config_id=config_id(base_key),
    )


def scan_models_dir(folder: Path, config_id: Callable[[str], str]) -> tuple[dict[str, ModelSpec], dict[str, str]]:
    """The checkpoints of a folder (not its subfolders) as models, and the refused files with why.

    `config_id(base_key)` says where a base's configs are. A file name that two suffixes share keeps its
    safetensors.

    Raises:
        ValueError: the folder does not exist, naming STUDIO_MODELS_DIR.
    """
    if not folder.is_dir():
        raise ValueError(f"STUDIO_MODELS_DIR must be a folder; got {str(folder)!r}, which is not one")
    models: dict[str, ModelSpec] = {}
    refused: dict[str, str] = {}
    for path in sorted(folder.iterdir(), key=lambda p: (p.suffix != SAFETENSORS, p.name)):
        if not path.is_file() or path.suffix not in (SAFETENSORS, *PICKLES):
            continue
        try:
            spec = file_spec(path, config_id)
        except Exception as exc:  # a file from outside: whatever it does, the app starts without it
            refused[path.name] = str(exc) if isinstance(exc, Refused) else f"it could not be read ({first_line(exc)})"
            logger.warning("STUDIO_MODELS_DIR: %s is not offered: %s", path.name, refused[path.name])
            continue
        models[spec.key] = spec
        logger.info("STUDIO_MODELS_DIR: %s offered as %s", path.name, spec.label)
    return models, refused


# -- Hub repos -----------------------------------------------------------------------------------------------


def hub_patterns(text: str) -> list[str]:
    """STUDIO_ALLOW_HUB_MODELS as a list of repo ids or patterns.

    Raises:
        ValueError: an entry that is not owner/name (with * or ? as wildcards), naming the setting.
    """
    patterns = [item for item in re.split(r"[,\s]+", text) if item]
    for pattern in patterns:
        if not PATTERN.fullmatch(pattern) or ".." in pattern:
            raise ValueError(
                f"STUDIO_ALLOW_HUB_MODELS must list Hub repo ids or patterns (me/my-model, me/*); got {pattern!r}"
            )
    return patterns


def hub_allowed(repo_id: object, patterns: list[str]) -> bool:
    """Whether a visitor's text is a well-formed repo id matching one of the owner's patterns."""
    return (
        isinstance(repo_id, str)
        and REPO_ID.fullmatch(repo_id) is not None
        and ".." not in repo_id
        and any(fnmatch.fnmatchcase(repo_id, pattern) for pattern in patterns)
    )


# model_index.json's _class_name -> the catalog entry whose family runs it
PIPELINE_BASES = {
    "StableDiffusionPipeline": "sd15",
    "StableDiffusionImg2ImgPipeline": "sd15",
    "StableDiffusionXLPipeline": "sdxl-base",
    "StableDiffusionXLImg2ImgPipeline": "sdxl-base",
    "StableDiffusion3Pipeline": "sd35-medium",
    "StableDiffusion3Img2ImgPipeline": "sd35-medium",
    "FluxPipeline": "flux-schnell",
    "FluxImg2ImgPipeline": "flux-schnell",
}


def family_of_index(index: dict, transformer_config: dict | None = None) -> str:
    """The catalog base of a repo from its model_index.json (and, for FLUX.1, its transformer's config:
    guidance-distilled dev or timestep-distilled schnell).

    Raises:
        Refused: a pipeline class no catalog family runs.
    """
    class_name = index.get("_class_name")
    base = PIPELINE_BASES.get(class_name) if isinstance(class_name, str) else None
    if base is None:
        runs = ", ".join(PIPELINE_BASES)
        raise Refused(f"its model_index.json names {class_name!r}; image-to-image here runs {runs}")
    if base == "sdxl-base" and index.get("text_encoder", [None])[0] is None:  # the refiner has only text_encoder_2
        return "sdxl-refiner"
    if base == "flux-schnell" and (transformer_config or {}).get("guidance_embeds"):
        return "flux-dev"
    return base


def hub_spec(repo_id: str, token: str = "") -> ModelSpec:
    """The model an allowed Hub repo becomes (its model_index.json read from the Hub or the cache).

    Raises:
        Refused: no catalog family runs it; ValueError: its files could not be read.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    def read(name: str) -> dict:
        return json.loads(Path(hf_hub_download(repo_id, name, token=token or False)).read_text())

    try:
        index = read("model_index.json")
        transformer = read("transformer/config.json") if index.get("_class_name", "").startswith("Flux") else None
    except (OSError, HfHubHTTPError, json.JSONDecodeError) as exc:
        raise ValueError(f"the Hub repo {repo_id} could not be read ({first_line(exc)})") from None
    base = CATALOG[family_of_index(index, transformer)]
    return _owned(
        base,
        repo_id,
        hub_id=repo_id,
        label=f"{repo_id}, run as {base.label}",
        license=f"see https://huggingface.co/{repo_id}",
        notes=f"allowed by STUDIO_ALLOW_HUB_MODELS; runs as {base.label}",
        origin="hub",
    )


LORA_FILE = "pytorch_lora_weights.safetensors"  # what diffusers' save_lora_weights and training scripts write


def hub_lora(repo_id: str, token: str = "") -> LoraSpec:
    """An allowed Hub repo as a LoRA: its `pytorch_lora_weights.safetensors`, else its one top-level
    `.safetensors` file, downloaded into the Hugging Face cache (a repo with several, or a whole model, is refused:
    nothing but that file is fetched).

    Raises:
        ValueError: the repo could not be read or holds no single LoRA file.
    """
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    try:
        try:
            path = hf_hub_download(repo_id, LORA_FILE, token=token or False)
        except EntryNotFoundError:  # a LoRA named its own way: the repo's one top-level .safetensors file
            names = [n for n in HfApi().list_repo_files(repo_id, token=token or False) if "/" not in n]
            files = [n for n in names if n.endswith(".safetensors")]
            if len(files) != 1:
                listed = ", ".join(files[:5]) or "none"
                raise ValueError(
                    f"the Hub repo {repo_id} holds {len(files)} top-level .safetensors files ({listed}); a LoRA repo "
                    "holds one"
                ) from None
            path = hf_hub_download(repo_id, files[0], token=token or False)
    except (OSError, HfHubHTTPError) as exc:
        raise ValueError(f"the Hub repo {repo_id} could not be read as a LoRA ({first_line(exc)})") from None
    return LoraSpec(name=repo_id, source=str(path), origin="hub")


# -- the process's owner models ------------------------------------------------------------------------------


def build_owner_models(settings: Settings, mode: str, twins_dir: Path) -> OwnerModels:
    """The owner's models the settings name, in the engine's model mode.

    Raises:
        ValueError: a setting that names no folder, or a malformed pattern.
    """

    def config_id(base_key: str) -> str:
        """Where a base's configs are: its twin's folder (tiny mode; built when the model first loads), its Hub id
        read from the cache (hub mode)."""
        return str((twins_dir / base_key).resolve()) if mode == "tiny" else CATALOG[base_key].hub_id

    entries: dict[str, ModelSpec] = {}
    if settings.models_dir:
        entries, _ = scan_models_dir(Path(settings.models_dir).expanduser(), config_id)
    patterns = hub_patterns(settings.allow_hub_models)

    def may_look_up(key: str, known: dict, what: str, verb: str) -> bool:
        """Whether `key` is an allowed repo to look up here (False: not allowed; ValueError: allowed, but why not)."""
        if not hub_allowed(key, patterns):
            return False
        if mode != "hub":
            raise ValueError(f"the owner's Hub {what} {verb} in hub mode only; this app runs the tiny twins")
        if sum(item.origin == "hub" for item in known.values()) >= MAX_HUB_MODELS:
            raise ValueError(f"at most {MAX_HUB_MODELS} allowed Hub {what} are kept; restart the app for others")
        return True

    def resolve(key: str) -> ModelSpec | None:
        if not may_look_up(key, owner.entries, "models", "run"):
            return None
        try:
            return hub_spec(key, settings.hf_token)
        except Refused as exc:
            raise ValueError(f"the Hub repo {key} cannot be used: {exc}") from None

    def resolve_lora(name: str) -> LoraSpec | None:
        return hub_lora(name, settings.hf_token) if may_look_up(name, owner.loras, "LoRAs", "apply") else None

    loras = scan_lora_dir(Path(settings.lora_dir).expanduser()) if settings.lora_dir else {}
    owner = OwnerModels(entries, resolve, loras, resolve_lora)
    if mode == "hub":  # the ids named in full are offered from the start; patterns as visitors name them
        for pattern in patterns:
            if not any(char in pattern for char in "*?"):
                try:
                    owner.get(pattern)
                except ValueError as exc:
                    logger.warning("STUDIO_ALLOW_HUB_MODELS: %s", exc)
    return owner


def scan_lora_dir(folder: Path) -> dict[str, LoraSpec]:
    """The LoRA files of a folder (not its subfolders), by name; files that are not LoRAs are logged and skipped.

    Raises:
        ValueError: the folder does not exist, naming STUDIO_LORA_DIR.
    """
    if not folder.is_dir():
        raise ValueError(f"STUDIO_LORA_DIR must be a folder; got {str(folder)!r}, which is not one")
    loras: dict[str, LoraSpec] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix != LORA_SUFFIX:
            if path.suffix in PICKLES:
                logger.warning("STUDIO_LORA_DIR: %s is not offered: LoRAs are read from .safetensors only", path.name)
            continue
        name = path.name[: -len(LORA_SUFFIX)]
        try:
            if not LORA_NAME.fullmatch(name):
                raise Refused("its name holds characters a run cannot name (letters, digits, _ . + - and spaces)")
            if not any("lora" in key.lower() for key in tensor_shapes(path)):
                raise Refused("it holds no LoRA tensors (lora_A/lora_B or lora_down/lora_up)")
        except Refused as exc:
            logger.warning("STUDIO_LORA_DIR: %s is not offered: %s", path.name, exc)
            continue
        loras[name] = LoraSpec(name=name, source=str(path.resolve()), origin="file")
    return loras


def install(settings: Settings, mode: str, twins_dir: Path) -> OwnerModels:
    """Make the settings' owner models this process's; returns them."""
    owner = build_owner_models(settings, mode, twins_dir)
    install_owner_models(owner)
    return owner
