"""Model presets: every checkpoint the diffusers image-to-image guide names.

Each entry knows its real Hub id, the family its tiny twin is built from, which pipeline kinds it
serves, the guide's defaults, trigger words, license, and the latent family that decides whether
two chained stages can hand over latents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.base.errors import shown_value
from engine.models.families import Family, get_family
from engine.models.repos import repo_facts

# A Hub repo id as the Hub accepts it (diffusers' and huggingface_hub's rule): owner/name of letters, digits,
# - _ . (engine.models.owner matches visitors' ids by it; recipes are checked against it)
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")

# Latent families: stages whose models share one may pass latents without decode/encode.
DEFAULT_MODEL = "sd15"  # the model a request or a tab starts with when none is named
SD15_LATENTS = "sd15-vae"  # AutoencoderKL, scaling 0.18215, 4 channels, factor 8
SDXL_LATENTS = "sdxl-vae"  # AutoencoderKL, scaling 0.13025, 4 channels, factor 8
MOVQ_LATENTS = "kandinsky-movq"  # VQModel, 4 channels, factor 8
X4_LATENTS = "x4-upscaler-vae"  # AutoencoderKL, scaling 0.08333, 4 channels, factor 4
SD3_LATENTS = "sd3-vae"  # AutoencoderKL, scaling 1.5305, shift 0.0609, 16 channels, factor 8
FLUX_LATENTS = "flux-vae"  # AutoencoderKL, scaling 0.3611, shift 0.1159, 16 channels, factor 8 (packed 2x2)
FLUX2_LATENTS = "flux2-vae"  # AutoencoderKLFlux2, batch-norm statistics, 32 channels, factor 8 (patchified 2x2)
QWEN_IMAGE_LATENTS = "qwen-image-vae"  # AutoencoderKLQwenImage (Wan 2.1's), mean/std per channel, 16 ch, 8 (2x2)


@dataclass(frozen=True)
class Defaults:
    """The parameters a model starts with in the UI and the engine."""

    strength: float
    guidance_scale: float
    num_inference_steps: int


@dataclass(frozen=True)
class ModelSpec:
    """One catalog entry.

    Args:
        key: short name used in the UI, the API and the twin folder.
        hub_id: the real checkpoint on the Hugging Face Hub.
        family: architecture family: names its adapter, engine/models/families/<family>.py, which says how the
            pipeline is called, how prompts are encoded and how the tiny twin is built.
        kinds: pipeline kinds this checkpoint serves (img2img, text2img, inpaint, edit, upscale, controlnet, prior,
            depth).
        defaults: starting parameters (None for entries that are not run on their own).
        latent_family: see the *_LATENTS constants; None where the model makes no latents of its own.
        size_multiple: image sides are rounded to this many pixels.
        prior: catalog key of the connected prior pipeline (Kandinsky 2.2).
    """

    key: str
    hub_id: str
    label: str
    family: str
    kinds: tuple[str, ...]
    license: str
    defaults: Defaults | None = None
    trigger_words: str = ""
    latent_family: str | None = None
    size_multiple: int = 8
    native_size: int = 512
    prior: str | None = None
    revision: str | None = None
    scheduler: str = "PNDMScheduler"  # the checkpoint's own scheduler class
    notes: str = ""
    weights: str = ""  # for depth estimators: the weight files they need from `hub_id`
    gated: bool = False  # the Hub serves it only to accounts that accepted its licence (STUDIO_HF_TOKEN)
    preloaded: bool = True  # a Space downloads it at build time (engine.models.space_card); False for the largest
    # The owner's own models (engine.models.owner): "file" (a single-file checkpoint in STUDIO_MODELS_DIR) or "hub" (a
    # repo STUDIO_ALLOW_HUB_MODELS allows); `base` is the catalog entry whose configs they load with.
    origin: str = "catalog"
    base: str | None = None
    file: str = ""  # origin "file": the checkpoint's absolute path
    config_id: str = ""  # origin "file": the base's configs (its twin folder in tiny mode, its Hub id in hub mode)

    @property
    def pickle_weights(self) -> bool:
        """The repository publishes pickled `.bin` weights only (engine.models.repos); they are accepted for it alone,
        read with `torch.load(weights_only=True)` (a pickle that carries code is refused)."""
        return self.origin == "catalog" and not repo_facts(self.hub_id).has_safetensors

    @property
    def fp16_variant(self) -> bool:
        """The repository publishes half-precision `fp16` variant files next to the full ones."""
        return self.origin == "catalog" and "fp16" in repo_facts(self.hub_id).variants

    @property
    def config_spec(self) -> ModelSpec:
        """The catalog entry whose configs, tokenizers and missing components this model loads with."""
        return CATALOG[self.base] if self.base else self

    @property
    def load_kind(self) -> str:
        """The pipeline kind its repository loads as when nothing asks for another first (a preload, a check that it
        loads): img2img where it serves it (its other kinds are derived from those weights), else its own kind (an
        upscaler, a ControlNet, a depth estimator, a dedicated inpainting checkpoint, whose UNet no img2img pipeline
        runs)."""
        return "img2img" if "img2img" in self.kinds else self.kinds[0]

    def dedicated_to(self, kind: str) -> bool:
        """Whether the checkpoint was made for `kind` alone (a dedicated inpainting model), not running it on the
        weights of an image-to-image model."""
        return self.load_kind == kind

    @property
    def adapter(self) -> Family:
        """The family's adapter (engine.models.families): every way this model differs from the others."""
        return get_family(self.family)

    @property
    def weighting_unavailable_reason(self) -> str | None:
        """Why Compel weighting cannot be used with this model, or None when it can."""
        if self.adapter.weighted_prompt is not None:
            return None
        return f"{self.label} {self.adapter.no_weighting}"


_SD15_DEFAULTS = Defaults(strength=0.8, guidance_scale=7.5, num_inference_steps=50)
_SD15_KINDS = ("img2img", "text2img", "inpaint")

CATALOG: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec(
            key="sd15",
            hub_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
            label="Stable Diffusion 1.5",
            family="sd15",
            kinds=_SD15_KINDS,
            license="creativeml-openrail-m",
            defaults=_SD15_DEFAULTS,
            latent_family=SD15_LATENTS,
        ),
        ModelSpec(
            key="sdxl-refiner",
            hub_id="stabilityai/stable-diffusion-xl-refiner-1.0",
            label="SDXL refiner 1.0",
            family="sdxl-refiner",
            kinds=("img2img",),
            license="openrail++",
            defaults=Defaults(strength=0.5, guidance_scale=5.0, num_inference_steps=50),
            latent_family=SDXL_LATENTS,
            native_size=1024,
            scheduler="EulerDiscreteScheduler",
        ),
        ModelSpec(
            key="kandinsky22",
            hub_id="kandinsky-community/kandinsky-2-2-decoder",
            label="Kandinsky 2.2",
            family="kandinsky22",
            kinds=("img2img", "text2img"),
            license="apache-2.0",
            defaults=Defaults(strength=0.3, guidance_scale=4.0, num_inference_steps=100),
            latent_family=MOVQ_LATENTS,
            size_multiple=64,
            native_size=768,
            prior="kandinsky22-prior",
            scheduler="DDPMScheduler",
        ),
        ModelSpec(
            key="kandinsky22-prior",
            hub_id="kandinsky-community/kandinsky-2-2-prior",
            label="Kandinsky 2.2 prior",
            family="kandinsky22-prior",
            kinds=("prior",),
            license="apache-2.0",
            notes="Turns the prompt into CLIP image embeddings; loaded as the decoder's connected pipeline.",
            scheduler="UnCLIPScheduler",
        ),
        ModelSpec(
            key="comic-diffusion",
            hub_id="ogkalu/Comic-Diffusion",
            label="Comic-Diffusion",
            family="sd15",
            kinds=_SD15_KINDS,
            license="creativeml-openrail-m",
            defaults=_SD15_DEFAULTS,
            trigger_words="charliebo artstyle",
            latent_family=SD15_LATENTS,
        ),
        ModelSpec(
            key="pixel-art-style",
            hub_id="kohbanye/pixel-art-style",
            label="pixel-art-style",
            family="sd15",
            kinds=_SD15_KINDS,
            license="creativeml-openrail-m",
            defaults=_SD15_DEFAULTS,
            trigger_words="pixelartstyle",
            latent_family=SD15_LATENTS,
            scheduler="DDIMScheduler",
        ),
        ModelSpec(
            key="elden-ring",
            hub_id="nitrosocke/elden-ring-diffusion",
            label="Elden Ring Diffusion",
            family="sd15",
            kinds=_SD15_KINDS,
            license="creativeml-openrail-m",
            defaults=Defaults(strength=0.45, guidance_scale=10.5, num_inference_steps=50),
            trigger_words="elden ring style",
            latent_family=SD15_LATENTS,
        ),
        # SD 1.5's dedicated inpainting checkpoint: a 9-channel UNet (latents + mask + masked-image latents) that only
        # StableDiffusionInpaintPipeline runs, so its one kind is "inpaint" (loaded as itself, nothing derived).
        # Strength 1.0: it sees the unmasked image through its masked-image latents, so it needs none of the
        # original's noise to keep the context and was trained to paint the masked part from pure noise (diffusers'
        # default for it); the web UI's 0.75 is for base models, which only see the image through the init noise.
        ModelSpec(
            key="sd15-inpainting",
            hub_id="stable-diffusion-v1-5/stable-diffusion-inpainting",
            label="Stable Diffusion 1.5 Inpainting: the dedicated inpainting model",
            family="sd15",
            kinds=("inpaint",),
            license="creativeml-openrail-m",
            defaults=Defaults(strength=1.0, guidance_scale=7.5, num_inference_steps=50),
            latent_family=SD15_LATENTS,
            scheduler="DDIMScheduler",
            # not preloaded on a Space: the preloads already come to ~48 GB, near the 50 GB disk of a Space's
            # smaller hardware; it downloads (2.75 GB in fp16) when first chosen
            preloaded=False,
        ),
        ModelSpec(
            key="sd-x2-latent-upscaler",
            hub_id="stabilityai/sd-x2-latent-upscaler",
            label="SD x2 latent upscaler",
            family="sd-x2-latent-upscaler",
            kinds=("upscale",),
            license="openrail++",
            defaults=Defaults(strength=1.0, guidance_scale=0.0, num_inference_steps=20),
            latent_family=SD15_LATENTS,
            size_multiple=32,  # its K-diffusion UNet halves the latents twice without padding: a multiple of 4
            notes="Takes SD 1.x latents and returns latents at twice the size.",
            scheduler="EulerDiscreteScheduler",
        ),
        ModelSpec(
            key="sd-x4-upscaler",
            hub_id="stabilityai/stable-diffusion-x4-upscaler",
            label="SD x4 upscaler",
            family="sd-x4-upscaler",
            kinds=("upscale",),
            license="openrail++",
            defaults=Defaults(strength=1.0, guidance_scale=9.0, num_inference_steps=75),
            latent_family=X4_LATENTS,
            size_multiple=8,
            scheduler="DDIMScheduler",
        ),
        ModelSpec(
            key="controlnet-depth",
            hub_id="lllyasviel/control_v11f1p_sd15_depth",
            label="ControlNet depth (SD 1.5)",
            family="controlnet-sd15",
            kinds=("controlnet",),
            license="openrail",
            notes="Conditions SD 1.5 on a depth map, near bright.",
        ),
        # Current families (past the guide): 1024-pixel models; the largest are not preloaded on a Space.
        ModelSpec(
            key="sdxl-base",
            hub_id="stabilityai/stable-diffusion-xl-base-1.0",
            label="SDXL base 1.0",
            family="sdxl",
            kinds=("img2img", "text2img", "inpaint"),
            license="openrail++",
            defaults=Defaults(strength=0.6, guidance_scale=5.0, num_inference_steps=40),
            latent_family=SDXL_LATENTS,
            native_size=1024,
            scheduler="EulerDiscreteScheduler",
            preloaded=False,
        ),
        ModelSpec(
            key="controlnet-depth-sdxl",
            hub_id="diffusers/controlnet-depth-sdxl-1.0",
            label="ControlNet depth (SDXL)",
            family="controlnet-sdxl",
            kinds=("controlnet",),
            license="openrail++",
            notes="Conditions SDXL base 1.0 on a depth map, near bright.",
            preloaded=False,
        ),
        ModelSpec(
            key="sd35-medium",
            hub_id="stabilityai/stable-diffusion-3.5-medium",
            label="Stable Diffusion 3.5 Medium",
            family="sd3",
            kinds=("img2img", "text2img", "inpaint"),
            license="other (stabilityai-ai-community)",
            defaults=Defaults(strength=0.6, guidance_scale=4.5, num_inference_steps=40),
            latent_family=SD3_LATENTS,
            size_multiple=16,
            native_size=1024,
            scheduler="FlowMatchEulerDiscreteScheduler",
            gated=True,
            preloaded=False,
        ),
        ModelSpec(
            key="flux-schnell",
            hub_id="black-forest-labs/FLUX.1-schnell",
            label="FLUX.1 [schnell]",
            family="flux",
            kinds=("img2img", "text2img", "inpaint"),
            license="apache-2.0",
            defaults=Defaults(strength=0.95, guidance_scale=0.0, num_inference_steps=4),
            latent_family=FLUX_LATENTS,
            size_multiple=16,
            native_size=1024,
            scheduler="FlowMatchEulerDiscreteScheduler",
            notes="Distilled to 4 steps; guidance is ignored.",
            preloaded=False,
        ),
        ModelSpec(
            key="flux-dev",
            hub_id="black-forest-labs/FLUX.1-dev",
            label="FLUX.1 [dev]",
            family="flux",
            kinds=("img2img", "text2img", "inpaint"),
            license="other (flux-1-dev-non-commercial-license)",
            defaults=Defaults(strength=0.8, guidance_scale=3.5, num_inference_steps=28),
            latent_family=FLUX_LATENTS,
            size_multiple=16,
            native_size=1024,
            scheduler="FlowMatchEulerDiscreteScheduler",
            notes="Guidance-distilled: the guidance scale is embedded, not a second pass.",
            gated=True,
            preloaded=False,
        ),
        # Depth estimators for the ControlNet-depth tab: kind "depth", loaded by engine.models.estimators.
        ModelSpec(
            key="midas",
            hub_id="lllyasviel/Annotators",
            label="MiDaS DPT-Hybrid (controlnet-aux)",
            family="midas",
            kinds=("depth",),
            license="mit",
            weights="dpt_hybrid-midas-501f0c75.pt",
            notes="controlnet-aux's MidasDetector, the annotator the depth ControlNet was trained with.",
        ),
        ModelSpec(
            key="depth-anything-v2-small",
            hub_id="depth-anything/Depth-Anything-V2-Small-hf",
            label="Depth Anything V2 Small (transformers)",
            family="depth-anything-v2",
            kinds=("depth",),
            license="apache-2.0",
            weights="model.safetensors",
            notes="Relative depth from transformers' DepthAnythingForDepthEstimation; sharp edges, fast.",
        ),
        ModelSpec(
            key="zoe",
            hub_id="lllyasviel/Annotators",
            label="ZoeDepth (controlnet-aux)",
            family="zoe",
            kinds=("depth",),
            license="mit",
            weights="ZoeD_M12_N.pt (on a MiDaS BEiT-Large backbone)",
            notes="Metric depth; hub mode only (its backbone is too large to build offline).",
        ),
        ModelSpec(
            key="leres",
            hub_id="lllyasviel/Annotators",
            label="LeReS (controlnet-aux)",
            family="leres",
            kinds=("depth",),
            license="other (AdelaiDepth: non-commercial use)",
            weights="res101.pth and latest_net_G.pth",
            notes="Fine detail with a ResNeXt-101 backbone; hub mode only.",
        ),
        # Added after the first release of the list: last, so every earlier entry keeps its twin's seed
        # (engine.models.tiny seeds a twin by its catalog position).
        ModelSpec(
            key="controlnet-canny",
            hub_id="lllyasviel/control_v11p_sd15_canny",
            label="ControlNet canny (SD 1.5)",
            family="controlnet-sd15",
            kinds=("controlnet",),
            license="openrail",
            notes="Conditions SD 1.5 on Canny edges: white edges on black.",
        ),
        ModelSpec(
            key="controlnet-scribble",
            hub_id="lllyasviel/control_v11p_sd15_scribble",
            label="ControlNet scribble (SD 1.5)",
            family="controlnet-sd15",
            kinds=("controlnet",),
            license="openrail",
            notes="Conditions SD 1.5 on a drawing: white lines on black.",
        ),
        ModelSpec(
            key="controlnet-tile",
            hub_id="lllyasviel/control_v11f1e_sd15_tile",
            label="ControlNet tile (SD 1.5)",
            family="controlnet-sd15",
            kinds=("controlnet",),
            license="openrail",
            notes="Conditions SD 1.5 on the image itself: keeps its layout and colours, redraws the detail.",
        ),
        # Instruction editing (engine.workflows.edit): kind "edit", loaded as AutoPipelineForImage2Image maps them.
        # `strength` in their defaults is unused: an edit makes the whole image anew from its references.
        ModelSpec(
            key="flux-kontext-dev",
            hub_id="black-forest-labs/FLUX.1-Kontext-dev",
            label="FLUX.1 Kontext [dev]",
            family="flux-kontext",
            kinds=("edit",),
            license="other (flux-1-dev-non-commercial-license)",
            defaults=Defaults(strength=1.0, guidance_scale=2.5, num_inference_steps=28),
            latent_family=FLUX_LATENTS,
            size_multiple=16,
            native_size=1024,
            scheduler="FlowMatchEulerDiscreteScheduler",
            notes="Edits one image by an instruction; guidance-distilled (the scale is embedded). Non-commercial.",
            gated=True,
            preloaded=False,
        ),
        # The model card's settings for the step-distilled model: 4 steps, guidance 1.0 (ignored when distilled)
        ModelSpec(
            key="flux2-klein-4b",
            hub_id="black-forest-labs/FLUX.2-klein-4B",
            label="FLUX.2 [klein] 4B",
            family="flux2-klein",
            kinds=("edit",),
            license="apache-2.0",
            defaults=Defaults(strength=1.0, guidance_scale=1.0, num_inference_steps=4),
            latent_family=FLUX2_LATENTS,
            size_multiple=16,
            native_size=1024,
            scheduler="FlowMatchEulerDiscreteScheduler",
            notes="Edits an image by an instruction, with up to three more reference images; step-distilled to 4 "
            "steps. Apache-2.0.",
            preloaded=False,
        ),
        ModelSpec(
            key="qwen-image-edit-2511",
            hub_id="Qwen/Qwen-Image-Edit-2511",
            label="Qwen-Image-Edit-2511",
            family="qwenimage-edit",
            kinds=("edit",),
            license="apache-2.0",
            # the model card's example: true_cfg_scale 4.0, 40 steps
            defaults=Defaults(strength=1.0, guidance_scale=4.0, num_inference_steps=40),
            latent_family=QWEN_IMAGE_LATENTS,
            size_multiple=16,  # the pipeline's vae_scale_factor (8) x its 2x2 patches
            native_size=1024,
            scheduler="FlowMatchEulerDiscreteScheduler",
            notes="Edits an image by an instruction, with up to two more images as references; true classifier-free "
            "guidance with a negative prompt (two passes per step). A 20B transformer: large and slow.",
            preloaded=False,
        ),
    )
}


class UnknownModel(ValueError):
    """A key that is neither a catalog entry nor one of the owner's models."""


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA the owner offers (engine.pipelines.lora): a file of STUDIO_LORA_DIR or an allowed Hub repo.

    Args:
        name: what a visitor picks and recipes record: the file's name without `.safetensors`, or the repo id.
        source: what `load_lora_weights` reads: the file's absolute path (a Hub repo's in the Hugging Face cache).
        origin: "file" or "hub".
    """

    name: str
    source: str
    origin: str = "file"

    @property
    def adapter(self) -> str:
        """The PEFT adapter name: one per source, a valid module name whatever the file is called."""
        import hashlib

        return "lora_" + hashlib.sha256(self.source.encode()).hexdigest()[:12]


class OwnerModels:
    """The owner's own models beside the catalog (engine.models.owner fills it from the settings).

    `entries` are known by key; `resolve` may add one on demand (a Hub repo id matching an allowed pattern)
    and returns None for anything the owner did not allow.
    """

    def __init__(
        self,
        entries: dict[str, ModelSpec] | None = None,
        resolve=None,
        loras: dict[str, LoraSpec] | None = None,
        resolve_lora=None,
    ) -> None:
        self.entries: dict[str, ModelSpec] = dict(entries or {})
        self.resolve = resolve
        self.loras: dict[str, LoraSpec] = dict(loras or {})
        self.resolve_lora = resolve_lora

    def lora(self, name: str) -> LoraSpec | None:
        """The LoRA offered as `name` (an allowed Hub repo looked up on demand), else None."""
        if name in self.loras:
            return self.loras[name]
        spec = self.resolve_lora(name) if self.resolve_lora is not None else None
        if spec is not None:
            self.loras[name] = spec
        return spec

    def get(self, key: str) -> ModelSpec | None:
        if key in self.entries:
            return self.entries[key]
        spec = self.resolve(key) if self.resolve is not None else None
        if spec is not None:
            self.entries[key] = spec
        return spec


# The process's owner models: one app serves one set; Engine installs them (engine.models.owner.install).
_OWNER = OwnerModels()


def install_owner_models(owner: OwnerModels) -> OwnerModels:
    """Make `owner` the models beside the catalog; returns the ones it replaces (tests put them back)."""
    global _OWNER
    previous, _OWNER = _OWNER, owner
    return previous


def owner_models() -> OwnerModels:
    return _OWNER


def known_spec(key: object) -> ModelSpec | None:
    """The catalog entry or owner's model already known by `key` (none looked up), else None."""
    if not isinstance(key, str):
        return None
    return CATALOG.get(key) or _OWNER.entries.get(key)


def get_spec(key: str) -> ModelSpec:
    """The catalog entry, or the owner's model, for `key`.

    Raises:
        ValueError: unknown key; the message lists the known ones.
    """
    spec = CATALOG.get(key) if isinstance(key, str) else None
    if spec is None and isinstance(key, str):
        spec = _OWNER.get(key)
    if spec is None:
        known = [*CATALOG, *_OWNER.entries]
        raise UnknownModel(f"model must be one of {', '.join(known)}; got {shown_value(key)}")
    return spec


def models_for(kind: str) -> list[str]:
    """Keys of the checkpoints that serve a pipeline kind: the catalog's in order, then the owner's."""
    specs = [*CATALOG.values(), *_OWNER.entries.values()]
    return [spec.key for spec in specs if kind in spec.kinds]
