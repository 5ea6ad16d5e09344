"""Stable Diffusion 1.x and its fine-tunes: one CLIP text encoder, a safety checker, depth, canny, scribble and tile
ControlNets."""

from __future__ import annotations

from engine.models.families import Family, LatentRGB

# The SD 1.x VAE's 4 latent channels to RGB (ComfyUI's comfy/latent_formats.py, SD15)
LATENT_RGB = LatentRGB(
    factors=(
        (0.3512, 0.2297, 0.3227),
        (0.3250, 0.4974, 0.2350),
        (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177),
    )
)


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
    controlnets=(
        ("depth", "controlnet-depth"),
        ("canny", "controlnet-canny"),
        ("scribble", "controlnet-scribble"),
        ("tile", "controlnet-tile"),
    ),
    encode_prompt=encode_prompt,
    weighted_prompt=weighted_prompt,
    latent_rgb=LATENT_RGB,
)
