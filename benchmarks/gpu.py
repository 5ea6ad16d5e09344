"""GPU speed of the engine with full-size architectures and random weights (speed does not depend on
weight values), built in seconds: the UNets, VAEs and ControlNet on the meta device, then `to_empty` on
the GPU and a quick random fill; text encoders built directly on the device (they hold index buffers).

Measured through the engine (`Engine.img2img`, `Engine.sweep`), one variant at a time:

- SD 1.5 img2img, 512x512, 50 steps x strength 0.8 (40 denoising steps), guidance 7.5, batch 1:
  eager fp16 + SDPA; + channels_last; + torch.compile of UNet and VAE; + CUDA graphs
  ("max-autotune"); + fused QKV projections. Loop it/s (one step = one UNet call on the CFG batch of
  2), end-to-end it/s and seconds per image, and each figure's share of the compute floor
  (about 1.6 TFLOP per step at 64x64 latents).
- ControlNet (depth) img2img on SD 1.5 at 512 (raw pipeline: the depth workflow is issue 5).
- SDXL refiner img2img at 1024, strength 0.3.
- A 4-cell guidance sweep batched over the same cells one by one.

    python -m benchmarks.gpu                      # on a CUDA machine
    python -m benchmarks.gpu --small --steps 4    # CPU check of the harness with tiny configs

Configs come from the Hugging Face cache when the real checkpoints are there, else from the
transcriptions below (from the checkpoints' published config.json files).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
SD_VAE = {
    "sample_size": 512,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "scaling_factor": 0.18215,
}
CLIP_L = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "vocab_size": 49408,
    "max_position_embeddings": 77,
}
REFINER_UNET = {
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (384, 768, 1536, 1536),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "attention_head_dim": (6, 12, 24, 24),
    "transformer_layers_per_block": 4,
    "cross_attention_dim": 1280,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2560,
}
OPEN_CLIP_BIGG = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "projection_dim": 1280,
    "hidden_act": "gelu",
    "vocab_size": 49408,
    "max_position_embeddings": 77,
}

SMALL = {  # the harness on a CPU: same code paths, tiny sizes
    "unet": {
        "block_out_channels": (32, 64, 64, 64),
        "attention_head_dim": 4,
        "cross_attention_dim": 32,
        "layers_per_block": 1,
        "norm_num_groups": 16,
    },
    "vae": {"block_out_channels": (16, 32, 32, 32), "layers_per_block": 1, "norm_num_groups": 16},
    "clip": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "projection_dim": 32,
    },
    "refiner": {
        "block_out_channels": (32, 64, 64, 64),
        "attention_head_dim": (2, 4, 4, 4),
        "transformer_layers_per_block": 1,
        "cross_attention_dim": 32,
        "layers_per_block": 1,
        "norm_num_groups": 16,
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 72,
    },
}

VARIANTS = {
    "eager fp16 + SDPA": {},
    "+ channels_last": {"channels_last": True},
    "+ torch.compile": {"channels_last": True, "compile": True, "compile_mode": "max-autotune-no-cudagraphs"},
    "+ CUDA graphs": {"channels_last": True, "compile": True, "compile_mode": "max-autotune"},
    "+ fused QKV": {"channels_last": True, "compile": True, "compile_mode": "max-autotune", "fuse_qkv": True},
}
FLOP_PER_STEP = 1.6e12  # SD 1.5 UNet at 64x64 latents, CFG batch of 2
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L4": 121.0}  # dense fp16/bf16 tensor cores


def build(module_cls, config: dict, device: str, dtype: torch.dtype):
    """A full-size module with random weights, without materialising them on the CPU."""
    with torch.device("meta"):
        module = module_cls(**config)
    module = module.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, 0.02, generator=generator)
    return module.to(dtype).eval()


def text_encoder(cls, config: dict, device: str, dtype: torch.dtype):
    from transformers import CLIPTextConfig

    with torch.device(device):  # keeps the position-id buffers real
        return cls(CLIPTextConfig(**config)).to(dtype).eval()


def unet_config_for(transcribed: dict, small_key: str, repo: str, small: bool) -> dict:
    """The real checkpoint's UNet config when it is in the local Hugging Face cache, else the transcription;
    tiny sizes on top with --small."""
    from diffusers import UNet2DConditionModel

    if small:
        return {**transcribed, **SMALL[small_key]}
    try:
        cached = UNet2DConditionModel.load_config(repo, subfolder="unet", local_files_only=True)
    except (OSError, ValueError):
        return dict(transcribed)
    return {k: v for k, v in cached.items() if not k.startswith("_")}


def sd15_pipeline(device: str, dtype: torch.dtype, small: bool):
    from diffusers import AutoencoderKL, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    from engine.tiny import build_tokenizer, published_scheduler

    unet_config = unet_config_for(SD15_UNET, "unet", "stable-diffusion-v1-5/stable-diffusion-v1-5", small)
    vae = build(AutoencoderKL, {**SD_VAE, **(SMALL["vae"] if small else {})}, device, dtype)
    clip = {**CLIP_L, **(SMALL["clip"] if small else {})}
    return StableDiffusionImg2ImgPipeline(
        vae=vae,
        text_encoder=text_encoder(CLIPTextModel, clip, device, dtype),
        tokenizer=build_tokenizer(),
        unet=build(UNet2DConditionModel, unet_config, device, dtype),
        scheduler=published_scheduler("stable-diffusion-v1-5/stable-diffusion-v1-5"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def refiner_pipeline(device: str, dtype: torch.dtype, small: bool):
    from diffusers import AutoencoderKL, StableDiffusionXLImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextModelWithProjection

    from engine.tiny import build_tokenizer, published_scheduler

    unet_config = unet_config_for(REFINER_UNET, "refiner", "stabilityai/stable-diffusion-xl-refiner-1.0", small)
    vae_config = {**SD_VAE, "scaling_factor": 0.13025, "force_upcast": True, **(SMALL["vae"] if small else {})}
    clip = {**OPEN_CLIP_BIGG, **(SMALL["clip"] if small else {})}
    return StableDiffusionXLImg2ImgPipeline(
        vae=build(AutoencoderKL, vae_config, device, dtype),
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=text_encoder(CLIPTextModelWithProjection, clip, device, dtype),
        tokenizer_2=build_tokenizer(),
        unet=build(UNet2DConditionModel, unet_config, device, dtype),
        scheduler=published_scheduler("stabilityai/stable-diffusion-xl-refiner-1.0"),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
    )


class StepClock:
    """Progress callback that times the steady-state loop: synchronised at the second and last steps."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.marks: dict[int, float] = {}

    def __call__(self, done: int, total: int) -> None:
        if done in (2, total):
            if self.device == "cuda":
                torch.cuda.synchronize()
            self.marks[done] = time.perf_counter()

    def loop_its(self, total: int) -> float:
        return (total - 2) / (self.marks[total] - self.marks[2]) if total > 2 and total in self.marks else float("nan")


def measure_img2img(engine, request, runs: int, device: str) -> tuple[float, float, float]:
    """(loop it/s, end-to-end it/s, seconds per image): medians over `runs` after one warm-up."""
    engine.img2img(request)  # warm-up: compilation, autotuning, CUDA graph capture
    loops, e2e, seconds = [], [], []
    for _ in range(runs):
        clock = StepClock(device)
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = engine.img2img(request, progress=clock)
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        loops.append(clock.loop_its(result.steps_run))
        e2e.append(result.steps_run / elapsed)
        seconds.append(elapsed)
    return statistics.median(loops), statistics.median(e2e), statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description="GPU speed of the engine with full-size random-weight models.")
    parser.add_argument("--small", action="store_true", help="tiny configs: check the harness on a CPU")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    parser.add_argument("--skip", default="", help="comma-separated: controlnet, refiner, sweep")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense fp16 peak, for the floor share")
    args = parser.parse_args()

    from skimage import data

    from engine.cache import DevicePolicy
    from engine.core import Engine
    from engine.requests import Img2ImgRequest
    from engine.settings import Settings
    from engine.sweep import SweepSpec

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    name = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
    short = next((k for k in PEAK_TFLOPS if k in name), name)
    peak = args.peak_tflops or PEAK_TFLOPS.get(short)
    size = 64 if args.small else 512
    import diffusers

    print(f"device: {name}; torch {torch.__version__}, diffusers {diffusers.__version__}, dtype {dtype}")
    settings = Settings.from_env({}, models="tiny", data_dir=Path(tempfile.gettempdir()) / "img2img-studio-gpu")
    image = Image.fromarray(data.astronaut()).resize((size, size))
    request = Img2ImgRequest(
        image=image,
        prompt="Astronaut in a jungle, cold color palette, muted colors, detailed, 8k",
        model="sd15",
        strength=0.8,
        guidance_scale=7.5,
        num_inference_steps=args.steps,
        seed=0,
    )
    base_policy = DevicePolicy(device=device, dtype=dtype, offload="none")

    def floor_share(its: float) -> str:
        return f", {its * FLOP_PER_STEP / (peak * 1e12):.0%} of the compute floor" if peak and not args.small else ""

    for variant in args.variants.split(","):
        policy = replace(base_policy, **VARIANTS[variant])
        engine = Engine(settings, policy=policy)
        started = time.perf_counter()
        engine.cache.adopt("sd15", "img2img", sd15_pipeline(device, dtype, args.small))
        built = time.perf_counter() - started
        first = time.perf_counter()
        loop, e2e, seconds = measure_img2img(engine, request, args.runs, device)
        warm = time.perf_counter() - first - seconds * args.runs
        print(
            f"SD 1.5 img2img {size}, {short}, {variant}: {loop:.1f} it/s (loop){floor_share(loop)}; "
            f"{e2e:.1f} it/s end to end, {seconds:.3f} s/image; built in {built:.1f}s, warm-up {warm:.1f}s"
        )
        engine.cache.clear()

    skip = set(filter(None, args.skip.split(",")))
    if "sweep" not in skip:
        engine = Engine(settings, policy=base_policy)
        engine.cache.adopt("sd15", "img2img", sd15_pipeline(device, dtype, args.small))
        spec = SweepSpec(base=request, x_axis="guidance_scale", x_values="3, 5, 7.5, 10")
        plan = engine.plan_sweep(spec)

        def one_by_one() -> None:
            for cell in plan.cells:
                engine.img2img(replace(request, guidance_scale=cell.job.guidance_scale))

        def batched() -> None:
            list(engine.sweep(plan))

        batched(), one_by_one()  # warm-up
        times = {}
        for label, fn in (("batched", batched), ("one by one", one_by_one)):
            runs = []
            for _ in range(max(1, args.runs // 2)):
                if device == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                fn()
                if device == "cuda":
                    torch.cuda.synchronize()
                runs.append(time.perf_counter() - started)
            times[label] = statistics.median(runs)
        print(
            f"4-cell guidance sweep {size}, {short}: batched {times['batched']:.2f}s, one by one "
            f"{times['one by one']:.2f}s, ratio {times['batched'] / times['one by one']:.3f} (target <= 0.4)"
        )
        engine.cache.clear()

    if "controlnet" not in skip:
        from diffusers import ControlNetModel, StableDiffusionControlNetImg2ImgPipeline

        base = sd15_pipeline(device, dtype, args.small)
        with torch.device("meta"):
            controlnet = ControlNetModel.from_unet(base.unet, load_weights_from_unet=False)
        controlnet = build(ControlNetModel, dict(controlnet.config), device, dtype)
        pipe = StableDiffusionControlNetImg2ImgPipeline(**base.components, controlnet=controlnet)
        pipe.set_progress_bar_config(disable=True)
        control = image.convert("L").convert("RGB")

        def run_controlnet() -> float:
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            pipe(
                request.prompt,
                image=image,
                control_image=control,
                strength=0.8,
                num_inference_steps=args.steps,
                guidance_scale=7.5,
                generator=torch.Generator(device).manual_seed(0),
            )
            if device == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - started

        run_controlnet()
        seconds = statistics.median(run_controlnet() for _ in range(max(1, args.runs // 2)))
        steps = int(args.steps * 0.8)
        print(
            f"ControlNet depth img2img {size}, {short}, eager: {steps / seconds:.1f} it/s end to end, "
            f"{seconds:.3f} s/image"
        )
        del pipe, base, controlnet

    if "refiner" not in skip:
        refiner_size = 64 if args.small else 1024
        engine = Engine(settings, policy=base_policy)
        engine.cache.adopt("sdxl-refiner", "img2img", refiner_pipeline(device, dtype, args.small))
        refine = replace(
            request,
            model="sdxl-refiner",
            strength=0.3,
            guidance_scale=5.0,
            image=image.resize((refiner_size, refiner_size)),
        )
        loop, e2e, seconds = measure_img2img(engine, refine, max(1, args.runs // 2), device)
        print(
            f"SDXL refiner img2img {refiner_size}, {short}, eager: {loop:.1f} it/s (loop), {e2e:.1f} it/s end to "
            f"end, {seconds:.3f} s/image"
        )


if __name__ == "__main__":
    main()
