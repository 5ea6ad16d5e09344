"""FLUX.1 (schnell, dev): a rectified-flow transformer over packed 16-channel latents, conditioned on T5 and
CLIP ViT-L's pooled output. schnell is distilled to about 4 steps and ignores guidance; dev embeds its
guidance scale in the transformer (no negative prompt, one pass per step).

Sweeps run its cells one call each, and Compel cannot weight a T5 prompt. On CUDA it runs in bfloat16:
in float16 its activations overflow.
"""

from __future__ import annotations

from engine.models.families import Family, LatentRGB

# FLUX.1's 16 latent channels to RGB (ComfyUI's comfy/latent_formats.py, Flux); its pipelines hold latents
# packed in 2x2 patches, 64 values per patch
LATENT_RGB = LatentRGB(
    factors=(
        (-0.0346, 0.0244, 0.0681),
        (0.0034, 0.0210, 0.0687),
        (0.0275, -0.0668, -0.0433),
        (-0.0174, 0.0160, 0.0617),
        (0.0859, 0.0721, 0.0329),
        (0.0004, 0.0383, 0.0115),
        (0.0405, 0.0861, 0.0915),
        (-0.0236, -0.0185, -0.0259),
        (-0.0245, 0.0250, 0.1180),
        (0.1008, 0.0755, -0.0421),
        (-0.0515, 0.0201, 0.0011),
        (0.0428, -0.0012, -0.0036),
        (0.0817, 0.0765, 0.0749),
        (-0.1264, -0.0522, -0.1103),
        (-0.0280, -0.0881, -0.0499),
        (-0.1262, -0.0982, -0.0778),
    ),
    bias=(-0.0329, -0.0718, -0.0851),
    packed=True,
)

FAMILY = Family(
    name="flux",
    takes_lora=True,
    no_weighting="encodes prompts with T5 as well as CLIP; Compel's weighting covers CLIP encoders only",
    negative_prompt=False,
    passes_size=True,
    keeps_partial_step=True,
    cuda_dtype="bfloat16",
    gpu_step_seconds=0.35,
    latent_rgb=LATENT_RGB,
)
