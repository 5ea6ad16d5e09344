"""Live previews' cost: a watched Basic run (latents projected to RGB while it denoises) over the same run
unwatched, on the tiny twins (CPU, no network).

Each round runs both sides back to back in alternating order (benchmarks.timing). Two watched variants:
the app's (a preview on a call's first step, then at most every 0.5 s) and the worst case, a preview at
every step. The watcher does what the page's handler does with a preview: scales it to the output's size.
Both sides must make the same images.

    python -m benchmarks.preview [--rounds 6] [--size 256] [--steps 30] [--models sd15,flux-schnell]
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
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--strength", type=float, default=0.8)
    parser.add_argument("--models", default="sd15,sdxl-base,sd35-medium,flux-schnell")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "img2img-studio-bench")
    args = parser.parse_args()

    from skimage import data

    from engine.base.settings import Settings
    from engine.core import Engine
    from engine.workflows.basic import Img2ImgRequest

    engine = Engine(Settings.from_env({}, models="tiny", data_dir=args.data_dir))
    image = Image.fromarray(data.astronaut()).resize((args.size, args.size))
    print(f"device: cpu, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"tiny twins, img2img {args.size}px, {args.steps} steps x strength {args.strength}, {args.rounds} rounds")
    print("model | unwatched median | watched (0.5 s) median, previews | ratio | every step median, previews | ratio")
    for model in args.models.split(","):
        request = Img2ImgRequest(
            image=image,
            prompt="Astronaut in a jungle, cold color palette, muted colors, detailed, 8k",
            model=model,
            strength=args.strength,
            num_inference_steps=args.steps,
            seed=0,
        )
        print(measure(engine, request, args.rounds))


def measure(engine, request, rounds: int) -> str:
    """One model's row: the unwatched run against the app's watched run and against a preview every step."""
    previews: list[int] = []

    def watch(preview) -> None:
        for picture in preview.images:
            picture.resize(preview.size, Image.Resampling.BILINEAR)  # as ui.events.live_images does
        previews.append(preview.step)

    def unwatched() -> bytes:
        return engine.img2img(request).images[0].tobytes()

    def watched() -> bytes:
        return engine.img2img(request, live_preview=watch).images[0].tobytes()

    plain_context = engine.context

    def every_step(**options):
        context = plain_context(**options)
        context.reporter.live_seconds = 0.0
        return context

    # Warm-up (loads the model), and a check that both sides make the same image.
    assert unwatched() == watched(), f"{request.model}: a watched run made another image"
    previews.clear()
    watched_times, plain_times = paired_times(watched, unwatched, rounds)
    throttled = len(previews) / rounds
    engine.context = every_step
    previews.clear()
    try:
        every_times, plain_times_2 = paired_times(watched, unwatched, rounds)
    finally:
        engine.context = plain_context
    per_step = len(previews) / rounds
    plain = statistics.median(plain_times + plain_times_2)
    return (
        f"{request.model} | {plain:.2f} s | {statistics.median(watched_times):.2f} s, {throttled:.1f} | "
        f"**{median_ratio(watched_times, plain_times):.3f}** | {statistics.median(every_times):.2f} s, "
        f"{per_step:.0f} | {median_ratio(every_times, plain_times_2):.3f}"
    )


if __name__ == "__main__":
    main()
