"""Speed-ups a device policy asks for: channels_last, fused QKV projections, torch.compile, CUDA graphs."""

from __future__ import annotations

from typing import Any

import torch

from engine.pipelines.device import DevicePolicy
from engine.pipelines.graphs import graph_forward


def apply_speedups(pipe, policy: DevicePolicy) -> None:
    """channels_last, fused QKV projections, torch.compile and CUDA graphs, as the policy asks.

    Compilation is in place (`module.compile()`), so the module objects that from_pipe shares and
    that hooks attach to stay the same. The VAE's encoder and decoder are compiled separately
    because pipelines call `vae.encode`/`vae.decode`, not `vae.forward`. With both compile and
    `cuda_graphs`, the denoiser's compiled forward is what the graphs capture.
    """
    unet = getattr(pipe, "unet", None)
    vae = getattr(pipe, "vae", None)
    if policy.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    if policy.fuse_qkv and hasattr(pipe, "fuse_qkv_projections"):
        pipe.fuse_qkv_projections()
    if policy.channels_last:
        for module in (unet, vae):
            if module is not None:
                module.to(memory_format=torch.channels_last)
    if policy.compile:
        options: dict[str, Any] = {"mode": policy.compile_mode} if policy.compile_mode else {}
        if unet is not None:
            if policy.cuda_graphs and policy.device == "cuda":
                graph_forward(unet, torch.compile(unet.forward, **options))
            else:
                unet.compile(**options)
        if vae is not None:
            vae.encoder.compile(**options)
            vae.decoder.compile(**options)
    apply_graphs(pipe, policy)


def apply_graphs(pipe, policy: DevicePolicy) -> None:
    """CUDA graphs for the pipeline's denoisers (UNet, ControlNet) when the policy asks for them."""
    if policy.cuda_graphs and policy.device == "cuda":
        for module in denoisers(pipe):
            graph_forward(module)


def denoisers(pipe) -> list[torch.nn.Module]:
    """The modules a pipeline calls at every step."""
    return [m for m in (getattr(pipe, "unet", None), getattr(pipe, "controlnet", None)) if m is not None]
