"""Plain diffusers' ControlNet img2img on the twins: what the Depth tab's ControlNet step must equal."""

from __future__ import annotations

import torch
from PIL import Image

# the call both the depth and the canny equality tests make (the app's values in their requests)
CALL = dict(
    prompt="a cat made of clay",
    strength=0.7,
    guidance_scale=6.0,
    controlnet_conditioning_scale=0.6,
    control_guidance_end=0.75,
)


def raw_controlnet_img2img(twins, controlnet: str, image: Image.Image, control: Image.Image, steps: int, seed: int):
    """StableDiffusionControlNetImg2ImgPipeline from the sd15 twin and the `controlnet` twin, called with CALL."""
    from diffusers import ControlNetModel, StableDiffusionControlNetImg2ImgPipeline

    folder = twins / controlnet
    # a repository publishing only .bin weights (the tile ControlNet) has a pickle-only twin: diffusers' own fallback
    safetensors = True if any(folder.glob("*.safetensors")) else None
    model = ControlNetModel.from_pretrained(folder, use_safetensors=safetensors)
    raw = StableDiffusionControlNetImg2ImgPipeline.from_pretrained(
        twins / "sd15", controlnet=model, safety_checker=None, use_safetensors=True
    )
    raw.set_progress_bar_config(disable=True)
    width, height = image.size
    return raw(
        **CALL,
        image=image,
        control_image=control,
        height=height,
        width=width,
        num_inference_steps=steps,
        generator=torch.Generator("cpu").manual_seed(seed),
    ).images[0]
