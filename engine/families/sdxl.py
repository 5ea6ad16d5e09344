"""SDXL base 1.0: two text encoders (CLIP ViT-L and OpenCLIP bigG) side by side, bigG's pooled embeddings,
1024-pixel images, and a depth ControlNet of its own."""

from __future__ import annotations

from engine.families import Family
from engine.families.sdxl_refiner import encode_prompt


def weighted_prompt(pipe, prompt, negative_prompt):
    """Compel's embeddings for a weighted prompt through both encoders: penultimate hidden states side by side,
    the pooled output of the second (as StableDiffusionXLPipeline.encode_prompt makes them)."""
    from compel import Compel, ReturnedEmbeddingsType

    compel = Compel(
        tokenizer=[pipe.tokenizer, pipe.tokenizer_2],
        text_encoder=[pipe.text_encoder, pipe.text_encoder_2],
        returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
        requires_pooled=[False, True],
        truncate_long_prompts=False,
        device=pipe._execution_device,
    )
    embeds, pooled = compel([prompt, negative_prompt])
    return {
        "prompt_embeds": embeds[:1],
        "pooled_prompt_embeds": pooled[:1],
        "negative_prompt_embeds": embeds[1:],
        "negative_pooled_prompt_embeds": pooled[1:],
    }


FAMILY = Family(
    name="sdxl",
    takes_lora=True,
    takes_latents=True,
    depth_controlnet="controlnet-depth-sdxl",
    encode_prompt=encode_prompt,
    weighted_prompt=weighted_prompt,
    gpu_step_seconds=0.09,
)
