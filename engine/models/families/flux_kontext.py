"""FLUX.1 Kontext [dev]: FLUX.1's transformer trained to edit an image by an instruction.

The image to edit is encoded and its packed latents are appended to the noise's tokens (the transformer attends to
both), so one step costs about twice a FLUX.1 step at the same size. Guidance-distilled like FLUX.1 [dev] (the scale
is embedded; no negative prompt). diffusers snaps the image to one of Kontext's trained resolutions unless told not
to; the app passes the size it states in the plan (`edit_area`).
"""

from __future__ import annotations

from engine.models.families import Family
from engine.models.families.flux import LATENT_RGB

FAMILY = Family(
    name="flux-kontext",
    no_weighting="encodes prompts with T5 as well as CLIP; Compel's weighting covers CLIP encoders only",
    negative_prompt=False,
    passes_size=True,
    cuda_dtype="bfloat16",
    gpu_step_seconds=0.7,  # an estimate until measured: FLUX.1's 0.35 s with the image's tokens doubling the sequence
    latent_rgb=LATENT_RGB,
    max_references=1,
    edit_area=True,
)
