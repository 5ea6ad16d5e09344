"""A diffusers SD 1.x pipeline's weights in the original single-file layout (CompVis' LDM names).

The inverse of what `from_single_file` reads, so a twin can be shared as the one `.safetensors` file people
download from model sites (engine.models.tiny.write_single_file_twin). Built from the layout the UNet's and VAE's
configs give (blocks, layers per block, which blocks attend), not for one size: the twins have fewer layers.
"""

from __future__ import annotations

from pathlib import Path

import torch

UNET = "model.diffusion_model."
VAE = "first_stage_model."
TEXT = "cond_stage_model.transformer."
RESNET = [
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("time_emb_proj.", "emb_layers.1."),
    ("conv_shortcut.", "skip_connection."),
]
UNET_TOP = [
    ("time_embedding.linear_1.", "time_embed.0."),
    ("time_embedding.linear_2.", "time_embed.2."),
    ("conv_in.", "input_blocks.0.0."),
    ("conv_norm_out.", "out.0."),
    ("conv_out.", "out.2."),
]
VAE_RESNET = [("conv_shortcut.", "nin_shortcut.")]
VAE_ATTENTION = [
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
]


def _renamed(name: str, prefixes: list[tuple[str, str]]) -> str:
    """`name` with its longest matching diffusers prefix replaced by the original one."""
    for old, new in sorted(prefixes, key=lambda pair: -len(pair[0])):
        if name.startswith(old):
            return new + name[len(old) :]
    raise KeyError(f"no original name for {name!r}")


def unet_prefixes(config) -> list[tuple[str, str]]:
    """(diffusers prefix, original prefix) for every block of a UNet2DConditionModel config."""
    blocks, per = len(config.block_out_channels), config.layers_per_block
    pairs = list(UNET_TOP)
    for i, (down, up) in enumerate(zip(config.down_block_types, config.up_block_types, strict=True)):
        for j in range(per):
            pairs.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{1 + i * (per + 1) + j}.0."))
            if "CrossAttn" in down:
                pairs.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{1 + i * (per + 1) + j}.1."))
        for j in range(per + 1):
            pairs.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{i * (per + 1) + j}.0."))
            if "CrossAttn" in up:
                pairs.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{i * (per + 1) + j}.1."))
        if i < blocks - 1:
            pairs.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(i + 1) * (per + 1)}.0.op."))
            position = 2 if "CrossAttn" in up else 1
            pairs.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{i * (per + 1) + per}.{position}."))
    pairs.append(("mid_block.attentions.0.", "middle_block.1."))
    pairs += [(f"mid_block.resnets.{j}.", f"middle_block.{2 * j}.") for j in range(2)]
    return pairs


def unet_original(unet) -> dict[str, torch.Tensor]:
    pairs = unet_prefixes(unet.config)
    out = {}
    for name, tensor in unet.state_dict().items():
        out[UNET + _inner(name, _renamed(name, pairs), "resnets.", RESNET)] = tensor
    return out


def _inner(name: str, renamed: str, block: str, layers: list[tuple[str, str]]) -> str:
    """Inside a block (`resnets.`, `attentions.`) the layer names differ too (norm1 -> in_layers.0, ...):
    `renamed` with what follows the block's index renamed by `layers`, where one of them matches."""
    if block not in name:
        return renamed
    inner = name.partition(block)[2].split(".", 1)[1]  # after the block's index
    if not any(inner.startswith(old) for old, _ in layers):
        return renamed
    return renamed[: len(renamed) - len(inner)] + _renamed(inner, layers)


def vae_prefixes(config) -> list[tuple[str, str]]:
    blocks, per = len(config.block_out_channels), config.layers_per_block
    pairs = [("encoder.conv_norm_out.", "encoder.norm_out."), ("decoder.conv_norm_out.", "decoder.norm_out.")]
    for i in range(blocks):
        pairs += [(f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.") for j in range(per)]
        up = blocks - 1 - i
        pairs += [(f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{up}.block.{j}.") for j in range(per + 1)]
        if i < blocks - 1:
            pairs.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."))
            pairs.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{up}.upsample."))
    for part in ("encoder", "decoder"):
        pairs.append((f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1."))
        pairs += [(f"{part}.mid_block.resnets.{k}.", f"{part}.mid.block_{k + 1}.") for k in range(2)]
    return pairs


def vae_original(vae) -> dict[str, torch.Tensor]:
    pairs = vae_prefixes(vae.config)
    out = {}
    for name, tensor in vae.state_dict().items():
        if not name.startswith(("encoder.", "decoder.")) or name.split(".")[1] in ("conv_in", "conv_out"):
            out[VAE + name] = tensor  # quant_conv, post_quant_conv, conv_in, conv_out keep their names
            continue
        renamed = _inner(name, _renamed(name, pairs), "resnets.", VAE_RESNET)
        renamed = _inner(name, renamed, "attentions.", VAE_ATTENTION)
        if ".attentions." in name and tensor.ndim == 2:  # the original attention uses 1x1 convolutions
            tensor = tensor[:, :, None, None]
        out[VAE + renamed] = tensor
    return out


def sd15_original(pipe) -> dict[str, torch.Tensor]:
    """Every weight of an SD 1.x pipeline (UNet, VAE, CLIP text encoder) under its original name."""
    state = {**unet_original(pipe.unet), **vae_original(pipe.vae)}
    # transformers 5 names CLIPTextModel's weights without the "text_model." the original files carry
    text = pipe.text_encoder.state_dict()
    for name, tensor in text.items():
        state[TEXT + ("" if name.startswith("text_model.") else "text_model.") + name] = tensor
    return {name: tensor.detach().contiguous() for name, tensor in state.items()}


def write_single_file(twin: str | Path, path: str | Path) -> Path:
    """The SD 1.x twin at `twin` written as one original-layout checkpoint: `.safetensors`, or a plain-tensor
    pickle for `.ckpt` (the two formats model sites share)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(twin, use_safetensors=True, safety_checker=None)
    state = sd15_original(pipe)
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, path, metadata={"format": "pt"})
    else:
        torch.save({"state_dict": state}, path)
    return path
