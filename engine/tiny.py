"""Tiny random-weight twins of the catalog's checkpoints, written to disk in diffusers format.

A twin has the real pipeline classes, folder layout and latent geometry (VAE factor 8, 4 latent
channels, the real VAE scaling factors) with a few hundred thousand random parameters from a
fixed seed. It loads through exactly the code path a real checkpoint takes
(`AutoPipelineForImage2Image.from_pretrained(folder)`, Kandinsky's connected prior included), so
every line of loading, validation, batching and UI code runs for real on a CPU with no network.
Its images are noise.

    python -m engine.tiny --out DIR      # writes DIR/<catalog key>/model_index.json, ...
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from engine.catalog import CATALOG, get_spec

logger = logging.getLogger(__name__)

# Bump when a builder changes, so stale twins on disk are rebuilt.
TWIN_VERSION = 2
_MARKER = "twin.json"

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
_HIDDEN = 32  # text hidden size = UNet cross-attention dim
_MAX_TOKENS = 77  # CLIP's real context length, so prompt truncation behaves as with real models


def _byte_chars() -> list[str]:
    """The 256 printable characters byte-level BPE maps bytes to (GPT-2's table)."""
    bs = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def build_tokenizer():
    """A CLIP BPE tokenizer over single bytes: every text tokenizes, nothing is downloaded."""
    from transformers import CLIPTokenizer

    chars = _byte_chars()
    vocab = {BOS: 0, EOS: 1}
    for token in chars + [c + "</w>" for c in chars]:
        vocab[token] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=_MAX_TOKENS)
    return tokenizer


def _text_config(vocab_size: int, projection_dim: int = _HIDDEN):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=_HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=_MAX_TOKENS,
        projection_dim=projection_dim,
        vocab_size=vocab_size,
        hidden_act="gelu",
    )


def _autoencoder_kl(scaling_factor: float, force_upcast: bool = False):
    """Four blocks, so the VAE scale factor is 8 as in the real models."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[8, 16, 16, 16],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=scaling_factor,
        force_upcast=force_upcast,
    )


def sd15_scheduler():
    """SD 1.5's scheduler as published with the checkpoint (PNDM, PLMS steps only)."""
    from diffusers import PNDMScheduler

    return PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        set_alpha_to_one=False,
        skip_prk_steps=True,
        steps_offset=1,
    )


def refiner_scheduler():
    """The SDXL refiner's scheduler as published with the checkpoint."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
        interpolation_type="linear",
        prediction_type="epsilon",
    )


def _sd15_unet():
    """The SD 1.5 twin's UNet; weights from the current torch seed."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=_HIDDEN,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def _build_sd15(seed: int):
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = _sd15_unet()
    vae = _autoencoder_kl(scaling_factor=0.18215)
    tokenizer = build_tokenizer()
    text_encoder = CLIPTextModel(_text_config(len(tokenizer)))
    scheduler = sd15_scheduler()
    return StableDiffusionImg2ImgPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_sdxl_refiner(seed: int):
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    time_dim = 8
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=128,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        transformer_layers_per_block=(1, 2),
        # the refiner's time ids: original size (2), crop (2), aesthetic score (1); plus the pooled text embedding
        projection_class_embeddings_input_dim=5 * time_dim + _HIDDEN,
        cross_attention_dim=_HIDDEN,
        norm_num_groups=8,
    )
    vae = _autoencoder_kl(scaling_factor=0.13025, force_upcast=True)
    tokenizer_2 = build_tokenizer()
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(len(tokenizer_2)))
    scheduler = refiner_scheduler()
    return StableDiffusionXLImg2ImgPipeline(
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
    )


def _build_kandinsky22_prior(seed: int):
    import torch
    from diffusers import KandinskyV22PriorPipeline, PriorTransformer, UnCLIPScheduler
    from transformers import (
        CLIPImageProcessor,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(seed)
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=12, embedding_dim=_HIDDEN, num_layers=1)
    # clip_std starts at 0, which would make every embedding 0; the real prior has learned statistics
    prior.clip_std = torch.nn.Parameter(torch.ones_like(prior.clip_std))
    image_size = 32
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=_HIDDEN,
            image_size=image_size,
            projection_dim=_HIDDEN,
            intermediate_size=37,
            num_attention_heads=4,
            num_channels=3,
            num_hidden_layers=2,
            patch_size=8,
        )
    )
    tokenizer = build_tokenizer()
    text_encoder = CLIPTextModelWithProjection(_text_config(len(tokenizer)))
    image_processor = CLIPImageProcessor(
        crop_size=image_size,
        size=image_size,
        do_center_crop=True,
        do_normalize=True,
        do_resize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
        resample=3,
    )
    scheduler = UnCLIPScheduler(
        variance_type="fixed_small_log",
        prediction_type="sample",
        num_train_timesteps=1000,
        clip_sample=True,
        clip_sample_range=10.0,
    )
    return KandinskyV22PriorPipeline(
        prior=prior,
        image_encoder=image_encoder,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        image_processor=image_processor,
    )


def _build_kandinsky22(seed: int):
    import torch
    from diffusers import DDPMScheduler, KandinskyV22Pipeline, UNet2DConditionModel, VQModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=8,  # predicts mean and variance
        addition_embed_type="image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(32, 64),
        layers_per_block=1,
        encoder_hid_dim=_HIDDEN,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=_HIDDEN,
        attention_head_dim=4,
        resnet_time_scale_shift="scale_shift",
        class_embed_type=None,
        norm_num_groups=8,
    )
    movq = VQModel(
        # four blocks: factor 8, as the real MoVQ; 32 channels because SpatialNorm hard-codes 32 groups
        block_out_channels=[32, 32, 32, 32],
        down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
        up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        norm_type="spatial",
        num_vq_embeddings=12,
        vq_embed_dim=4,
    )
    # The decoder's published scheduler config.
    scheduler = DDPMScheduler(
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        num_train_timesteps=1000,
        prediction_type="epsilon",
        steps_offset=1,
        thresholding=False,
        timestep_spacing="leading",
        variance_type="fixed_small",
    )
    return KandinskyV22Pipeline(unet=unet, scheduler=scheduler, movq=movq)


def _build_sd_x2_latent_upscaler(seed: int):
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionLatentUpscalePipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(  # the real K-diffusion style UNet: SD latents + low-res latents in, 8 channels
        act_fn="gelu",
        attention_head_dim=8,
        norm_num_groups=None,
        block_out_channels=[32, 32, 64, 64],
        time_cond_proj_dim=128 + _HIDDEN,  # noise-level embedding (128) + pooled text
        conv_in_kernel=1,
        conv_out_kernel=1,
        cross_attention_dim=_HIDDEN,
        down_block_types=("KDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D", "KCrossAttnDownBlock2D"),
        in_channels=8,
        mid_block_type=None,
        only_cross_attention=False,
        out_channels=5,
        resnet_time_scale_shift="scale_shift",
        time_embedding_type="fourier",
        timestep_post_act="gelu",
        up_block_types=("KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KCrossAttnUpBlock2D", "KUpBlock2D"),
        layers_per_block=1,
    )
    vae = _autoencoder_kl(scaling_factor=0.18215)  # it reads and writes SD 1.x latents
    tokenizer = build_tokenizer()
    text_encoder = CLIPTextModel(_text_config(len(tokenizer)))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        prediction_type="sample",
        steps_offset=1,
    )
    return StableDiffusionLatentUpscalePipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler
    )


def _build_sd_x4_upscaler(seed: int):
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=7,  # 4 latent channels + the 3-channel low-res image
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=_HIDDEN,
        attention_head_dim=8,
        use_linear_projection=True,
        only_cross_attention=(True, True, False),
        num_class_embeds=1000,  # noise levels up to max_noise_level
    )
    vae = AutoencoderKL(  # three blocks: factor 4, as the real x4 VAE
        block_out_channels=[8, 16, 16],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        scaling_factor=0.08333,
    )
    tokenizer = build_tokenizer()
    text_encoder = CLIPTextModel(_text_config(len(tokenizer)))
    low_res_scheduler = DDPMScheduler(
        beta_start=0.0001, beta_end=0.02, beta_schedule="linear", num_train_timesteps=1000
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="v_prediction",
    )
    return StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        low_res_scheduler=low_res_scheduler,
        scheduler=scheduler,
        max_noise_level=350,
    )


def _build_controlnet_sd15(seed: int):
    """The depth ControlNet's twin: ControlNetModel.from_unet on the SD 1.5 twin's UNet, as diffusers
    initialises a new ControlNet, so its blocks line up with the base UNet the way the real one does."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(_seed_for("sd15"))  # the SD 1.5 twin's own UNet weights
    unet = _sd15_unet()
    torch.manual_seed(seed)
    controlnet = ControlNetModel.from_unet(unet)
    # A new ControlNet's output convolutions start at zero, so it would not steer anything; a trained one
    # does. Random weights there make the twin's depth map change the image, as the real one does.
    zero_convs = [controlnet.controlnet_cond_embedding.conv_out, *controlnet.controlnet_down_blocks]
    for conv in [*zero_convs, controlnet.controlnet_mid_block]:
        conv.reset_parameters()
    return controlnet


MIDAS_WEIGHTS = "dpt_hybrid-midas-501f0c75.pt"


def _write_midas(seed: int, folder: Path) -> None:
    """controlnet-aux's DPT-Hybrid MiDaS at its real, fixed size (123M parameters, ~0.5 GB) with random
    weights, saved as the state dict MidasDetector.from_pretrained(folder) loads."""
    import torch
    from controlnet_aux.midas.midas.dpt_depth import DPTDepthModel

    torch.manual_seed(seed)
    model = DPTDepthModel(path=None, backbone="vitb_rn50_384", non_negative=True)
    # The head ends in a ReLU; random weights can leave it all zero (a blank map), trained ones do not.
    with torch.no_grad():
        model.scratch.output_conv[4].bias.fill_(1.0)
    torch.save(model.state_dict(), folder / MIDAS_WEIGHTS)


def _write_depth_anything_v2(seed: int, folder: Path) -> None:
    """Depth Anything V2 Small's architecture shrunk (DINOv2 backbone of 4 layers, width 32), with the
    real checkpoint's image processor, written as a transformers model folder."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(seed)
    backbone = Dinov2Config(
        hidden_size=_HIDDEN,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=518,
        patch_size=14,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=14,
        reassemble_hidden_size=_HIDDEN,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        depth_estimation_type="relative",
    )
    DepthAnythingForDepthEstimation(config).save_pretrained(folder, safe_serialization=True)
    DPTImageProcessor(  # the published checkpoint's preprocessing
        do_resize=True,
        size={"height": 518, "width": 518},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_pad=False,
    ).save_pretrained(folder)


# family -> builder of an object with save_pretrained (pipelines, models).
_BUILDERS: dict[str, Callable[[int], object]] = {
    "sd15": _build_sd15,
    "sdxl-refiner": _build_sdxl_refiner,
    "kandinsky22": _build_kandinsky22,
    "kandinsky22-prior": _build_kandinsky22_prior,
    "sd-x2-latent-upscaler": _build_sd_x2_latent_upscaler,
    "sd-x4-upscaler": _build_sd_x4_upscaler,
    "controlnet-sd15": _build_controlnet_sd15,
}
# family -> writer of a twin in its library's own format. Families in neither table have no twin
# (Zoe and LeReS: hub mode only).
_WRITERS: dict[str, Callable[[int, Path], None]] = {
    "midas": _write_midas,
    "depth-anything-v2": _write_depth_anything_v2,
}


def _writer(family: str) -> Callable[[int, Path], None] | None:
    builder = _BUILDERS.get(family)
    if builder is not None:
        return lambda seed, folder: builder(seed).save_pretrained(folder, safe_serialization=True)
    return _WRITERS.get(family)


def has_twin(key: str) -> bool:
    """Whether a tiny twin can be built for this catalog key."""
    return _writer(get_spec(key).family) is not None


def twin_dir(root: Path, key: str) -> Path:
    """Where the twin of `key` lives under `root`."""
    get_spec(key)  # validates the key before it becomes part of a path
    return Path(root) / key


def _seed_for(key: str) -> int:
    # Distinct but fixed weights per entry: the style fine-tunes are different models, like the real ones.
    return list(CATALOG).index(key)


def build_twin(key: str, root: Path, *, force: bool = False) -> Path:
    """Write the twin of `key` under `root` (idempotent) and return its folder.

    The folder is written to a temporary sibling and renamed, so a crash never leaves half a twin.
    Kandinsky 2.2's decoder gets its prior built too, linked through the model card as on the Hub.

    Raises:
        ValueError: unknown key, or a family that has no twin builder.
    """
    spec = get_spec(key)
    writer = _writer(spec.family)
    if writer is None:
        raise ValueError(f"there is no tiny twin of {key!r}: its architecture cannot be built offline here")
    root = Path(root).resolve()
    target = twin_dir(root, key)
    marker = target / _MARKER
    if not force and marker.is_file() and json.loads(marker.read_text()).get("version") == TWIN_VERSION:
        return target
    prior_dir = build_twin(spec.prior, root, force=force) if spec.prior else None

    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        writer(_seed_for(key), staging)
        if prior_dir is not None:
            # diffusers reads connected pipelines from the card's `prior:` list, as in the real decoder repo.
            (staging / "README.md").write_text(f"---\nprior:\n- {prior_dir}\n---\nTiny twin of {spec.hub_id}.\n")
        (staging / _MARKER).write_text(
            json.dumps({"version": TWIN_VERSION, "key": key, "twin_of": spec.hub_id, "seed": _seed_for(key)})
        )
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    logger.info("built tiny twin of %s in %s", spec.hub_id, target)
    return target


def build_all(root: Path, *, force: bool = False) -> list[Path]:
    """Build every twin that has a builder; returns their folders."""
    return [build_twin(key, root, force=force) for key in CATALOG if has_twin(key)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the tiny random-weight twin of every catalog model.")
    parser.add_argument("--out", type=Path, required=True, help="folder to write one sub-folder per catalog key into")
    parser.add_argument("--force", action="store_true", help="rebuild twins that already exist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in build_all(args.out, force=args.force):
        print(path)


if __name__ == "__main__":
    main()
