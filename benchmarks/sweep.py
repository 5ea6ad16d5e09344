"""Sweep speed: a 4-cell sweep over the same 4 cells run one by one through the Basic path.

Two sweeps on the tiny SD 1.5 twin (CPU, no network): 4 guidance scales, and 4 seeds. Each round
runs the sweep and the one-by-one cells back to back, in alternating order; the figure is the median
of the per-round ratios. Target <= 0.5 for both.

Batching saves per-call work (text and VAE encoding, Python and dispatch per step); on a CPU the
UNet's compute grows with the batch, so the saving shrinks as images grow. Several sizes are measured
in the same run to show where that happens.

    python -m benchmarks.sweep [--rounds 3] [--sizes 64,128,256]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.timing import median_ratio, paired_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="64,128,256", help="image sides to measure, comma separated")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "img2img-studio-bench")
    args = parser.parse_args()

    from skimage import data

    from engine.base.settings import Settings
    from engine.core import Engine

    engine = Engine(Settings.from_env({}, models="tiny", data_dir=args.data_dir))
    engine.cache.get("sd15")  # load once, outside the timings
    print(f"device: cpu, threads {torch.get_num_threads()}, torch {torch.__version__}")
    for size in (int(s) for s in args.sizes.split(",")):
        image = Image.fromarray(data.chelsea()).resize((size, size))
        print(f"tiny SD 1.5, {size}px, {args.steps} steps x strength 0.8, 4 cells, {args.rounds} rounds")
        measure(engine, image, args.steps, args.rounds)


def measure(engine, image: Image.Image, steps: int, rounds: int) -> None:
    from engine.workflows.basic import Img2ImgRequest
    from engine.workflows.sweep import SweepRequest

    base = Img2ImgRequest(
        image=image,
        prompt="cat wizard, gandalf, lord of the rings, detailed, fantasy",
        negative_prompt="blurry, low quality",
        model="sd15",
        strength=0.8,
        guidance_scale=7.5,
        num_inference_steps=steps,
        seed=7,
    )
    sweeps = {
        "guidance 1.5, 4.5, 7.5, 12": SweepRequest(base=base, x_axis="guidance_scale", x_values="1.5, 4.5, 7.5, 12"),
        "seeds 1-4": SweepRequest(base=base, x_axis="seed", x_values="1-4"),
    }
    for name, spec in sweeps.items():
        plan = engine.plan(spec)

        def run_sweep(plan=plan) -> list[Image.Image]:
            *_, final = engine.sweep(plan)
            return final.images

        def run_one_by_one(plan=plan) -> list[Image.Image]:
            return [
                engine.img2img(
                    Img2ImgRequest(
                        image=image,
                        prompt=cell.plan.prompt,
                        negative_prompt=cell.plan.negative_prompt,
                        model="sd15",
                        strength=cell.plan.strength,
                        guidance_scale=cell.plan.guidance_scale,
                        num_inference_steps=cell.plan.num_inference_steps,
                        seed=cell.plan.seeds[0],
                    )
                ).images[0]
                for cell in plan.cells
            ]

        worst = max(
            int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())
            for a, b in zip(run_sweep(), run_one_by_one(), strict=True)
        )
        sweep_times, single_times = paired_times(run_sweep, run_one_by_one, rounds)
        print(
            f"{name}: {len(plan.calls)} pipeline call(s); sweep median {statistics.median(sweep_times):.2f}s, "
            f"one by one median {statistics.median(single_times):.2f}s; max pixel difference {worst}/255"
        )
        ratio = median_ratio(sweep_times, single_times)
        print(f"  ratio sweep/one-by-one (median of paired rounds): {ratio:.3f} (target <= 0.5)")


if __name__ == "__main__":
    main()
