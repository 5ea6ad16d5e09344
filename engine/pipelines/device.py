"""The device policy: where and in which dtype models run, what stays resident, what is offloaded, and the
memory a pipeline takes."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch

from engine.models.catalog import ModelSpec


def model_dtype(spec: ModelSpec, policy: DevicePolicy) -> torch.dtype:
    """The dtype a catalog entry runs in: the policy's, or its family's own on CUDA (bfloat16 for FLUX.1, SD3.5)."""
    wanted = spec.adapter.cuda_dtype
    if wanted and policy.device == "cuda":
        return getattr(torch, wanted)
    return policy.dtype


@dataclass(frozen=True)
class DevicePolicy:
    """Where and how pipelines run: CUDA in fp16 with SDPA and offload when short, else CPU in float32."""

    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    offload: str = "none"
    compile: bool = False
    compile_mode: str | None = None  # torch.compile mode; "reduce-overhead"/"max-autotune" add its CUDA graphs
    channels_last: bool = False
    fuse_qkv: bool = False
    cuda_graphs: bool = (
        False  # the denoisers replay CUDA graphs (engine.pipelines.graphs); CUDA and resident models only
    )
    cudnn_benchmark: bool = False  # cuDNN times its convolution algorithms once per shape and keeps the fastest
    zero_gpu: bool = False  # a ZeroGPU Space: resident models only, never offloaded (detect says why)

    @classmethod
    def detect(
        cls,
        offload: str = "auto",
        compile: bool = False,
        cuda_graphs: bool = True,
        *,
        zero_gpu: bool = False,
        cuda: bool | None = None,
    ) -> DevicePolicy:
        """The machine's policy. On CUDA: fp16 with SDPA, channels_last, CUDA graphs unless turned off,
        torch.compile when asked (benchmarks/RESULTS.md has the H100 figures). Not cuDNN's algorithm search:
        it gained 3% and its trials took up to 75 GiB for a moment, which could starve a process beside it.

        On ZeroGPU (`zero_gpu`): models stay on the (lent) GPU, never offloaded (its workers get the weights
        moved onto their GPU at start; offload hooks would move them back), and neither torch.compile nor
        CUDA graphs (ZeroGPU supports no compile; a capture would be redone in every new worker within the
        call's paid seconds). `cuda`: whether CUDA is available, for tests; None asks torch.
        """
        cuda = torch.cuda.is_available() if cuda is None else cuda
        if cuda and zero_gpu:
            return cls(device="cuda", dtype=torch.float16, offload="none", channels_last=True, zero_gpu=True)
        if cuda:
            return cls(
                device="cuda",
                dtype=torch.float16,
                offload=offload,
                compile=compile,
                channels_last=True,
                cuda_graphs=cuda_graphs,
            )
        return cls()

    @property
    def generator_device(self) -> str:
        return self.device

    def default_budget(self) -> int:
        """Bytes of weights the cache keeps resident: most of the GPU, or a third of RAM on CPU."""
        if self.device == "cuda":
            return int(torch.cuda.get_device_properties(0).total_memory * 0.8)
        try:
            return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 3)
        except (ValueError, OSError, AttributeError):
            return 8 * 2**30


def auto_offload(pipe, nbytes: int, resident: int, budget: int) -> str:
    """The offload a pipeline needs beside `resident` bytes under `budget`: none when all of it fits; model
    offload (one component on the GPU at a time) when its largest component fits; else sequential (layer by
    layer: FLUX.1's 24 GB transformer on a 16 GB card)."""
    if resident + nbytes <= budget:
        return "none"
    components = getattr(pipe, "components", {}).values()
    largest = max((module_bytes(c) for c in components if isinstance(c, torch.nn.Module)), default=nbytes)
    return "model" if largest <= budget else "sequential"


def module_bytes(pipe: object) -> int:
    """Bytes held by a pipeline's weights and buffers (each tensor counted once)."""
    seen: set[int] = set()
    total = 0
    components = {"model": pipe} if isinstance(pipe, torch.nn.Module) else getattr(pipe, "components", {})
    for component in components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        for tensor in list(component.parameters()) + list(component.buffers()):
            key = id(tensor)
            if key not in seen:
                seen.add(key)
                total += tensor.numel() * tensor.element_size()
    return total


def free_memory() -> None:
    """Collect garbage and give cached CUDA blocks back, so freed tensors really leave the device."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
