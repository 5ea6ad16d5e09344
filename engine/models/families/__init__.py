"""Model families: every quirk of a diffusion family in one module, named by the catalog.

A catalog entry's `family` names a module of this package (`sdxl-refiner` is
`engine/models/families/sdxl_refiner.py`) whose `FAMILY` is a `Family`. Workflows ask the family what to do
(one call per seed? swap height and width? hand over latents? encode prompts how?) instead of
comparing family names, so a new family is one module here and its catalog entries.

A family's `encode_prompt` and `weighted_prompt` are portable functions (engine.pipelines.portable): exported
scripts hold their source, so they use only their arguments, torch and their own imports.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass

# (pipe, prompt, negative_prompt) -> the pipeline's prompt keyword arguments (prompt_embeds, ...)
PromptEncoder = Callable[..., dict]


@dataclass(frozen=True)
class LatentRGB:
    """A latent space's cheap projection to RGB, for live previews while a pipeline denoises.

    rgb = factors^T . latent + bias per latent pixel, read as [-1, 1] (the "approx cheap" preview of the
    web UIs: no decoder runs). The numbers are fitted per VAE; ComfyUI's `comfy/latent_formats.py`
    publishes them, for the latents as the denoiser sees them (scaled, and shifted where the VAE has a
    shift), which is what diffusers' step callback holds. engine.pipelines.live applies them.

    Args:
        factors: one (R, G, B) row per latent channel, as many rows as the VAE has latent channels.
        bias: added to every pixel's (R, G, B).
        packed: the latents reach the step callback packed in 2x2 patches, (batch, patches, channels x 4)
            (FLUX.1), and are unpacked first.
    """

    factors: tuple[tuple[float, float, float], ...]
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    packed: bool = False


@dataclass(frozen=True)
class Family:
    """How the workflows treat one diffusion family.

    Args:
        name: the catalog's family name.
        takes_latents: its img2img or upscale pipeline reads a 4-channel `image` as latents of its
            latent family, so a chain may hand latents over instead of decoding (engine.workflows.chain).
        upscale_factor: output side over input side.
        one_call_per_seed: several seeds cannot share one call (Kandinsky 2.2's prior), so Basic calls
            once per seed and a sweep runs its cells one by one.
        swaps_height_width: the img2img pipeline reads height/width transposed (see `output_size`).
        keeps_partial_step: img2img keeps n - int(n - n x strength) steps, not int(n x strength) (SD3's and
            FLUX.1's `get_timesteps`; engine.pipelines.schedulers.denoising_steps).
        passes_size: the img2img pipeline makes its native size unless told the input's (SD3, FLUX.1: 1024x1024
            whatever the input), so the call passes height and width.
        negative_prompt: the family reads a negative prompt (FLUX.1 has no negative conditioning: one is refused,
            not silently dropped).
        has_safety_checker: the repository ships a safety checker the owner may turn off.
        controlnets: (control type, catalog key) of each ControlNet made for this family: the condition types
            the Depth workflow offers with it (`controlnet_for`; `depth_controlnet` is the depth one).
        encode_prompt: the prompt embeddings as the pipeline makes them; with it a sweep batches cells.
        weighted_prompt: Compel's embeddings for a weighted prompt; None where weighting cannot work.
        no_weighting: why weighting cannot work, read after the model's label (shown to the user).
        twin: how engine.models.tiny writes the tiny twin: "pipeline" (every component its model_index.json
            lists) or "controlnet" (ControlNetModel.from_unet on the `controlnet_base` twin's UNet).
        controlnet_base: for a ControlNet family, the catalog key of the base model it attaches to.
        takes_lora: its pipeline loads LoRAs through diffusers' PEFT integration (engine.pipelines.lora).
        cuda_dtype: the dtype on CUDA when it is not float16: FLUX.1 and SD3.5 were trained in bfloat16, and
            their T5 encoder overflows float16 (inf, then a black image).
        gpu_step_seconds: an upper bound on one denoising step of one 512x512 image with guidance, in fp16
            without CUDA graphs or compile, on ZeroGPU's GPU slice (engine.hosting sizes GPU calls by it).
        latent_rgb: its latents' cheap RGB projection (live previews while it denoises); None where none is
            known (Kandinsky 2.2's MoVQ, the upscalers): no preview is made.
        max_references: how many images an instruction edit reads (the image to edit first, then references);
            0 for a family that does not edit (engine.workflows.edit: its catalog entries have the kind "edit").
        guidance_argument: the edit call's argument for the guidance scale: "guidance_scale" (embedded guidance,
            FLUX.1 Kontext, FLUX.2 klein) or "true_cfg_scale" (classifier-free guidance, Qwen-Image-Edit, whose
            negative prompt it weighs).
        default_negative: the negative prompt an edit call passes when none was given: Qwen-Image-Edit runs its
            classifier-free guidance only with one, and its model card passes " ".
        min_steps: the fewest steps an edit may ask for (Qwen-Image's scheduler makes NaN of a single step: its
            `shift_terminal` stretch divides by zero).
        edit_area: the edit pipeline derives its output size from an area (`max_area`, FLUX.1 Kontext) and snaps
            the image to its preferred resolutions unless told not to: the call passes the output's area and
            `_auto_resize=False`, so the output is the size the plan states.
    """

    name: str
    takes_latents: bool = False
    upscale_factor: int = 1
    one_call_per_seed: bool = False
    swaps_height_width: bool = False
    passes_size: bool = False
    keeps_partial_step: bool = False
    negative_prompt: bool = True
    has_safety_checker: bool = False
    controlnets: tuple[tuple[str, str], ...] = ()
    encode_prompt: PromptEncoder | None = None
    weighted_prompt: PromptEncoder | None = None
    no_weighting: str = ""
    twin: str = "pipeline"
    controlnet_base: str | None = None
    takes_lora: bool = False
    cuda_dtype: str | None = None
    gpu_step_seconds: float = 0.06
    latent_rgb: LatentRGB | None = None
    max_references: int = 0
    guidance_argument: str = "guidance_scale"
    edit_area: bool = False
    default_negative: str = ""
    min_steps: int = 1

    @property
    def takes_image_list(self) -> bool:
        """Its edit pipeline reads a list of images (it reads references), else one image alone (FLUX.1 Kontext)."""
        return self.max_references > 1

    def edit_size(self, width: int, height: int) -> dict:
        """The size arguments of an edit call whose output must be width x height."""
        size: dict = {"height": height, "width": width}
        if self.edit_area:
            size.update(max_area=width * height, _auto_resize=False)
        return size

    def output_size(self, width: int, height: int) -> dict:
        """height/width for an img2img call whose output must be width x height.

        Pipelines that default to their native size get the size (SD3 and FLUX.1 would make 1024x1024);
        Kandinsky 2.2's gets it swapped, because
        diffusers' KandinskyV22Img2ImgPipeline calls `image_processor.preprocess(image, width, height)`,
        whose parameters are (height, width). tests/test_basic.py checks a non-square Kandinsky output,
        so a fix upstream shows up as a failing test rather than as transposed images.
        """
        if self.swaps_height_width:
            return {"height": width, "width": height}
        if self.passes_size:
            return {"height": height, "width": width}
        return {}

    @property
    def control_types(self) -> tuple[str, ...]:
        """The condition types this family has a ControlNet for, in its own order."""
        return tuple(control for control, _ in self.controlnets)

    def controlnet_for(self, control_type: str) -> str | None:
        """Catalog key of this family's ControlNet for a condition type, or None when it has none."""
        return dict(self.controlnets).get(control_type)

    @property
    def depth_controlnet(self) -> str | None:
        """Catalog key of the depth ControlNet made for this family, if any."""
        return self.controlnet_for("depth")

    @property
    def batches_cells(self) -> bool:
        """A sweep may run several cells in one call (embeddings stacked, per-cell generators)."""
        return self.encode_prompt is not None and not self.one_call_per_seed


def module_name(family: str) -> str:
    """The module of a family name: `sdxl-refiner` -> `engine.models.families.sdxl_refiner`."""
    return f"{__name__}.{family.replace('-', '_')}"


_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")  # a family's name: its module's name with - for _


@functools.cache
def get_family(name: str) -> Family:
    """The adapter of a model family: the FAMILY of its module in this package (which knows no catalog).

    Raises:
        ValueError: not a family name, or no module of this package holds it (depth estimators are
            engine.models.estimators' business).
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a model family's name")
    try:
        module = importlib.import_module(module_name(name))
    except ModuleNotFoundError:
        raise ValueError(f"model family {name!r} has no adapter in engine/models/families") from None
    family = module.FAMILY
    if family.name != name:
        raise ValueError(f"{module_name(name)}.FAMILY is named {family.name!r}, not {name!r}")
    return family
