"""Stable Diffusion 3.5: an MMDiT transformer over 16-channel latents, conditioned on two CLIP encoders and T5.

One call per seed: diffusers' SD3 img2img encodes `image[i : i + 1]` for each generator of a list, so a
single init image with several seeds in one call encodes empty batches and fails (diffusers 0.42; its SD 1.5
and FLUX pipelines repeat the image first). tests/test_basic.py runs several seeds, so a fix upstream shows.

Sweeps run its cells one call each (no `encode_prompt`: the batched path stacks a UNet's guidance), and
Compel cannot weight a T5 prompt. On CUDA it runs in bfloat16, the dtype it was trained and published in.
"""

from __future__ import annotations

from engine.models.families import Family, LatentRGB

# SD3's 16 latent channels to RGB (ComfyUI's comfy/latent_formats.py, SD3)
LATENT_RGB = LatentRGB(
    factors=(
        (-0.0922, -0.0175, 0.0749),
        (0.0311, 0.0633, 0.0954),
        (0.1994, 0.0927, 0.0458),
        (0.0856, 0.0339, 0.0902),
        (0.0587, 0.0272, -0.0496),
        (-0.0006, 0.1104, 0.0309),
        (0.0978, 0.0306, 0.0427),
        (-0.0042, 0.1038, 0.1358),
        (-0.0194, 0.0020, 0.0669),
        (-0.0488, 0.0130, -0.0268),
        (0.0922, 0.0988, 0.0951),
        (-0.0278, 0.0524, -0.0542),
        (0.0332, 0.0456, 0.0895),
        (-0.0069, -0.0030, -0.0810),
        (-0.0596, -0.0465, -0.0293),
        (-0.1448, -0.1463, -0.1189),
    ),
    bias=(0.2394, 0.2135, 0.1925),
)

FAMILY = Family(
    name="sd3",
    takes_lora=True,
    no_weighting="encodes prompts with T5 as well as CLIP; Compel's weighting covers CLIP encoders only",
    one_call_per_seed=True,
    passes_size=True,
    keeps_partial_step=True,
    cuda_dtype="bfloat16",
    gpu_step_seconds=0.08,
    latent_rgb=LATENT_RGB,
)
