"""Engine overhead: the Basic call over the raw diffusers call, same pipeline object, same parameters.

Runs on the tiny SD 1.5 twin (CPU, no network). Each round runs both calls back to back, in
alternating order, so drift in machine load hits both sides alike; the figure is the median of the
per-round ratios (this machine's call-to-call noise is about 5%, far above the engine's own work).

    python -m benchmarks.engine_overhead [--rounds 24] [--size 256]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from PIL import Image

from benchmarks.timing import median_ratio, paired_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--strength", type=float, default=0.8)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "img2img-studio-bench")
    args = parser.parse_args()

    from skimage import data

    from engine.base.settings import Settings
    from engine.core import Engine
    from engine.workflows.basic import Img2ImgRequest

    engine = Engine(Settings.from_env({}, models="tiny", data_dir=args.data_dir))
    image = Image.fromarray(data.astronaut()).resize((args.size, args.size))
    prompt = "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k"
    request = Img2ImgRequest(
        image=image,
        prompt=prompt,
        model="sd15",
        strength=args.strength,
        guidance_scale=7.5,
        num_inference_steps=args.steps,
        seed=0,
    )
    pipe = engine.cache.get("sd15", "img2img")  # the very object the engine calls

    def run_engine() -> Image.Image:
        return engine.img2img(request).images[0]

    def run_raw() -> Image.Image:
        generator = [torch.Generator("cpu").manual_seed(0)]
        return pipe(
            prompt=prompt,
            image=image,
            strength=args.strength,
            guidance_scale=7.5,
            num_inference_steps=args.steps,
            generator=generator,
        ).images[0]

    # Warm-up, and a check that both sides compute the same image.
    assert run_engine().tobytes() == run_raw().tobytes(), "engine and raw diffusers disagree"
    engine_times, raw_times = paired_times(run_engine, run_raw, args.rounds)
    engine_median, raw_median = statistics.median(engine_times), statistics.median(raw_times)
    print(f"device: cpu, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"tiny SD 1.5 img2img {args.size}px, {args.steps} steps x strength {args.strength}, {args.rounds} rounds")
    print(f"raw diffusers call: median {raw_median * 1000:.1f} ms, min {min(raw_times) * 1000:.1f} ms")
    print(f"engine Basic call:  median {engine_median * 1000:.1f} ms, min {min(engine_times) * 1000:.1f} ms")
    print(f"ratio of minimums: {min(engine_times) / min(raw_times):.3f}")
    print(f"ratio engine/raw (median of paired rounds): {median_ratio(engine_times, raw_times):.3f} (target <= 1.02)")


if __name__ == "__main__":
    main()
