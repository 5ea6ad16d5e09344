"""SDXL base 1.0: two text encoders (CLIP ViT-L and OpenCLIP bigG) side by side, bigG's pooled embeddings,
1024-pixel images, and a depth ControlNet of its own."""

from __future__ import annotations

from engine.models.families import Family
from engine.models.families.sdxl_refiner import (  # both encoders where it has them; the same VAE
    LATENT_RGB,
    encode_prompt,
    weighted_prompt,
)

FAMILY = Family(
    name="sdxl",
    takes_lora=True,
    takes_latents=True,
    controlnets=(("depth", "controlnet-depth-sdxl"),),
    encode_prompt=encode_prompt,
    weighted_prompt=weighted_prompt,
    gpu_step_seconds=0.09,
    latent_rgb=LATENT_RGB,
)
