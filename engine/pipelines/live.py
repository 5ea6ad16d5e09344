"""Live previews: what a pipeline call's latents look like at a denoising step, without running the VAE.

A family's `LatentRGB` (engine.models.families) maps its latent channels to RGB; `latent_rgb_images`
applies it to the latents diffusers hands the step callback (engine.pipelines.calls.StepReporter), one
small image per latent pixel grid (1/8 of the output's side for every family here). It previews the noisy
latents of that step, not the finished image: the picture sharpens as the steps run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image

from engine.models.families import LatentRGB


@dataclass(frozen=True)
class LiveView:
    """What one pipeline call's live previews show.

    Args:
        latent_rgb: the family's projection; None: this call makes no previews.
        size: the output's (width, height): the shape of packed latents' patch grid.
        places: each image of the call's batch, as its run counts them (Basic: which of its seeds; a
            sweep: the cell's index; a chain: the stage's).
    """

    latent_rgb: LatentRGB | None
    size: tuple[int, int]
    places: tuple[int, ...]


@dataclass(frozen=True)
class LivePreview:
    """One step's preview: an image per place (at the latents' size), and how far its call has come."""

    images: tuple[Image.Image, ...]
    places: tuple[int, ...]
    size: tuple[int, int]  # the output's (width, height), which the images stand for
    step: int  # steps of this call done
    steps: int  # steps this call makes


LivePreviewFn = Callable[[LivePreview], None]


def latent_rgb_images(latents: torch.Tensor, latent_rgb: LatentRGB, size: tuple[int, int]) -> list[Image.Image]:
    """One RGB image per latent of the batch: each latent pixel's channels through the family's linear map,
    [-1, 1] read as [0, 255].

    `latents` is (batch, channels, h, w), or for a packed family (batch, h/2 x w/2, channels x 4), whose
    patch grid has the aspect of `size` (width, height).
    """
    latents = latents.detach()
    if latent_rgb.packed:
        latents = unpack(latents, size)
    factors = torch.tensor(latent_rgb.factors, dtype=torch.float32, device=latents.device)
    bias = torch.tensor(latent_rgb.bias, dtype=torch.float32, device=latents.device)
    if latents.shape[1] != factors.shape[0]:
        raise ValueError(f"latents have {latents.shape[1]} channels; the projection expects {factors.shape[0]}")
    rgb = torch.einsum("bchw,cr->bhwr", latents.float(), factors) + bias
    pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    return [Image.fromarray(image) for image in pixels]


def unpack(latents: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(batch, patches, channels x 4) packed in 2x2 patches, row-major, as FLUX.1's pipelines hold them, to
    (batch, channels, h, w); the patch grid is the divisor pair of `patches` nearest the aspect of `size`."""
    batch, patches, packed_channels = latents.shape
    width, height = size
    estimate = (patches * height / width) ** 0.5
    rows = min((d for d in range(1, patches + 1) if patches % d == 0), key=lambda d: abs(d - estimate))
    cols = patches // rows
    channels = packed_channels // 4
    grid = latents.reshape(batch, rows, cols, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(batch, channels, rows * 2, cols * 2)
