"""FLUX.1 (schnell, dev): a rectified-flow transformer over packed 16-channel latents, conditioned on T5 and
CLIP ViT-L's pooled output. schnell is distilled to about 4 steps and ignores guidance; dev embeds its
guidance scale in the transformer (no negative prompt, one pass per step).

Sweeps run its cells one call each, and Compel cannot weight a T5 prompt. On CUDA it runs in bfloat16:
in float16 its activations overflow.
"""

from __future__ import annotations

from engine.models.families import Family

FAMILY = Family(
    name="flux",
    takes_lora=True,
    no_weighting="encodes prompts with T5 as well as CLIP; Compel's weighting covers CLIP encoders only",
    negative_prompt=False,
    passes_size=True,
    keeps_partial_step=True,
    cuda_dtype="bfloat16",
    gpu_step_seconds=0.35,
)
