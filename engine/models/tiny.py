"""Tiny random-weight twins of the catalog's repositories, written to disk as the Hub publishes them.

A twin mirrors its repository, not just its architecture: every config is the repository's own
(engine/models/hub_repos, see engine.models.repos) with only size fields shrunk (widths, depths, head counts, vocab),
the components are those of its `model_index.json` (safety checker and feature extractor included),
and the weight files have the real names and formats (`.bin` only where the repository has only `.bin`,
`fp16` variants where it has them). Weights are random from a fixed seed; images are noise. A twin loads
through exactly the code path a real checkpoint takes, so every line of loading, validation, batching
and UI code runs for real on a CPU with no network.

    python -m engine.models.tiny --out DIR          # DIR/<catalog key>/...: the folders tiny mode loads
    python -m engine.models.tiny --hub-cache DIR    # a Hugging Face cache of the twins under the real repo ids:
                                             # HF_HUB_CACHE=DIR HF_HUB_OFFLINE=1 python app.py --models hub
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path

from engine.models.catalog import CATALOG, ModelSpec, get_spec
from engine.models.repos import PICKLE, SAFETENSORS, RepoFacts, repo_facts

logger = logging.getLogger(__name__)

# Bump when a builder changes, so stale twins on disk are rebuilt.
TWIN_VERSION = 5  # 5: a catalog entry added before others moved their seeds (_seed_for: catalog order)
_MARKER = "twin.json"

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_HIDDEN = 32  # text hidden size = UNet cross-attention dim
_MAX_TOKENS = 77  # CLIP's real context length, so prompt truncation behaves as with real models


def _byte_chars() -> list[str]:
    """The 256 printable characters byte-level BPE maps bytes to (GPT-2's table)."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


@cache
def _vocab() -> dict[str, int]:
    """CLIP's layout over single bytes: bytes, bytes ending a word, then the start and end tokens last."""
    chars = _byte_chars()
    tokens = chars + [c + "</w>" for c in chars] + [BOS, EOS]
    return {token: index for index, token in enumerate(tokens)}


def build_tokenizer(pad_token: str = EOS):
    """A CLIP BPE tokenizer over single bytes: every text tokenizes, nothing is downloaded.

    Laid out as CLIP's own vocabulary is (bytes, bytes ending a word, then the start and end tokens last,
    so the end token has the highest id, which CLIP's legacy pooling relies on). `pad_token` is the
    repository's: the end token for SD 1.x, "!" for the OpenCLIP tokenizers of SDXL and the upscaler.
    """
    from transformers import CLIPTokenizer

    return CLIPTokenizer(
        vocab=dict(_vocab()),
        merges=[],
        model_max_length=_MAX_TOKENS,
        pad_token=pad_token,
        unk_token=EOS,
        bos_token=BOS,
    )


_T5_SPECIAL = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2, as in T5's SentencePiece model


@cache
def _t5_pieces() -> list[tuple[str, float]]:
    """A Unigram vocabulary over printable ASCII, word-initial ("▁c") and inner ("c"), T5's specials first;
    other characters are `<unk>`, as characters outside T5's own vocabulary are."""
    import string

    chars = [c for c in string.printable if not c.isspace()]
    words = [("▁" + c, -3.0) for c in chars]
    return [(t, 0.0) for t in _T5_SPECIAL] + [("▁", -2.0)] + words + [(c, -4.0) for c in chars]


def build_t5_tokenizer(model_max_length: int, extra_ids: int):
    """T5's fast tokenizer laid out as T5 v1.1's (Metaspace words, `</s>` appended, `<extra_id_N>` last)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast  # type: ignore[attr-defined]  # transformers 5: a lazy alias

    tokenizer = Tokenizer(models.Unigram(_t5_pieces(), unk_id=_T5_SPECIAL.index("<unk>")))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    eos = _T5_SPECIAL.index("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    return T5TokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=extra_ids,
        model_max_length=model_max_length,
    )


def _t5_vocab_size() -> int:
    return len(_t5_pieces()) + 100  # the pieces and T5's 100 sentinel tokens


# Qwen2's added tokens, in the order of their ids (151643-151664 in Qwen2.5's vocabulary): the added tokens of a
# tokenizer config recorded without its `added_tokens_decoder` (Qwen-Image's)
QWEN_ADDED = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
_QWEN_FIRST_ADDED = 151643  # <|endoftext|>'s id in Qwen2.5's vocabulary
_QWEN_VOCAB = 256 + len(QWEN_ADDED)
_QWEN_NOT_SPECIAL = {"<tool_call>", "</tool_call>"}


def qwen_token_id(real_id: int) -> int:
    """The twin's id of one of Qwen2's added tokens, from its id in Qwen2.5's vocabulary."""
    return 256 + real_id - _QWEN_FIRST_ADDED


def _qwen_added(config: dict) -> dict:
    """A Qwen tokenizer config's added tokens by id: its own `added_tokens_decoder`, else Qwen2.5's (QWEN_ADDED)."""
    if "added_tokens_decoder" in config:
        return config["added_tokens_decoder"]
    flags = {"lstrip": False, "rstrip": False, "normalized": False, "single_word": False}
    return {
        str(_QWEN_FIRST_ADDED + index): {"content": token, **flags, "special": token not in _QWEN_NOT_SPECIAL}
        for index, token in enumerate(QWEN_ADDED)
    }


def build_qwen_tokenizer(config: dict, chat_template: str | None = None):
    """Qwen's byte-level BPE tokenizer over single bytes, with the repository's added tokens and chat template (the
    Qwen3 encoder of FLUX.2 [klein], Qwen2.5-VL's of Qwen-Image-Edit).

    Laid out as Qwen's own vocabulary is: the byte tokens first, then the added tokens in the order of their ids
    (`<|endoftext|>` first), so they keep their roles (special or not) and relative ids (`qwen_token_id`). `config`
    is the repository's tokenizer_config.json; the chat template is the one the pipeline applies to every prompt.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2TokenizerFast  # type: ignore[attr-defined]  # transformers 5: a lazy alias

    tokenizer = Qwen2TokenizerFast(
        vocab={char: index for index, char in enumerate(_byte_chars())},
        merges=[],
        unk_token=config.get("unk_token"),
        bos_token=config.get("bos_token"),
        eos_token=None,
        pad_token=None,
        add_prefix_space=config.get("add_prefix_space", False),
        errors=config.get("errors", "replace"),
        clean_up_tokenization_spaces=config.get("clean_up_tokenization_spaces", False),
        split_special_tokens=config.get("split_special_tokens", False),
        model_max_length=config["model_max_length"],
    )
    entries = sorted(_qwen_added(config).items(), key=lambda item: int(item[0]))
    keys = ("lstrip", "rstrip", "normalized", "single_word", "special")
    tokenizer.add_tokens([AddedToken(entry["content"], **{k: entry[k] for k in keys}) for _, entry in entries])
    tokenizer.add_special_tokens(
        {
            "eos_token": config["eos_token"],
            "pad_token": config["pad_token"],
            "additional_special_tokens": config.get("additional_special_tokens", []),
        }
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


# -- shrinking a published config -----------------------------------------------------------------

# Keys a twin may change, per class: sizes only. Everything else must equal the recorded config
# (tests/test_twin_fidelity.py checks it). Keys in DEPTH_KEYS are per-block lists a twin keeps a
# selection of, in order.
DEPTH_KEYS = {
    "down_block_types",
    "up_block_types",
    "only_cross_attention",
    "out_indices",
    "out_features",
    "dual_attention_layers",
    "layer_types",
}
_UNET_SIZES = {
    "block_out_channels",
    "layers_per_block",
    "attention_head_dim",
    "num_attention_heads",
    "cross_attention_dim",
    "norm_num_groups",
    "transformer_layers_per_block",
    "addition_time_embed_dim",
    "projection_class_embeddings_input_dim",
    "encoder_hid_dim",
    "time_cond_proj_dim",
}
_CLIP_SIZES = {"hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers", "projection_dim"}
_T5_SIZES = {"d_model", "d_ff", "d_kv", "num_heads", "num_layers", "num_decoder_layers", "vocab_size"}
_T5_WIDTH = 2 * _HIDDEN  # T5's width = the joint attention width, which must hold both CLIPs' states side by side
_DIT_SIZES = {
    "attention_head_dim",
    "num_attention_heads",
    "num_layers",
    "joint_attention_dim",
    "pooled_projection_dim",
}
# Qwen2.5-VL: the token ids sit at the end of the vocabulary and move with it (qwen_token_id); text_config and
# vision_config are the same model's sizes, nested
_QWEN_TOKEN_IDS = (
    "bos_token_id",
    "eos_token_id",
    "image_token_id",
    "video_token_id",
    "vision_start_token_id",
    "vision_end_token_id",
    "vision_token_id",
)
_QWEN_VL_SIZES = {
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_hidden_layers",
    "num_key_value_heads",
    "max_window_layers",
    "rope_scaling",  # its mrope_section splits the head width
    "vocab_size",
    "text_config",
    "vision_config",
    *_QWEN_TOKEN_IDS,
}
SIZE_KEYS: dict[str, set[str]] = {
    "UNet2DConditionModel": _UNET_SIZES | DEPTH_KEYS,
    "ControlNetModel": _UNET_SIZES | DEPTH_KEYS | {"conditioning_embedding_out_channels"},
    "AutoencoderKL": {"block_out_channels", "layers_per_block", "norm_num_groups"},
    "VQModel": {"block_out_channels", "layers_per_block", "norm_num_groups", "num_vq_embeddings"},
    "PriorTransformer": {"num_attention_heads", "attention_head_dim", "embedding_dim", "num_layers"},
    "CLIPTextModel": _CLIP_SIZES | {"vocab_size"},
    "CLIPTextModelWithProjection": _CLIP_SIZES | {"vocab_size"},
    "CLIPVisionModelWithProjection": _CLIP_SIZES,
    "T5EncoderModel": _T5_SIZES,
    # SD3's MMDiT: `dual_attention_layers` is a selection of its layers, `pos_embed_max_size` the largest latent grid
    "SD3Transformer2DModel": _DIT_SIZES | {"caption_projection_dim", "dual_attention_layers", "pos_embed_max_size"},
    # FLUX.1: the rotary axes split the head width, so they shrink with it
    "FluxTransformer2DModel": _DIT_SIZES | {"num_single_layers", "axes_dims_rope"},
    # FLUX.2: the rotary axes split the head width; joint attention is the text encoder's stacked layers' width
    "Flux2Transformer2DModel": {
        "attention_head_dim",
        "num_attention_heads",
        "num_layers",
        "num_single_layers",
        "joint_attention_dim",
        "axes_dims_rope",
    },
    "AutoencoderKLFlux2": {"block_out_channels", "layers_per_block", "norm_num_groups"},
    # Qwen3 as a text encoder: token ids of the special tokens move with the vocabulary (engine.models.tiny's layout)
    "Qwen3ForCausalLM": {
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "num_hidden_layers",
        "layer_types",
        "vocab_size",
        "bos_token_id",
        "eos_token_id",
    },
    # Qwen-Image: the rotary axes split the head width, as FLUX.1's do
    "QwenImageTransformer2DModel": _DIT_SIZES | {"axes_dims_rope"},
    "AutoencoderKLQwenImage": {"base_dim", "num_res_blocks"},
    "Qwen2_5_VLForConditionalGeneration": _QWEN_VL_SIZES,
    "StableDiffusionSafetyChecker": {"projection_dim", "text_config", "vision_config"},
    "DepthAnythingForDepthEstimation": {
        "backbone_config",
        "neck_hidden_sizes",
        "fusion_hidden_size",
        "head_hidden_size",
        "reassemble_hidden_size",
    },
}
_BACKBONE_SIZES = {"hidden_size", "num_hidden_layers", "num_attention_heads"} | DEPTH_KEYS


def _kept_blocks(config: dict) -> tuple[list[int], list[int]]:
    """Which down and up blocks a twin keeps: the first of each run of equal block types (a twin has
    every kind of block the real UNet has, once per run), and the up blocks that mirror them."""
    down = config["down_block_types"]
    if any(kind.startswith("K") for kind in down):  # k-diffusion blocks (x2 upscaler) only work as the full stack
        kept = list(range(len(down)))
    else:
        kept = [i for i, kind in enumerate(down) if i == 0 or kind != down[i - 1]]
    return kept, sorted(len(down) - 1 - i for i in kept)


def _pick(value, indices: list[int]):
    return [value[i] for i in indices] if isinstance(value, (list, tuple)) else value


def _text_width(config: dict) -> int:
    """The tiny cross-attention width: SDXL base attends to two text encoders' states side by side
    (CLIP ViT-L 768 + OpenCLIP bigG 1280 = 2048), every other UNet to one encoder's."""
    return 2 * _HIDDEN if config.get("cross_attention_dim") == 2048 else _HIDDEN


def _shrink_unet(config: dict) -> dict:
    text_dim = _text_width(config)
    down, up = _kept_blocks(config)
    n = len(down)
    widths = ([32, 32, 64, 64] if n == 4 else [32, 64, 64])[:n]
    out = {
        "down_block_types": _pick(config["down_block_types"], down),
        "up_block_types": _pick(config["up_block_types"], up),
        "block_out_channels": widths,
        "layers_per_block": 1,
        "cross_attention_dim": text_dim,
        "attention_head_dim": [2] * n if isinstance(config.get("attention_head_dim"), list) else 8,
    }
    if isinstance(config.get("only_cross_attention"), list):
        out["only_cross_attention"] = _pick(config["only_cross_attention"], down)
    if config.get("norm_num_groups") is not None:
        out["norm_num_groups"] = 8
    if config.get("transformer_layers_per_block") is not None:
        out["transformer_layers_per_block"] = 1
    if config.get("addition_embed_type") == "text_time":  # SDXL: bigG's pooled text + 5 (refiner) or 6 time ids
        out["addition_time_embed_dim"] = 8
        ids = (config["projection_class_embeddings_input_dim"] - 1280) // config["addition_time_embed_dim"]
        out["projection_class_embeddings_input_dim"] = _HIDDEN + ids * 8
    if config.get("encoder_hid_dim") is not None:
        out["encoder_hid_dim"] = text_dim
    if config.get("time_cond_proj_dim") is not None:  # the x2 upscaler: noise-level embedding (128) + pooled text
        out["time_cond_proj_dim"] = 128 + text_dim
    return out


def _shrink_autoencoder(config: dict) -> dict:
    # as many blocks as the real one (the VAE's scale factor), narrow
    return {
        "block_out_channels": [8, 16, 16, 16][: len(config["block_out_channels"])],
        "layers_per_block": 1,
        "norm_num_groups": 8,
    }


def _shrink_vq(config: dict) -> dict:
    # 32 channels: the spatial norm of the MoVQ decoder hard-codes 32 groups
    return {
        "block_out_channels": [32] * len(config["block_out_channels"]),
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "num_vq_embeddings": 12,
    }


def _shrink_clip(config: dict) -> dict:
    return {
        "hidden_size": _HIDDEN,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "projection_dim": _HIDDEN,
    }


def _shrink_t5(config: dict) -> dict:
    return {"d_model": _T5_WIDTH, "d_ff": 37, "d_kv": 8, "num_heads": 4, "num_layers": 2, "num_decoder_layers": 2}


def _shrink_sd3(config: dict) -> dict:
    # pooled: both CLIPs' projections side by side; joint: T5's width; the caption projection is the inner width
    return {
        "attention_head_dim": 8,
        "num_attention_heads": 4,
        "caption_projection_dim": 32,
        "num_layers": 2,
        "dual_attention_layers": [0] if config.get("dual_attention_layers") else [],
        "joint_attention_dim": _T5_WIDTH,
        "pooled_projection_dim": 2 * _HIDDEN,
        "pos_embed_max_size": 128,  # latent grids up to 256x256 patches: 2048-pixel sides
    }


def _shrink_flux(config: dict) -> dict:
    # pooled: CLIP ViT-L's pooled output; joint: T5's width
    return {
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "num_layers": 1,
        "num_single_layers": 1,
        "joint_attention_dim": _T5_WIDTH,
        "pooled_projection_dim": _HIDDEN,
        "axes_dims_rope": [4, 6, 6],
    }


# FLUX.2 [klein] reads the hidden states of three of Qwen3's layers, stacked side by side
# (Flux2KleinPipeline's default `text_encoder_out_layers`, (9, 18, 27) of Qwen3-4B's 36): the twin keeps enough
# layers for those indices to exist, each of them tiny, so the pipeline runs with its own defaults.
_QWEN_WIDTH = 16
_QWEN_LAYERS = 28
_KLEIN_TEXT_LAYERS = 3


def _shrink_qwen3(config: dict) -> dict:
    layers = min(_QWEN_LAYERS, config["num_hidden_layers"])
    out = {
        "hidden_size": _QWEN_WIDTH,
        "intermediate_size": 37,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 8,
        "num_hidden_layers": layers,
    }
    if isinstance(config.get("layer_types"), list):
        out["layer_types"] = config["layer_types"][:layers]
    return out


def _shrink_flux2(config: dict) -> dict:
    # joint: the stacked hidden states of the text encoder's layers; the rotary axes sum to the head width
    return {
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "num_layers": 1,
        "num_single_layers": 1,
        "joint_attention_dim": _KLEIN_TEXT_LAYERS * _QWEN_WIDTH,
        "axes_dims_rope": [4] * len(config["axes_dims_rope"]),
    }


def _shrink_qwen_image(config: dict) -> dict:
    # joint: the text encoder's width (Qwen2.5-VL's hidden states); the rotary axes sum to the head width
    return {
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "num_layers": 1,
        "joint_attention_dim": _HIDDEN,
        "axes_dims_rope": [4, 6, 6],
    }


def _shrink_qwen_vae(config: dict) -> dict:
    # as many stages as the real one (dim_mult, temperal_downsample: the scale factor 8), narrow
    return {"base_dim": 2, "num_res_blocks": 1}  # 2: it encodes every reference at about a megapixel


def _shrink_qwen_vl(config: dict) -> dict:
    """Qwen2.5-VL: a 2-layer language model as wide as the transformer's joint attention, a 2-block vision tower;
    the multimodal rotary sections (temporal, height, width) split the twin's head width (16: 2+3+3 pairs) in the
    proportions of the real 16+24+24."""
    heads = 2
    text = {
        "hidden_size": _HIDDEN,
        "intermediate_size": 37,
        "num_attention_heads": heads,
        "num_key_value_heads": 1,
        "num_hidden_layers": 2,
        "max_window_layers": 2,
        "rope_scaling": {**config["rope_scaling"], "mrope_section": [2, 3, 3]},
        "vocab_size": _QWEN_VOCAB,
    }
    ids = {key: qwen_token_id(config[key]) for key in _QWEN_TOKEN_IDS if isinstance(config.get(key), int)}
    text_config = dict(config["text_config"])
    text_ids = {
        key: qwen_token_id(text_config[key]) for key in _QWEN_TOKEN_IDS if isinstance(text_config.get(key), int)
    }
    text_config.update(text, **text_ids)
    if isinstance(text_config.get("layer_types"), list):
        text_config["layer_types"] = text_config["layer_types"][: text["num_hidden_layers"]]
    vision = {
        **config["vision_config"],
        "depth": 2,
        "hidden_size": 16,
        "intermediate_size": 16,
        "num_heads": 2,
        "out_hidden_size": _HIDDEN,
    }
    return {**text, **ids, "text_config": text_config, "vision_config": vision}


def _shrink_depth_anything(config: dict) -> dict:
    backbone = dict(config["backbone_config"])
    backbone.update(
        hidden_size=_HIDDEN,
        num_hidden_layers=4,
        num_attention_heads=2,
        out_indices=[1, 2, 3, 4],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    return {
        "backbone_config": backbone,
        "neck_hidden_sizes": [8, 16, 32, 32],
        "fusion_hidden_size": 16,
        "head_hidden_size": 8,
        "reassemble_hidden_size": _HIDDEN,
    }


_SHRINK: dict[str, Callable[[dict], dict]] = {
    "UNet2DConditionModel": _shrink_unet,
    "AutoencoderKL": _shrink_autoencoder,
    "VQModel": _shrink_vq,
    "PriorTransformer": lambda c: {
        "num_attention_heads": 2,
        "attention_head_dim": 12,
        "embedding_dim": _HIDDEN,
        "num_layers": 1,
    },
    "CLIPTextModel": _shrink_clip,
    "CLIPTextModelWithProjection": _shrink_clip,
    "CLIPVisionModelWithProjection": _shrink_clip,
    "T5EncoderModel": _shrink_t5,
    "SD3Transformer2DModel": _shrink_sd3,
    "FluxTransformer2DModel": _shrink_flux,
    "Flux2Transformer2DModel": _shrink_flux2,
    "AutoencoderKLFlux2": _shrink_autoencoder,
    "Qwen3ForCausalLM": _shrink_qwen3,
    "DepthAnythingForDepthEstimation": _shrink_depth_anything,
    "QwenImageTransformer2DModel": _shrink_qwen_image,
    "AutoencoderKLQwenImage": _shrink_qwen_vae,
    "Qwen2_5_VLForConditionalGeneration": _shrink_qwen_vl,
}


def shrunk(class_name: str, config: dict) -> dict:
    """A recorded config with its size fields made tiny; every other key as recorded."""
    return {**config, **_SHRINK[class_name](config)}


def published_scheduler(hub_id: str):
    """A repository's own scheduler, from its recorded config (for pipelines built in memory)."""
    import diffusers

    config = repo_facts(hub_id).required("scheduler/scheduler_config.json")
    return getattr(diffusers, config["_class_name"]).from_config(config)


# -- building and writing components --------------------------------------------------------------


def _component_seed(seed: int, name: str) -> int:
    return seed * 1000 + zlib.crc32(name.encode()) % 1000


def _diffusers_model(class_name: str, config: dict):
    import diffusers
    import torch

    model = getattr(diffusers, class_name).from_config(shrunk(class_name, config))
    if class_name == "PriorTransformer":
        # clip_std starts at 0, which would make every embedding 0; the real prior has learned statistics
        model.clip_std = torch.nn.Parameter(torch.ones_like(model.clip_std))
    return model


def _transformers_model(class_name: str, config: dict, tokens: int):
    import transformers

    if class_name == "StableDiffusionSafetyChecker":
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

        text = {**config["text_config"], **_shrink_clip(config["text_config"]), "vocab_size": tokens}
        vision = {**config["vision_config"], **_shrink_clip(config["vision_config"])}
        clip = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=_HIDDEN)
        clip.architectures = config.get("architectures")
        return StableDiffusionSafetyChecker(clip)
    cfg = shrunk(class_name, config)
    if "vocab_size" in SIZE_KEYS[class_name]:
        cfg["vocab_size"] = tokens
    if class_name == "DepthAnythingForDepthEstimation":
        backbone = transformers.Dinov2Config(**cfg.pop("backbone_config"))
        depth_config = transformers.DepthAnythingConfig(backbone_config=backbone, **cfg)
        return transformers.DepthAnythingForDepthEstimation(depth_config)
    model_class = getattr(transformers, class_name)
    model = model_class(model_class.config_class(**cfg))
    if class_name == "T5EncoderModel":
        # T5EncoderModel turns its config into an encoder-only one (no cache, not encoder-decoder, tied
        # embeddings); the published file is the whole T5's, and the twin saves it as published
        for key in ("is_encoder_decoder", "use_cache", "tie_word_embeddings"):
            setattr(model.config, key, cfg[key])
    return model


def _save_weights(model, folder: Path, facts: RepoFacts) -> None:
    """save_pretrained, then the weight files the repository publishes: its formats and variants."""
    import torch
    from safetensors.torch import load_file, save_file

    model.save_pretrained(folder)
    written = next(folder.glob("*.safetensors"))  # model.safetensors or diffusion_pytorch_model.safetensors
    state = load_file(written)
    stem = written.stem
    pickle_stem = "pytorch_model" if stem == "model" else stem
    half = {k: (t.half() if t.is_floating_point() else t) for k, t in state.items()}
    if PICKLE in facts.formats:
        torch.save(state, folder / f"{pickle_stem}.bin")
    for variant in facts.variants:
        if SAFETENSORS in facts.formats:
            save_file(half, folder / f"{stem}.{variant}.safetensors", metadata={"format": "pt"})
        if PICKLE in facts.formats:
            torch.save(half, folder / f"{pickle_stem}.{variant}.bin")
    if SAFETENSORS not in facts.formats:
        written.unlink()


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _write_component(facts: RepoFacts, name: str, library: str, class_name: str, folder: Path, seed: int) -> None:
    import torch

    target = folder / name
    target.mkdir(parents=True, exist_ok=True)
    if class_name.endswith("Scheduler"):
        _write_json(target / "scheduler_config.json", facts.required(f"{name}/scheduler_config.json"))
        return
    if class_name == "CLIPImageProcessor":
        _write_json(target / "preprocessor_config.json", facts.required(f"{name}/preprocessor_config.json"))
        return
    if class_name == "T5TokenizerFast":
        config = facts.required(f"{name}/tokenizer_config.json")
        build_t5_tokenizer(config["model_max_length"], config["extra_ids"]).save_pretrained(target)
        return
    if class_name in ("Qwen2Tokenizer", "Qwen2TokenizerFast"):  # Qwen-Image's (Qwen2.5-VL's), FLUX.2's (Qwen3's)
        _qwen_tokenizer(facts, name).save_pretrained(target)
        return
    if class_name == "Qwen2VLProcessor":
        _write_qwen_processor(facts, name, target)
        return
    if class_name == "CLIPTokenizer":
        special = facts.required(f"{name}/special_tokens_map.json")
        pad = special["pad_token"]
        build_tokenizer(pad_token=pad if isinstance(pad, str) else pad["content"]).save_pretrained(target)
        return
    torch.manual_seed(_component_seed(seed, name))
    config = facts.required(f"{name}/config.json")
    if class_name == "Qwen3ForCausalLM":
        _write_qwen3(facts, config, target)
        return
    if library == "diffusers":
        model = _diffusers_model(class_name, config)
    else:
        tokens = {"T5EncoderModel": _t5_vocab_size(), "Qwen2_5_VLForConditionalGeneration": _QWEN_VOCAB}
        model = _transformers_model(class_name, config, tokens.get(class_name, len(_vocab())))
    _save_weights(model, target, facts)
    if class_name == "Qwen2_5_VLForConditionalGeneration":
        # transformers 5 saves Qwen2.5-VL's config in its own layout (text keys only under text_config); the
        # repository's file has them at the top as well, and the twin keeps its layout, sizes shrunk. Its dtype is
        # the twin's weights' (float32): transformers 5 loads a model in the dtype its config names unless told
        _write_json(target / "config.json", _with_dtype(shrunk(class_name, config), "float32"))


def _with_dtype(config: dict, dtype: str) -> dict:
    """A transformers config naming `dtype` wherever it names one (the top, text_config, vision_config)."""
    out = {key: _with_dtype(value, dtype) if isinstance(value, dict) else value for key, value in config.items()}
    for key in ("torch_dtype", "dtype"):
        if key in out:
            out[key] = dtype
    return out


def _write_qwen_processor(facts: RepoFacts, name: str, target: Path) -> None:
    """Qwen2-VL's processor: the repository's image processor config, the twin tokenizer and the chat template."""
    from transformers import AutoImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    _write_json(target / "preprocessor_config.json", facts.required(f"{name}/preprocessor_config.json"))
    image_processor = AutoImageProcessor.from_pretrained(target)
    tokenizer = build_qwen_tokenizer(facts.required(f"{name}/tokenizer_config.json"))
    template = facts.folder / name / "chat_template.jinja"
    chat_template = template.read_text() if template.is_file() else None
    # the video processor at its defaults (the repository's video_preprocessor_config.json was on no page; the
    # pipeline reads no video)
    video_processor = Qwen2VLVideoProcessor()
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=chat_template,
    )
    processor.save_pretrained(target)
    # the repository's image processor config as published (the processor saves its own defaults around it)
    _write_json(target / "preprocessor_config.json", facts.required(f"{name}/preprocessor_config.json"))


def _qwen_tokenizer(facts: RepoFacts, name: str = "tokenizer"):
    """The twin's Qwen tokenizer for a repository's tokenizer folder (its config and chat template)."""
    template = facts.folder / name / "chat_template.jinja"
    config = facts.required(f"{name}/tokenizer_config.json")
    return build_qwen_tokenizer(config, template.read_text() if template.is_file() else config.get("chat_template"))


def _qwen3_config(facts: RepoFacts, config: dict) -> dict:
    """A Qwen3 text encoder's config as its twin publishes it: the recorded one with sizes shrunk, the vocabulary the
    twin tokenizer's and the special token ids (bos, eos) those tokens have in it."""
    tokenizer = _qwen_tokenizer(facts)
    added = facts.required("tokenizer/tokenizer_config.json")["added_tokens_decoder"]
    cfg = {**shrunk("Qwen3ForCausalLM", config), "vocab_size": len(tokenizer)}
    for key in ("bos_token_id", "eos_token_id"):
        if config.get(key) is not None:
            cfg[key] = tokenizer.convert_tokens_to_ids(added[str(config[key])]["content"])
    return cfg


def _write_qwen3(facts: RepoFacts, config: dict, target: Path) -> None:
    """Qwen3ForCausalLM with random weights; its config.json is the recorded file with sizes shrunk. transformers 5
    saves rope_theta/rope_scaling as `rope_parameters`, and reads either; the twin keeps the published keys."""
    import transformers

    cfg = _qwen3_config(facts, config)
    model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**cfg))
    _save_weights(model, target, facts)
    saved = json.loads((target / "config.json").read_text())
    bookkeeping = {key: saved[key] for key in ("dtype", "transformers_version") if key in saved}
    _write_json(target / "config.json", {**cfg, **bookkeeping})


def write_pipeline_repo(facts: RepoFacts, folder: Path, seed: int, prior: str | None = None) -> None:
    """Every component of a diffusers pipeline repository, as its model_index.json lists them."""
    index = facts.required("model_index.json")
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or entry[0] is None:
            continue
        _write_component(facts, name, entry[0], entry[1], folder, seed)
    _write_json(folder / "model_index.json", index)
    if prior is not None:
        # diffusers reads connected pipelines from the card's `prior:` list, as in the real decoder repo
        (folder / "README.md").write_text(f"---\nprior:\n- {prior}\n---\nTiny twin of {facts.hub_id}.\n")


def _write_controlnet(facts: RepoFacts, folder: Path, seed: int, base_key: str) -> None:
    """A depth ControlNet's twin: ControlNetModel.from_unet on its base model's twin UNet (SD 1.5, SDXL base),
    as diffusers initialises a new ControlNet, so its blocks line up with the base UNet the way the real
    one's do."""
    import torch
    from diffusers import ControlNetModel

    base = repo_facts(get_spec(base_key).hub_id)
    torch.manual_seed(_component_seed(_seed_for(base_key), "unet"))  # the base twin's own UNet weights
    unet = _diffusers_model("UNet2DConditionModel", base.required("unet/config.json"))
    recorded = facts.required("config.json")
    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(
        unet,
        controlnet_conditioning_channel_order=recorded["controlnet_conditioning_channel_order"],
        conditioning_embedding_out_channels=[8] * len(recorded["conditioning_embedding_out_channels"]),
    )
    # A new ControlNet's output convolutions start at zero, so it would not steer anything; a trained one
    # does. Random weights there make the twin's depth map change the image, as the real one does.
    zero_convs = [controlnet.controlnet_cond_embedding.conv_out, *controlnet.controlnet_down_blocks]
    for conv in [*zero_convs, controlnet.controlnet_mid_block]:
        conv.reset_parameters()
    _save_weights(controlnet, folder, facts)


def _write_midas(facts: RepoFacts, folder: Path, seed: int) -> None:
    """controlnet-aux's DPT-Hybrid MiDaS at its real, fixed size (123M parameters, ~0.5 GB) with random
    weights, saved as the state dict MidasDetector.from_pretrained loads, under the repository's file name."""
    import torch
    from controlnet_aux.midas.midas.dpt_depth import DPTDepthModel

    from engine.models.estimators import ANNOTATOR_FILES

    torch.manual_seed(seed)
    model = DPTDepthModel(path=None, backbone="vitb_rn50_384", non_negative=True)
    # The head ends in a ReLU; random weights can leave it all zero (a blank map), trained ones do not.
    with torch.no_grad():
        model.scratch.output_conv[4].bias.fill_(1.0)
    torch.save(model.state_dict(), folder / ANNOTATOR_FILES["midas"][0])


def _write_depth_anything(facts: RepoFacts, folder: Path, seed: int) -> None:
    """Depth Anything V2 Small from its published config, shrunk, with its published image processor."""
    import torch

    torch.manual_seed(seed)
    model = _transformers_model("DepthAnythingForDepthEstimation", facts.required("config.json"), 0)
    _save_weights(model, folder, facts)
    _write_json(folder / "preprocessor_config.json", facts.required("preprocessor_config.json"))


# How a twin is written: a diffusion family's adapter names its layout (engine.models.families: Family.twin); a depth
# estimator's family has its own writer. Estimators not here have no twin (ZoeDepth and LeReS: controlnet-aux
# builds them at full size only, 1.4 GB and 0.85 GB of random weights).
# (facts, folder, seed) -> the twin's files; a pipeline with a connected prior gets it as a fourth argument.
_LAYOUTS: dict[str, Callable[..., None]] = {"pipeline": write_pipeline_repo, "controlnet": _write_controlnet}
_ESTIMATORS: dict[str, Callable[..., None]] = {
    "midas": _write_midas,
    "depth-anything-v2": _write_depth_anything,
}


def _writer(spec: ModelSpec) -> Callable[..., None] | None:
    """The writer of a catalog entry's twin, or None when it has none."""
    if "depth" in spec.kinds:
        return _ESTIMATORS.get(spec.family)
    return _LAYOUTS[spec.adapter.twin]


def has_twin(key: str) -> bool:
    """Whether a tiny twin can be built for this catalog key."""
    return _writer(get_spec(key)) is not None


def _write_twin(key: str, folder: Path, prior: str | None) -> None:
    """A twin's files; `prior` names a pipeline's connected prior (a twin folder, or a repo id in a Hub cache)."""
    spec = get_spec(key)
    writer = _writer(spec)
    assert writer is not None  # build_twin checked has_twin
    extra = [prior] if prior else []
    if writer is _write_controlnet:
        base = spec.adapter.controlnet_base
        assert base is not None, f"{key}: a ControlNet family names its base model"
        extra = [base]
    writer(repo_facts(spec.hub_id), folder, _seed_for(key), *extra)


def twin_dir(root: Path, key: str) -> Path:
    """Where the twin of `key` lives under `root`."""
    get_spec(key)  # validates the key before it becomes part of a path
    return Path(root) / key


def _seed_for(key: str) -> int:
    # Distinct but fixed weights per entry: the style fine-tunes are different models, like the real ones.
    return list(CATALOG).index(key)


def _staged(root: Path, target: Path, write: Callable[[Path], None], *, replace_current: bool = False) -> None:
    """Write into a temporary sibling and rename, so a crash never leaves half a twin.

    Several processes may build the same twin at once (Ray Serve replicas sharing a data dir): a current
    twin another one finished meanwhile is kept, not swapped under a process loading from it, unless
    `replace_current` (a forced rebuild)."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        write(staging)
        if target.exists():
            if not replace_current and _is_current(target / _MARKER):
                return
            shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:  # another process renamed its own build into place first
            if not _is_current(target / _MARKER):
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _is_current(marker: Path) -> bool:
    return marker.is_file() and json.loads(marker.read_text()).get("version") == TWIN_VERSION


def build_twin(key: str, root: Path, *, force: bool = False) -> Path:
    """Write the twin of `key` under `root` (idempotent) and return its folder.

    Kandinsky 2.2's decoder gets its prior built too, linked through the model card as on the Hub.

    Raises:
        ValueError: unknown key, or a family that has no twin builder.
    """
    spec = get_spec(key)
    if not has_twin(key):
        raise ValueError(f"there is no tiny twin of {key!r}: its architecture cannot be built offline here")
    root = Path(root).resolve()
    target = twin_dir(root, key)
    if not force and _is_current(target / _MARKER):
        return target
    prior = str(build_twin(spec.prior, root, force=force)) if spec.prior else None

    def write(staging: Path) -> None:
        _write_twin(key, staging, prior)
        marker = {"version": TWIN_VERSION, "key": key, "twin_of": spec.hub_id, "seed": _seed_for(key)}
        (staging / _MARKER).write_text(json.dumps(marker))

    _staged(root, target, write, replace_current=force)
    logger.info("built tiny twin of %s in %s", spec.hub_id, target)
    return target


def build_all(root: Path, *, force: bool = False) -> list[Path]:
    """Build every twin that has a builder; returns their folders."""
    return [build_twin(key, root, force=force) for key in CATALOG if has_twin(key)]


# -- the twins as a Hugging Face cache ------------------------------------------------------------


def _git_blob_id(path: Path, size: int) -> str:
    """Git's blob id of a file (the tree listing's `blob_id`), read in chunks: MiDaS alone is 0.5 GB."""
    digest = hashlib.sha1(b"blob %d\0" % size)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _lay_out_cache(repo_folder: Path, files: Path, commit: str) -> None:
    """Move the files of one snapshot into the Hub cache layout: content in blobs/, the snapshot as
    links to it, refs/main naming the commit, and the tree listing huggingface_hub caches per commit."""
    blobs, snapshot = repo_folder / "blobs", repo_folder / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    tree = {}
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        relative = path.relative_to(files).as_posix()
        size = path.stat().st_size
        blob_id = _git_blob_id(path, size)
        blob = blobs / blob_id
        if not blob.exists():
            path.rename(blob)
        link = snapshot / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
        tree[relative] = {"size": size, "blob_id": blob_id}
    (repo_folder / "refs").mkdir(exist_ok=True)
    (repo_folder / "refs" / "main").write_text(commit)
    _write_json(repo_folder / "trees" / f"{commit}.json", {"format_version": 1, "files": tree})


def cache_repo_folder(cache: Path, hub_id: str) -> Path:
    """The folder huggingface_hub keeps a model repository in, under a cache root."""
    return Path(cache) / ("models--" + hub_id.replace("/", "--"))


HUB_TWIN_MARKER = "studio-twin.json"  # beside a repository's snapshots in a cache write_hub_cache wrote


def twins_in_hub_cache(cache: Path) -> list[str]:
    """The catalog's Hub repositories whose copy in the Hugging Face cache `cache` is a twin (its marker file),
    so hub mode can say its images are noise from random weights."""
    return sorted(
        {
            get_spec(key).hub_id
            for key in CATALOG
            if (cache_repo_folder(Path(cache), get_spec(key).hub_id) / HUB_TWIN_MARKER).is_file()
        }
    )


def hub_cache_holds_only_twins(cache: Path) -> bool:
    """Whether the catalog's repositories in the Hugging Face cache `cache` are all twins (at least one there, and
    no real one): then every model hub mode loads is a twin."""
    folders = [cache_repo_folder(Path(cache), get_spec(key).hub_id) for key in CATALOG]
    present = [folder for folder in folders if folder.is_dir()]
    return bool(present) and all((folder / HUB_TWIN_MARKER).is_file() for folder in present)


def write_hub_cache(cache: Path, *, force: bool = False) -> list[Path]:
    """Write the twins as a Hugging Face cache under their real repository ids (idempotent).

    One snapshot per repository, at the commit recorded in engine.models.repos, with the repository's own
    file names and formats; Kandinsky's decoder names its prior by repo id, as on the Hub. The weights
    equal the tiny-mode twins' (same seeds), so hub mode and tiny mode make the same images.
    """
    cache = Path(cache).resolve()
    written: list[Path] = []
    for key in CATALOG:
        spec = get_spec(key)
        if not has_twin(key):
            continue
        facts = repo_facts(spec.hub_id)
        target = cache_repo_folder(cache, spec.hub_id)
        marker = target / HUB_TWIN_MARKER
        if not force and _is_current(marker):
            continue  # written already, or a repository shared with an earlier key (the annotators)

        prior = get_spec(spec.prior).hub_id if spec.prior else None  # named by repo id, as on the Hub

        def write(staging: Path, key=key, facts=facts, prior=prior) -> None:
            files = staging / ".files"
            files.mkdir()
            _write_twin(key, files, prior)
            _lay_out_cache(staging, files, facts.commit)
            shutil.rmtree(files)
            (staging / HUB_TWIN_MARKER).write_text(json.dumps({"version": TWIN_VERSION, "key": key}))

        _staged(cache, target, write)
        written.append(target)
        logger.info("wrote the twin of %s into the hub cache %s", spec.hub_id, cache)
    return written


LORA_TARGETS = {  # the attention projections LoRA trainers target (kohya's and diffusers' scripts)
    "unet": ["to_q", "to_k", "to_v", "to_out.0"],
    "text_encoder": ["q_proj", "k_proj", "v_proj", "out_proj"],
}


def write_lora(twin: Path, path: Path, *, seed: int = 0, rank: int = 4) -> Path:
    """A LoRA for the SD 1.5 twin at `twin`, shaped from its own modules (UNet and text encoder attention), with
    random non-zero deltas so it changes the image; saved as diffusers' `save_lora_weights` writes it."""
    import torch
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    pipe = StableDiffusionPipeline.from_pretrained(twin, use_safetensors=True, safety_checker=None)
    torch.manual_seed(seed)
    layers = {}
    for name, targets in LORA_TARGETS.items():
        module = getattr(pipe, name)
        # init_lora_weights=False draws both matrices at random: a trained LoRA's B is not zero either.
        # peft itself, not the models' add_adapter: transformers 5.24+ ties its integration to peft >= 0.22
        config = LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights=False)
        inject_adapter_in_model(config, module)
        state = get_peft_model_state_dict(module)
        if name == "text_encoder":  # published LoRAs name CLIP's layers under text_model. (transformers 5 drops it)
            state = {key if key.startswith("text_model.") else f"text_model.{key}": t for key, t in state.items()}
        layers[f"{name}_lora_layers"] = state
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(path.parent, weight_name=path.name, safe_serialization=True, **layers)
    return path


def write_owner_examples(folder: Path, twins: Path) -> tuple[Path, Path]:
    """An example STUDIO_MODELS_DIR and STUDIO_LORA_DIR for tiny mode: the SD 1.5 twin as a single-file checkpoint
    in the original layout, and two LoRAs for it."""
    from engine.models.ldm import write_single_file

    models, loras = Path(folder) / "models", Path(folder) / "loras"
    models.mkdir(parents=True, exist_ok=True)
    twin = build_twin("sd15", twins)
    write_single_file(twin, models / "my-sd15.safetensors")
    for seed, name in enumerate(("paper-cut", "ink-wash")):
        write_lora(twin, loras / f"{name}.safetensors", seed=seed)
    return models, loras


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the tiny random-weight twin of every catalog model.")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="folder to write one sub-folder per catalog key into")
    where.add_argument(
        "--hub-cache",
        type=Path,
        help="write a Hugging Face cache of the twins under the real repo ids; then run "
        "HF_HUB_CACHE=DIR HF_HUB_OFFLINE=1 python app.py --models hub",
    )
    where.add_argument(
        "--owner-examples",
        type=Path,
        help="write DIR/models (a single-file SD 1.5 twin) and DIR/loras (two LoRAs for it); then run "
        "STUDIO_MODELS_DIR=DIR/models STUDIO_LORA_DIR=DIR/loras python app.py --models tiny",
    )
    parser.add_argument("--twins", type=Path, default=Path(".huggingface/twins"), help="where the twins are built")
    parser.add_argument("--force", action="store_true", help="rebuild twins that already exist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.owner_examples is not None:
        for path in write_owner_examples(args.owner_examples, args.twins):
            print(path.resolve())
        return
    if args.hub_cache is not None:
        write_hub_cache(args.hub_cache, force=args.force)
        print(args.hub_cache.resolve())
        return
    for path in build_all(args.out, force=args.force):
        print(path)


if __name__ == "__main__":
    main()
