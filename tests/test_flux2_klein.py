"""FLUX.2 [klein] 4B: its twin (FLUX.2's transformer and VAE, Qwen3 as the text encoder, Qwen's tokenizer with its
chat template) loads as diffusers maps it and edits one image or several at the size asked (hub mode and equality
with plain diffusers through the Edit workflow: tests/test_edit.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.models.catalog import get_spec
from engine.models.repos import repo_facts
from engine.models.tiny import build_twin

KEY = "flux2-klein-4b"
WIDTH, HEIGHT = 64, 48  # the output; multiples of the pipeline's 16


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    return build_twin(KEY, tmp_path_factory.mktemp("klein-twin"))


@pytest.fixture(scope="module")
def pipe(twin):
    import diffusers

    return diffusers.AutoPipelineForImage2Image.from_pretrained(twin)


@pytest.fixture(scope="module")
def references():
    """The image to edit and a second reference; diffusers refuses references under 64 px a side."""
    from skimage import data

    return Image.fromarray(data.chelsea()).resize((80, 64)), Image.fromarray(data.astronaut()).resize((64, 64))


def edit(pipe, images, seed=0):
    family = get_spec(KEY).adapter
    defaults = get_spec(KEY).defaults
    arguments = {family.guidance_argument: defaults.guidance_scale}
    return pipe(
        image=list(images),
        prompt="make it night",
        num_inference_steps=defaults.num_inference_steps,
        generator=torch.Generator().manual_seed(seed),
        **family.edit_size(WIDTH, HEIGHT),
        **arguments,
    ).images[0]


def test_the_twin_has_the_repositorys_components_and_distillation(twin):
    index = json.loads((twin / "model_index.json").read_text())
    assert index == repo_facts(get_spec(KEY).hub_id).model_index()
    assert index["is_distilled"] is True
    assert {name for name in index if not name.startswith("_") and isinstance(index[name], list)} == {
        "scheduler",
        "text_encoder",
        "tokenizer",
        "transformer",
        "vae",
    }


def test_the_text_encoders_stacked_layers_fill_the_transformers_joint_attention(pipe):
    import inspect

    from diffusers import Flux2KleinPipeline

    # the pipeline's own default layers, which the app leaves as they are, exist in the twin's text encoder
    out_layers = inspect.signature(Flux2KleinPipeline.__call__).parameters["text_encoder_out_layers"].default
    assert max(out_layers) <= pipe.text_encoder.config.num_hidden_layers
    embeds, _ = pipe.encode_prompt("a cat")
    assert embeds.shape[-1] == len(out_layers) * pipe.text_encoder.config.hidden_size
    assert embeds.shape[-1] == pipe.transformer.config.joint_attention_dim


def test_the_tokenizer_applies_qwens_chat_template_with_its_special_tokens(pipe):
    tokenizer = pipe.tokenizer
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "a cat"}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert text == "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    config = pipe.text_encoder.config
    special = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    assert [config.bos_token_id, config.eos_token_id] == special
    assert config.vocab_size == len(tokenizer)


def test_auto_pipeline_maps_the_twin_to_flux2_klein(pipe):
    from diffusers import Flux2KleinPipeline

    assert type(pipe) is Flux2KleinPipeline
    assert pipe.config.is_distilled


@pytest.mark.parametrize("count", [1, 2])
def test_an_edit_of_one_or_two_images_makes_the_size_asked(pipe, references, count):
    image = edit(pipe, references[:count])
    assert image.size == (WIDTH, HEIGHT)
    assert np.asarray(image).std() > 0


def test_the_second_reference_changes_the_edit(pipe, references):
    one, two = edit(pipe, references[:1]), edit(pipe, references)
    assert not np.array_equal(np.asarray(one), np.asarray(two))


def test_the_family_takes_no_negative_prompt_and_up_to_four_references():
    family = get_spec(KEY).adapter
    assert not family.negative_prompt
    assert family.max_references == 4
    assert family.guidance_argument == "guidance_scale"
    assert family.edit_size(WIDTH, HEIGHT) == {"height": HEIGHT, "width": WIDTH}
