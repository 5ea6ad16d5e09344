"""What a ZeroGPU call asks for, per workflow at full size: `python -m benchmarks.zerogpu_sizes`.

Plans are made at the sizes and steps a real run uses (a 512x512 photo, each model's default steps); no
model is loaded. Each row gives the seconds asked with SD 1.5 loaded at start (the ZeroGPU default,
STUDIO_PRELOAD) and with nothing loaded, and whether STUDIO_GPU_SECONDS_MAX (120) lets the run through.
The per-step costs behind them are Family.gpu_step_seconds; benchmarks/RESULTS.md says where they come from.
"""

from __future__ import annotations

import tempfile

from PIL import Image

from engine.base.settings import FULL_PIXELS, Settings
from engine.core import Engine
from engine.hosting import gpu_seconds
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.chain import ChainRequest
from engine.workflows.depth import DepthRequest
from engine.workflows.sweep import SweepRequest


def requests(photo: Image.Image) -> dict[str, object]:
    basic = Img2ImgRequest(image=photo, prompt="a cat wizard", num_inference_steps=50)
    return {
        "Basic, SD 1.5, 512, 50 steps x 0.8": basic,
        "Basic, SD 1.5, 512, 4 images": Img2ImgRequest(image=photo, prompt="x", num_inference_steps=50, num_images=4),
        "Basic, SDXL refiner, 1024, 50 x 0.3": Img2ImgRequest(
            image=photo.resize((1024, 1024)), prompt="x", model="sdxl-refiner", num_inference_steps=50
        ),
        "Basic, Kandinsky 2.2, 768, 100 x 0.3 (guide's example)": Img2ImgRequest(
            image=photo.resize((768, 768)), prompt="x", model="kandinsky22", num_inference_steps=100, strength=0.3
        ),
        "Sweep, 4 guidance cells": SweepRequest(base=basic, x_axis="guidance_scale", x_values="3, 6, 9, 12"),
        "Sweep, 16 cells (4 x 4)": SweepRequest(
            base=basic, x_axis="guidance_scale", x_values="3, 6, 9, 12", y_axis="strength", y_values="0.4,0.6,0.8,1"
        ),
        "Chain, text-image-image": ChainRequest(preset="text-image-image", prompt="x"),
        "Chain, image-image-image": ChainRequest(image=photo, preset="image-image-image", prompt="x"),
        "Chain, image-upscale-superres (128 px in)": ChainRequest(
            image=photo.resize((128, 128)), preset="image-upscale-superres", prompt="x"
        ),
        "Depth, estimate + ControlNet + restyle": DepthRequest(image=photo, prompt="x", num_inference_steps=50),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as data:
        engine = Engine(Settings.from_env({}, models="tiny", data_dir=data, max_pixels=FULL_PIXELS, default_steps=50))
        photo = Image.open(engine.example_images()["chelsea the cat"]).convert("RGB").resize((512, 512))
        limit = engine.settings.gpu_seconds_max
        print("| run | denoising steps | seconds asked, SD 1.5 loaded at start | nothing loaded | within 120 s |")
        print("|---|---|---|---|---|")
        for label, request in requests(photo).items():
            work = engine.gpu_work(request)
            warm, cold = gpu_seconds(work, resident={"sd15"}), gpu_seconds(work)
            steps = sum(loop.steps * loop.images for loop in work)
            print(f"| {label} | {steps} | {warm} | {cold} | {'yes' if warm <= limit else 'refused'} |")


if __name__ == "__main__":
    main()
