"""Qwen-Image-Edit-2511 (QwenImageEditPlusPipeline): its twin builds from the recorded configs, loads as diffusers
maps the repository (AutoPipelineForImage2Image), edits one image or several at the size asked, with true CFG and a
negative prompt (hub mode and equality with plain diffusers through the Edit workflow: tests/test_edit.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.models.catalog import get_spec
from engine.models.families import get_family
from engine.models.repos import repo_facts
from engine.models.tiny import build_twin, qwen_token_id
from engine.pipelines.live import latent_rgb_images

KEY = "qwen-image-edit-2511"
WIDTH, HEIGHT = 64, 48


@pytest.fixture(scope="module")
def twin(twins):
    return build_twin(KEY, twins)


@pytest.fixture(scope="module")
def pipe(twin):
    import diffusers

    return diffusers.AutoPipelineForImage2Image.from_pretrained(twin)


@pytest.fixture(scope="module")
def references():
    from skimage import data

    return [Image.fromarray(data.chelsea()).resize((96, 64)), Image.fromarray(data.astronaut()).resize((64, 64))]


def edit(pipe, images, **extra):
    """One edit call as the family asks for it: its size arguments, its guidance argument, a negative prompt."""
    family = get_spec(KEY).adapter
    arguments = {
        "image": images,
        "prompt": "make the cat wear a space helmet",
        "negative_prompt": "blurry, low quality",
        family.guidance_argument: 4.0,
        "num_inference_steps": 2,
        "generator": torch.Generator().manual_seed(7),
        **family.edit_size(WIDTH, HEIGHT),
        **extra,
    }
    return pipe(**arguments).images[0]


def test_the_family_is_an_edit_family_with_true_cfg():
    spec = get_spec(KEY)
    family = get_family("qwenimage-edit")
    assert spec.adapter is family and spec.kinds == ("edit",)
    assert family.max_references == 3 and family.guidance_argument == "true_cfg_scale"
    assert family.negative_prompt and family.passes_size and family.cuda_dtype == "bfloat16"
    assert family.edit_size(WIDTH, HEIGHT) == {"height": HEIGHT, "width": WIDTH}
    assert spec.size_multiple == 16 and spec.native_size == 1024 and not spec.preloaded


def test_the_twin_has_the_repositorys_components_and_matching_widths(twin):
    facts = repo_facts(get_spec(KEY).hub_id)
    assert json.loads((twin / "model_index.json").read_text()) == facts.model_index()
    transformer = json.loads((twin / "transformer" / "config.json").read_text())
    text_encoder = json.loads((twin / "text_encoder" / "config.json").read_text())
    # the transformer attends to the text encoder's hidden states
    assert (
        transformer["joint_attention_dim"] == text_encoder["hidden_size"] == text_encoder["text_config"]["hidden_size"]
    )
    assert transformer["zero_cond_t"] is True  # 2511's conditioning (references at t=0)
    assert sum(transformer["axes_dims_rope"]) == transformer["attention_head_dim"]
    assert text_encoder["vision_config"]["out_hidden_size"] == text_encoder["hidden_size"]


def test_the_twin_tokenizer_holds_the_prompt_templates_tokens_at_the_configs_ids(twin):
    from transformers import AutoProcessor, Qwen2Tokenizer

    config = json.loads((twin / "text_encoder" / "config.json").read_text())
    tokenizer = Qwen2Tokenizer.from_pretrained(twin / "tokenizer")
    processor = AutoProcessor.from_pretrained(twin / "processor")
    # the ids Qwen2.5's vocabulary gives them, moved to the twin's (bytes first, then Qwen2's added tokens)
    for token, key, real_id in (
        ("<|image_pad|>", "image_token_id", 151655),
        ("<|video_pad|>", "video_token_id", 151656),
        ("<|vision_start|>", "vision_start_token_id", 151652),
        ("<|vision_end|>", "vision_end_token_id", 151653),
    ):
        assert tokenizer.convert_tokens_to_ids(token) == config[key] == qwen_token_id(real_id), token
        assert processor.tokenizer.convert_tokens_to_ids(token) == config[key], token
    assert len(tokenizer) == config["vocab_size"]
    text = "<|im_start|>user\nPicture 1: <|vision_start|><|image_pad|><|vision_end|>ünïcode<|im_end|>"
    ids = tokenizer(text).input_ids
    assert tokenizer.decode(ids) == text
    assert ids.count(config["image_token_id"]) == 1 and ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"


def test_the_twin_loads_as_the_edit_plus_pipeline(pipe):
    import diffusers

    assert type(pipe) is diffusers.QwenImageEditPlusPipeline
    assert pipe.vae_scale_factor * 2 == get_spec(KEY).size_multiple


@pytest.mark.parametrize("count", [1, 2])
def test_an_edit_with_true_cfg_makes_the_size_asked(pipe, references, count):
    image = edit(pipe, references[:count])
    assert image.size == (WIDTH, HEIGHT)
    assert np.asarray(image).std() > 0  # noise from random weights, not a blank


def test_the_live_preview_reads_the_callbacks_packed_latents(pipe, references):
    seen = []

    def callback(pipeline, step, timestep, tensors):
        seen.append(tensors["latents"].clone())
        return {}

    edit(pipe, references[:1], callback_on_step_end=callback)
    family = get_spec(KEY).adapter
    assert family.latent_rgb is not None
    latents = seen[-1]
    assert latents.ndim == 3 and latents.shape[-1] == 16 * 4  # (batch, 2x2 patches, channels x 4)
    (preview,) = latent_rgb_images(latents, family.latent_rgb, (WIDTH, HEIGHT))
    assert preview.size == (WIDTH // 8, HEIGHT // 8)
