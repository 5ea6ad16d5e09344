"""Portable functions: the engine calls them and exported scripts hold their source.

engine.recipes.script copies these functions, and a family's `encode_prompt`/`weighted_prompt`
(engine.models.families), into the scripts it writes by their source text (`inspect.getsource`), so a script
runs the very code that made the app's image; a script cannot drift from the engine. Each function
therefore uses only its arguments, `torch` and `contextlib` (the scripts import both) and its own
imports, and no name of this project. tests/test_recipe.py runs the scripts and compares pixels.
"""

from __future__ import annotations

import contextlib

import torch


def encode_posterior(pipe, image):
    """The VAE's latent distribution of an init image, encoded as the img2img pipeline encodes it
    (SDXL's fp16 VAE upcast to float32, which it overflows in)."""
    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(image).to(device=pipe._execution_device, dtype=pipe.dtype)
    upcast = getattr(vae.config, "force_upcast", False) and vae.dtype != torch.float32
    with torch.inference_mode():
        if upcast:
            vae.to(dtype=torch.float32)
            pixels = pixels.float()
        try:
            return vae.encode(pixels).latent_dist
        finally:
            if upcast:
                vae.to(dtype=pipe.dtype)


def sample_latents(pipe, posterior, generators):
    """Each generator's scaled init latents, drawn from the posterior where the pipeline would draw
    them, so each generator goes on as in a run of its own."""
    vae = pipe.vae
    samples = torch.cat([posterior.sample(generator) for generator in generators]).to(pipe.dtype)
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is not None and std is not None:
        mean = torch.tensor(mean, device=samples.device, dtype=samples.dtype).view(1, -1, 1, 1)
        std = torch.tensor(std, device=samples.device, dtype=samples.dtype).view(1, -1, 1, 1)
        return (samples - mean) * vae.config.scaling_factor / std
    return vae.config.scaling_factor * samples


@contextlib.contextmanager
def per_sample_guidance(unet, scales, call_scale):
    """Make a pipeline's scalar classifier-free guidance act per sample.

    The pipeline computes u + g (c - u) with one g, the call's `call_scale` (the largest). A hook on
    the denoiser's output rescales each sample's conditional prediction to c' = u + (g_i / g)(c - u),
    so the pipeline's step becomes u + g_i (c - u) for sample i. diffusers runs no guidance at g <= 1
    (conditional output only): such samples get the ratio 1/g. Channels past the latent's (a learned
    variance) pass through.
    """
    effective = [max(scale, 1.0) for scale in scales]
    if call_scale <= 1.0 or all(scale == call_scale for scale in effective):
        yield
        return
    ratios = torch.tensor([scale / call_scale for scale in effective])
    channels = unet.config.in_channels

    def hook(module, args, kwargs, output):
        sample = output[0] if isinstance(output, tuple) else output.sample
        half = sample.shape[0] // 2
        uncond, cond = sample[:half], sample[half:]
        ratio = ratios.to(device=sample.device, dtype=sample.dtype).view(-1, 1, 1, 1)
        mixed = uncond[:, :channels] + ratio * (cond[:, :channels] - uncond[:, :channels])
        new = torch.cat([uncond, torch.cat([mixed, cond[:, channels:]], dim=1)])
        if isinstance(output, tuple):
            return (new, *output[1:])
        output.sample = new
        return output

    handle = unet.register_forward_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def decode_latents(pipe, latents):
    """Decode latents with the pipeline's own VAE into a PIL image (a chain shows its latent hand-overs)."""
    vae = pipe.vae
    with torch.inference_mode():
        pixels = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
    return pipe.image_processor.postprocess(pixels, output_type="pil")[0]


def single_file_pipeline(path, config, auto_class, dtype, safety_checker=True):
    """A single-file checkpoint's pipeline as `auto_class` (AutoPipelineForImage2Image, ...), its base's configs,
    tokenizers and other components from `config`: a folder, or a Hub id read from the local cache only.

    A whole checkpoint (SD 1.5, SDXL) loads as its base's pipeline class; a file holding only the denoiser (an
    SD3.5 MMDiT, a FLUX.1 transformer, as those are shared) loads its transformer and takes the rest from
    `config`. Nothing is downloaded; a pickled file is read weights-only by diffusers.
    """
    import json
    import os

    import diffusers
    from huggingface_hub import snapshot_download

    if not os.path.isfile(path):  # diffusers would take a missing file for a URL and say that instead
        raise FileNotFoundError(f"no checkpoint file {path} (an exported script reads it from STUDIO_MODELS_DIR)")
    folder = config if os.path.isdir(config) else snapshot_download(config, local_files_only=True)
    with open(os.path.join(folder, "model_index.json")) as handle:
        index = json.load(handle)
    if "unet" not in index:  # a transformer family: the file is its denoiser
        transformer_class = getattr(diffusers, index["transformer"][1])
        transformer = transformer_class.from_single_file(
            path, config=folder, subfolder="transformer", local_files_only=True, dtype=dtype
        )
        return auto_class.from_pretrained(
            folder, transformer=transformer, dtype=dtype, local_files_only=True, use_safetensors=True
        )
    extra = {}
    if index.get("safety_checker", [None])[0] is not None:
        if safety_checker:
            from diffusers.pipelines.stable_diffusion import StableDiffusionSafetyChecker
            from transformers import CLIPImageProcessor

            extra["safety_checker"] = StableDiffusionSafetyChecker.from_pretrained(
                folder, subfolder="safety_checker", dtype=dtype, local_files_only=True, use_safetensors=True
            )
            extra["feature_extractor"] = CLIPImageProcessor.from_pretrained(
                folder, subfolder="feature_extractor", local_files_only=True
            )
        else:
            extra.update(safety_checker=None, requires_safety_checker=False)
    pipeline_class = getattr(diffusers, index["_class_name"])
    pipe = pipeline_class.from_single_file(path, config=folder, local_files_only=True, dtype=dtype, **extra)
    return auto_class.from_pipe(pipe, dtype=dtype)


def resize_image(image, mode, width, height):
    """An RGB image brought to width x height by one of the AUTOMATIC1111 web UI's img2img resize modes (its
    modules/images.py, with no upscaler: Lanczos).

    "Just resize" stretches the image to the size. "Crop and resize" scales it, keeping its aspect ratio, until it
    covers the size, and keeps the centre. "Resize and fill" scales it until it fits inside, centres it, and fills
    the two bands left over by stretching the image's outermost row (or column) across each (bicubic, as the web
    UI's fill does).
    """
    from PIL import Image

    if mode == "Just resize":
        return image.resize((width, height), Image.Resampling.LANCZOS)
    if mode not in ("Crop and resize", "Resize and fill"):
        raise ValueError(f"resize_mode must be Just resize, Crop and resize or Resize and fill, got {mode!r}")
    target_ratio, image_ratio = width / height, image.width / image.height
    # whether the scaled image takes the size's full width (else its full height)
    full_width = target_ratio > image_ratio if mode == "Crop and resize" else target_ratio < image_ratio
    scaled_width = width if full_width else max(1, image.width * height // image.height)
    scaled_height = max(1, image.height * width // image.width) if full_width else height
    scaled = image.resize((scaled_width, scaled_height), Image.Resampling.LANCZOS)
    result = Image.new("RGB", (width, height))
    left, top = width // 2 - scaled_width // 2, height // 2 - scaled_height // 2
    result.paste(scaled, (left, top))
    if mode == "Resize and fill":
        bicubic = Image.Resampling.BICUBIC
        if top > 0:  # bands above and below, from the first and the last row
            below = height - top - scaled_height
            result.paste(scaled.resize((width, top), bicubic, box=(0, 0, width, 0)), (0, 0))
            if below > 0:
                edge = (0, scaled_height, width, scaled_height)
                result.paste(scaled.resize((width, below), bicubic, box=edge), (0, top + scaled_height))
        if left > 0:  # bands left and right, from the first and the last column
            right = width - left - scaled_width
            result.paste(scaled.resize((left, height), bicubic, box=(0, 0, 0, height)), (0, 0))
            if right > 0:
                edge = (scaled_width, 0, scaled_width, height)
                result.paste(scaled.resize((right, height), bicubic, box=edge), (left + scaled_width, 0))
    return result


def color_matched(image, reference):
    """An RGB image's colours brought to a reference's, as the AUTOMATIC1111 web UI's colour correction does for
    img2img and inpainting (modules/processing.py: apply_color_correction): the CIELAB colour channels' histograms
    matched to the reference's, the image's own lightness kept (the web UI keeps the result's luminosity)."""
    import numpy as np
    from PIL import Image
    from skimage import color, exposure

    lab = color.rgb2lab(np.asarray(image.convert("RGB")))
    matched = exposure.match_histograms(lab, color.rgb2lab(np.asarray(reference.convert("RGB"))), channel_axis=2)
    matched[..., 0] = lab[..., 0]
    return Image.fromarray((np.clip(color.lab2rgb(matched), 0, 1) * 255 + 0.5).astype(np.uint8))
