"""Stable Diffusion 3.5: an MMDiT transformer over 16-channel latents, conditioned on two CLIP encoders and T5.

One call per seed: diffusers' SD3 img2img encodes `image[i : i + 1]` for each generator of a list, so a
single init image with several seeds in one call encodes empty batches and fails (diffusers 0.42; its SD 1.5
and FLUX pipelines repeat the image first). tests/test_basic.py runs several seeds, so a fix upstream shows.

Sweeps run its cells one call each (no `encode_prompt`: the batched path stacks a UNet's guidance), and
Compel cannot weight a T5 prompt. On CUDA it runs in bfloat16, the dtype it was trained and published in.
"""

from __future__ import annotations

from engine.models.families import Family

FAMILY = Family(
    name="sd3",
    takes_lora=True,
    no_weighting="encodes prompts with T5 as well as CLIP; Compel's weighting covers CLIP encoders only",
    one_call_per_seed=True,
    passes_size=True,
    keeps_partial_step=True,
    cuda_dtype="bfloat16",
    gpu_step_seconds=0.08,
)
