"""Qwen-Image-Edit (2511): Qwen-Image's 20B MMDiT trained to edit up to three images by an instruction.

Qwen2.5-VL reads the instruction together with the images (each resized to about 384x384 for it), and the VAE's
latents of the images (each at about a megapixel) are appended to the noise's tokens, so a step attends over the
output's tokens and every reference's. Not guidance-distilled: the scale is classifier-free guidance
(`true_cfg_scale`), two transformer passes per step, weighing a negative prompt. Its latents are Wan 2.1's VAE's, 16
channels, normalised by their published means and deviations, and reach the step callback packed in 2x2 patches as
FLUX.1's do.
"""

from __future__ import annotations

from engine.models.families import Family, LatentRGB

# Wan 2.1's 16 latent channels to RGB (ComfyUI's comfy/latent_formats.py, Wan21, the latent format ComfyUI runs
# Qwen-Image with), for latents normalised as the denoiser sees them ((z - mean) / std, scale 1.0)
LATENT_RGB = LatentRGB(
    factors=(
        (-0.1299, -0.1692, 0.2932),
        (0.0671, 0.0406, 0.0442),
        (0.3568, 0.2548, 0.1747),
        (0.0372, 0.2344, 0.1420),
        (0.0313, 0.0189, -0.0328),
        (0.0296, -0.0956, -0.0665),
        (-0.3477, -0.4059, -0.2925),
        (0.0166, 0.1902, 0.1975),
        (-0.0412, 0.0267, -0.1364),
        (-0.1293, 0.0740, 0.1636),
        (0.0680, 0.3019, 0.1128),
        (0.0032, 0.0581, 0.0639),
        (-0.1251, 0.0927, 0.1699),
        (0.0060, -0.0633, 0.0005),
        (0.3477, 0.2275, 0.2950),
        (0.1984, 0.0913, 0.1861),
    ),
    bias=(-0.1835, -0.0868, -0.3360),
    packed=True,
)

FAMILY = Family(
    name="qwenimage-edit",
    no_weighting="encodes prompts with Qwen2.5-VL, images and all; Compel's weighting covers CLIP encoders only",
    negative_prompt=True,
    passes_size=True,
    cuda_dtype="bfloat16",
    # an estimate until measured: FLUX.1's 12B takes 0.35 s over 1024 image + 512 text tokens; this 20B transformer
    # reads 1024 output tokens at 512x512, but 4096 for a reference (encoded at about a megapixel whatever the
    # output) and ~300 of text: (20 / 12) x (5400 / 1536) x 0.35 s, about 2 s a pass, and true CFG makes two passes
    gpu_step_seconds=4.0,
    latent_rgb=LATENT_RGB,
    max_references=3,
    guidance_argument="true_cfg_scale",
    default_negative=" ",  # as the model card's example: true CFG runs only with a negative prompt
    min_steps=2,
)
