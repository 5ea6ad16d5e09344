"""The SD x2 latent upscaler: reads SD 1.x latents as its `image` and returns latents at twice the size."""

from __future__ import annotations

from engine.models.families import Family

FAMILY = Family(
    name="sd-x2-latent-upscaler",
    takes_latents=True,
    upscale_factor=2,
    no_weighting="takes plain prompts",
    gpu_step_seconds=0.10,
)
