"""GPU speed of the engine with full-size architectures and random weights (speed does not depend on
weight values), built in seconds: the UNets, VAEs and ControlNet on the meta device, then `to_empty` on
the GPU and a quick random fill; text encoders built directly on the device (they hold index buffers).

Sections (`--sections`, all by default):

- variants: SD 1.5 img2img, 512x512, 50 steps x strength 0.8 (40 denoising steps), guidance 7.5, batch 1,
  through `Engine.img2img`, one `DevicePolicy` variant at a time (VARIANTS: eager fp16 + SDPA,
  channels_last, cuDNN benchmark, the engine's CUDA graphs, fused QKV, torch.compile and its modes). Loop
  it/s (one step = one UNet call on the CFG batch of 2), end-to-end it/s, seconds per image, warm-up, peak
  VRAM, each figure's share of the compute floor (about 1.6 TFLOP per step at 64x64 latents) and the
  image's difference from the first variant's.
- parts: one UNet step alone (eager and graphed, with the graph's error against eager), VAE encode and
  decode, prompt encoding; with --profile, torch.profiler's kernel table and GPU-busy share per image.
- sweep: a 4-cell guidance sweep batched over the same cells one by one; controlnet: ControlNet (depth)
  img2img at 512; refiner: the SDXL refiner at 1024, strength 0.3 (each eager and with --best).
- switch: model-switch times from local safetensors, with and without room for both models.

    python -m benchmarks.gpu                      # on a CUDA machine (RESULTS.md: the H100 figures)
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
import traceback
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

BASE = {"channels_last": True, "cudnn_benchmark": True}
VARIANTS = {
    "eager fp16 + SDPA": {},
    "+ channels_last + cuDNN benchmark": BASE,
    "+ CUDA graphs": {**BASE, "cuda_graphs": True},
    "+ CUDA graphs + fused QKV": {**BASE, "cuda_graphs": True, "fuse_qkv": True},
    "+ CUDA graphs (NCHW)": {"cuda_graphs": True},
    "+ CUDA graphs + channels_last": {"channels_last": True, "cuda_graphs": True},
    "+ CUDA graphs + cuDNN benchmark (NCHW)": {"cuda_graphs": True, "cudnn_benchmark": True},
    "torch.compile": {**BASE, "compile": True},
    "torch.compile + CUDA graphs (NCHW)": {"compile": True, "cuda_graphs": True},
    "torch.compile + CUDA graphs + channels_last": {"compile": True, "cuda_graphs": True, "channels_last": True},
    "torch.compile + CUDA graphs": {**BASE, "compile": True, "cuda_graphs": True},
    "torch.compile reduce-overhead": {**BASE, "compile": True, "compile_mode": "reduce-overhead"},
    "torch.compile max-autotune": {**BASE, "compile": True, "compile_mode": "max-autotune"},
    "torch.compile + CUDA graphs + fused QKV": {**BASE, "compile": True, "cuda_graphs": True, "fuse_qkv": True},
}
EAGER_VARIANTS = [v for v, options in VARIANTS.items() if not options.get("compile")]
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

    from engine.models.tiny import build_tokenizer, published_scheduler

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

    from engine.models.tiny import build_tokenizer, published_scheduler

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
            sync(self.device)
            self.marks[done] = time.perf_counter()

    def loop_its(self, total: int) -> float:
        return (total - 2) / (self.marks[total] - self.marks[2]) if total > 2 and total in self.marks else float("nan")


def measure_img2img(engine, request, runs: int, device: str):
    """(loop it/s, end-to-end it/s, seconds per image, last result): medians over `runs` after one warm-up."""
    engine.img2img(request)  # warm-up: compilation, autotuning, CUDA graph capture
    loops, e2e, seconds = [], [], []
    result = None
    for _ in range(runs):
        clock = StepClock(device)
        sync(device)
        started = time.perf_counter()
        result = engine.img2img(request, progress=clock)
        sync(device)
        elapsed = time.perf_counter() - started
        loops.append(clock.loop_its(result.steps_run))
        e2e.append(result.steps_run / elapsed)
        seconds.append(elapsed)
    return statistics.median(loops), statistics.median(e2e), statistics.median(seconds), result


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int) -> float:
    """Median seconds of `fn()` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def image_difference(a: Image.Image, b: Image.Image) -> str:
    import numpy as np

    x, y = np.asarray(a, dtype=np.int16), np.asarray(b, dtype=np.int16)
    return f"max |diff| {int(np.abs(x - y).max())}, mean {float(np.abs(x - y).mean()):.3f} (of 255)"


def peak_memory(device: str) -> str:
    if device != "cuda":
        return ""
    return (
        f", peak VRAM {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (held after: "
        f"{torch.cuda.memory_reserved() / 2**30:.2f} GiB)"
    )


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


class Harness:
    SECTIONS = ("variants", "parts", "sweep", "controlnet", "refiner", "switch")

    def __init__(self, args) -> None:
        from skimage import data

        from engine.base.settings import Settings
        from engine.pipelines.device import DevicePolicy
        from engine.workflows.basic import Img2ImgRequest

        self.args = args
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.dtype = torch.float16 if self.device == "cuda" else torch.float32
        name = torch.cuda.get_device_name(0) if self.device == "cuda" else platform.processor() or "cpu"
        self.short = next((k for k in PEAK_TFLOPS if k in name), name)
        self.peak = args.peak_tflops or PEAK_TFLOPS.get(self.short)
        self.size = 64 if args.small else 512
        import diffusers

        print(f"device: {name}; torch {torch.__version__}, diffusers {diffusers.__version__}, dtype {self.dtype}")
        if self.device == "cuda":
            print(f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()} (driver: nvidia-smi)")
        self.settings = Settings.from_env(
            {}, models="tiny", data_dir=Path(tempfile.gettempdir()) / "img2img-studio-gpu"
        )
        self.image = Image.fromarray(data.astronaut()).resize((self.size, self.size))
        self.request = Img2ImgRequest(
            image=self.image,
            prompt="Astronaut in a jungle, cold color palette, muted colors, detailed, 8k",
            model="sd15",
            strength=0.8,
            guidance_scale=7.5,
            num_inference_steps=args.steps,
            seed=0,
        )
        self.base_policy = DevicePolicy(device=self.device, dtype=self.dtype, offload="none")
        self.reference: Image.Image | None = None

    def engine(self, **options):
        from engine.core import Engine

        torch.backends.cudnn.benchmark = False  # a variant turns it on again if it asks
        return Engine(self.settings, policy=replace(self.base_policy, **options))

    def floor_share(self, its: float) -> str:
        if not self.peak or self.args.small:
            return ""
        return f", {its * FLOP_PER_STEP / (self.peak * 1e12):.0%} of the compute floor"

    def variants(self) -> None:
        for variant in self.args.variants.split(","):
            engine = self.engine(**VARIANTS[variant])
            started = time.perf_counter()
            engine.cache.adopt("sd15", "img2img", sd15_pipeline(self.device, self.dtype, self.args.small))
            built = time.perf_counter() - started
            reset_peak(self.device)
            first = time.perf_counter()
            loop, e2e, seconds, result = measure_img2img(engine, self.request, self.args.runs, self.device)
            warm = time.perf_counter() - first - seconds * self.args.runs
            image = result.images[0]
            if self.reference is None:
                self.reference = image
            print(
                f"SD 1.5 img2img {self.size}, {self.short}, {variant}: {loop:.1f} it/s (loop)"
                f"{self.floor_share(loop)}; {e2e:.1f} it/s end to end, {seconds:.3f} s/image; built in "
                f"{built:.1f}s, warm-up {warm:.1f}s{peak_memory(self.device)}; vs the first variant: "
                f"{image_difference(image, self.reference)}",
                flush=True,
            )
            engine.cache.clear()

    def parts(self) -> None:
        """Where an image's time goes, eager and with CUDA graphs: one UNet step alone, VAE encode and
        decode, the prompt encoding; the rest of the loop is the scheduler and the pipeline's host work."""
        from engine.pipelines.graphs import graph_forward, ungraph_forward

        engine = self.engine(**BASE)
        pipe = sd15_pipeline(self.device, self.dtype, self.args.small)
        engine.cache.adopt("sd15", "img2img", pipe)
        latent = self.size // 8
        generator = torch.Generator(self.device).manual_seed(1)
        sample = torch.randn(2, 4, latent, latent, generator=generator, device=self.device, dtype=self.dtype)
        states = torch.randn(
            2, 77, pipe.text_encoder.config.hidden_size, generator=generator, device=self.device, dtype=self.dtype
        )
        t = torch.tensor(500, device=self.device)
        repeats = 20
        with torch.inference_mode():
            eager_out = pipe.unet(sample, t, encoder_hidden_states=states, return_dict=False)[0]
            unet_eager = timed(lambda: pipe.unet(sample, t, encoder_hidden_states=states), self.device, repeats)
            if self.device == "cuda":
                graph_forward(pipe.unet)
                graphed_out = pipe.unet(sample, t, encoder_hidden_states=states, return_dict=False)[0]
                error = ((graphed_out.float() - eager_out.float()).norm() / eager_out.float().norm()).item()
                unet_graph = timed(lambda: pipe.unet(sample, t, encoder_hidden_states=states), self.device, repeats)
                ungraph_forward(pipe.unet)
                print(
                    f"UNet step (CFG batch 2) alone: eager {unet_eager * 1e3:.2f} ms, CUDA graph "
                    f"{unet_graph * 1e3:.2f} ms ({1 / unet_graph:.1f} steps/s{self.floor_share(1 / unet_graph)}); "
                    f"graph vs eager relative error {error:.2e}",
                    flush=True,
                )
            else:
                print(f"UNet step alone: eager {unet_eager * 1e3:.2f} ms")
            pixels = torch.randn(1, 3, self.size, self.size, generator=generator, device=self.device, dtype=self.dtype)
            latents = torch.randn(1, 4, latent, latent, generator=generator, device=self.device, dtype=self.dtype)
            encode = timed(lambda: pipe.vae.encode(pixels), self.device, 10)
            decode = timed(lambda: pipe.vae.decode(latents), self.device, 10)
            prompt = timed(lambda: pipe.encode_prompt(self.request.prompt, self.device, 1, True, ""), self.device, 10)
        print(
            f"VAE encode {encode * 1e3:.2f} ms, VAE decode {decode * 1e3:.2f} ms "
            f"({decode / unet_eager:.2f} eager UNet steps), prompt encoding (2 prompts) {prompt * 1e3:.2f} ms",
            flush=True,
        )
        if self.device == "cuda" and self.args.profile:
            self.profile(engine)
        engine.cache.clear()

    def profile(self, engine) -> None:
        """GPU-busy share of one image, eager and graphed, from torch.profiler's kernel times."""
        from torch.profiler import ProfilerActivity, profile

        from engine.pipelines.speedups import apply_graphs

        pipe = engine.cache.peek("sd15")
        for label in ("eager", "CUDA graphs"):
            if label == "CUDA graphs":
                apply_graphs(pipe, replace(engine.policy, cuda_graphs=True))
            engine.img2img(self.request)
            sync(self.device)
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                started = time.perf_counter()
                engine.img2img(self.request)
                sync(self.device)
                wall = time.perf_counter() - started
            events = prof.key_averages()
            kernel_us = sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA")
            print(
                f"profile, {label}: wall {wall * 1e3:.1f} ms per image (profiled), GPU kernels "
                f"{kernel_us / 1e3:.1f} ms ({kernel_us / 1e6 / wall:.0%} busy)",
                flush=True,
            )
            print(events.table(sort_by="self_device_time_total", row_limit=12, max_name_column_width=60))

    def sweep(self) -> None:
        for label, options in self.compared():
            self.sweep_once(label, options)

    def sweep_once(self, label: str, options: dict) -> None:
        from engine.workflows.sweep import SweepRequest

        engine = self.engine(**options)
        engine.cache.adopt("sd15", "img2img", sd15_pipeline(self.device, self.dtype, self.args.small))
        sweep_request = SweepRequest(base=self.request, x_axis="guidance_scale", x_values="3, 5, 7.5, 10")
        plan = engine.plan(sweep_request)

        def one_by_one() -> None:
            for cell in plan.cells:
                engine.img2img(replace(self.request, guidance_scale=cell.plan.guidance_scale))

        def batched() -> None:
            list(engine.sweep(plan))

        reset_peak(self.device)
        repeats = max(1, self.args.runs // 2)
        times = {"batched": timed(batched, self.device, repeats)}
        batched_peak = peak_memory(self.device)
        times["one by one"] = timed(one_by_one, self.device, repeats)
        print(
            f"4-cell guidance sweep {self.size}, {self.short}, {label}: batched {times['batched']:.2f}s"
            f"{batched_peak}, one by one {times['one by one']:.2f}s, ratio "
            f"{times['batched'] / times['one by one']:.3f} (target <= 0.4)",
            flush=True,
        )
        engine.cache.clear()

    def compared(self) -> list[tuple[str, dict]]:
        """Eager and the best variant, for the sections that compare the two (--no-eager: the best alone)."""
        best = ("best: " + self.args.best, self.best())
        return [best] if self.args.no_eager else [("eager", {}), best]

    def best(self) -> dict:
        return VARIANTS[self.args.best] if self.device == "cuda" else {}

    def controlnet(self) -> None:
        for label, options in self.compared():
            self.controlnet_once(label, options)

    def controlnet_once(self, label: str, options: dict) -> None:
        from diffusers import ControlNetModel, StableDiffusionControlNetImg2ImgPipeline

        from engine.pipelines.speedups import apply_speedups

        base = sd15_pipeline(self.device, self.dtype, self.args.small)
        with torch.device("meta"):
            controlnet = ControlNetModel.from_unet(base.unet, load_weights_from_unet=False)
        controlnet = build(ControlNetModel, dict(controlnet.config), self.device, self.dtype)
        pipe = StableDiffusionControlNetImg2ImgPipeline(**base.components, controlnet=controlnet)
        pipe.set_progress_bar_config(disable=True)
        torch.backends.cudnn.benchmark = False
        apply_speedups(pipe, replace(self.base_policy, **options))
        control = self.image.convert("L").convert("RGB")

        def run() -> None:
            with torch.inference_mode():
                pipe(
                    self.request.prompt,
                    image=self.image,
                    control_image=control,
                    strength=0.8,
                    num_inference_steps=self.args.steps,
                    guidance_scale=7.5,
                    generator=torch.Generator(self.device).manual_seed(0),
                )

        reset_peak(self.device)
        seconds = timed(run, self.device, max(1, self.args.runs // 2))
        steps = int(self.args.steps * 0.8)
        print(
            f"ControlNet depth img2img {self.size}, {self.short}, {label}: {steps / seconds:.1f} it/s end to "
            f"end, {seconds:.3f} s/image{peak_memory(self.device)}",
            flush=True,
        )

    def refiner(self) -> None:
        refiner_size = 64 if self.args.small else 1024
        for label, options in self.compared():
            engine = self.engine(**options)
            engine.cache.adopt("sdxl-refiner", "img2img", refiner_pipeline(self.device, self.dtype, self.args.small))
            refine = replace(
                self.request,
                model="sdxl-refiner",
                strength=0.3,
                guidance_scale=5.0,
                image=self.image.resize((refiner_size, refiner_size)),
            )
            reset_peak(self.device)
            loop, e2e, seconds, _ = measure_img2img(engine, refine, max(1, self.args.runs // 2), self.device)
            print(
                f"SDXL refiner img2img {refiner_size}, {self.short}, {label}: {loop:.1f} it/s (loop), {e2e:.1f} "
                f"it/s end to end, {seconds:.3f} s/image{peak_memory(self.device)}",
                flush=True,
            )
            engine.cache.clear()

    def switch(self) -> None:
        """Model-switch time with full-size weights saved as safetensors on local disk: a cold load into
        the GPU, a switch to the other model (evicting or not), a switch back, and a from_pipe derivation."""
        from engine.models.catalog import get_spec

        folder = Path(tempfile.mkdtemp(prefix="studio-switch-"))
        builders = {"sd15": sd15_pipeline, "sdxl-refiner": refiner_pipeline}
        for key, builder in builders.items():
            pipe = builder(self.device, self.dtype, self.args.small)
            started = time.perf_counter()
            pipe.save_pretrained(folder / key)
            print(f"saved {key}: {time.perf_counter() - started:.1f}s", flush=True)
            del pipe
            torch.cuda.empty_cache() if self.device == "cuda" else None

        from engine.pipelines.cache import PipelineCache

        def source(spec):
            return str(folder / spec.key)

        for budget_label, budget in (("both fit", None), ("one at a time", 1)):
            cache = PipelineCache(
                source, self.base_policy, budget_bytes=budget, load_kwargs=lambda spec: {"use_safetensors": True}
            )
            marks = []
            for key in ("sd15", "sdxl-refiner", "sd15", "sdxl-refiner"):
                get_spec(key)
                sync(self.device)
                started = time.perf_counter()
                cache.get(key, "img2img")
                sync(self.device)
                marks.append(f"{key} {time.perf_counter() - started:.2f}s")
            cache.get("sd15", "img2img")
            started = time.perf_counter()
            cache.get("sd15", "text2img")
            derive = time.perf_counter() - started
            print(
                f"model switches ({budget_label}): {', '.join(marks)}; from_pipe text2img {derive * 1e3:.0f} ms"
                f"{peak_memory(self.device)}",
                flush=True,
            )
            cache.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description="GPU speed of the engine with full-size random-weight models.")
    parser.add_argument("--small", action="store_true", help="tiny configs: check the harness on a CPU")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--variants", default=",".join(EAGER_VARIANTS), help="comma-separated; all: " + ", ".join(VARIANTS)
    )
    parser.add_argument("--sections", default=",".join(Harness.SECTIONS), help="comma-separated subset")
    parser.add_argument(
        "--best", default="+ CUDA graphs + channels_last", help="the variant the other sections compare with eager"
    )
    parser.add_argument("--no-eager", action="store_true", help="sections run the best variant only")
    parser.add_argument("--profile", action="store_true", help="torch.profiler tables in the parts section")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense fp16 peak, for the floor share")
    args = parser.parse_args()
    harness = Harness(args)
    for section in args.sections.split(","):
        started = time.perf_counter()
        try:
            getattr(harness, section)()
        except Exception:  # one section failing must not cost the others' figures
            traceback.print_exc()
            print(f"section {section} FAILED", flush=True)
        print(f"[{section}: {time.perf_counter() - started:.0f}s]", flush=True)


if __name__ == "__main__":
    main()
