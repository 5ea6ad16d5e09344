"""Stable Diffusion 1.x and its fine-tunes: one CLIP text encoder, a safety checker, the depth ControlNet."""

from __future__ import annotations

from engine.models.families import Family


def encode_prompt(pipe, prompt, negative_prompt):
    """Prompt and negative embeddings as the pipeline makes them (classifier-free guidance on)."""
    embeds, negative = pipe.encode_prompt(prompt, pipe._execution_device, 1, True, negative_prompt=negative_prompt)
    return {"prompt_embeds": embeds, "negative_prompt_embeds": negative}


def weighted_prompt(pipe, prompt, negative_prompt):
    """Compel's embeddings for a weighted prompt, both padded to one length (no truncation at 77 tokens)."""
    from compel import CompelForSD

    conditioning = CompelForSD(pipe, device=pipe._execution_device)(prompt, negative_prompt)
    return {"prompt_embeds": conditioning.embeds, "negative_prompt_embeds": conditioning.negative_embeds}


FAMILY = Family(
    name="sd15",
    takes_lora=True,
    takes_latents=True,
    has_safety_checker=True,
    depth_controlnet="controlnet-depth",
    encode_prompt=encode_prompt,
    weighted_prompt=weighted_prompt,
)
