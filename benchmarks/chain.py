"""Chain hand-over: a 3-stage SD-family chain passing latents over the same chain decoding and re-encoding.

The image-image-image chain (SD 1.5 -> Comic-Diffusion -> pixel-art-style) on the tiny twins, CPU, no
network. Measured two ways, both in one run: with the intermediate images decoded for display (what
the Chain tab does; the latent path then saves the two VAE encodes) and without (API use; it saves
two decodes and two encodes). Each round runs both hand-overs back to back, order alternating.

    python -m benchmarks.chain [--rounds 4] [--size 256] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from benchmarks.timing import median_ratio, paired_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "img2img-studio-bench")
    args = parser.parse_args()

    from skimage import data

    from engine.base.settings import Settings
    from engine.core import Engine
    from engine.workflows.chain import ChainRequest, stages_json

    engine = Engine(Settings.from_env({}, models="tiny", data_dir=args.data_dir))
    stages = json.loads(stages_json("image-image-image"))
    for stage in stages:
        stage["num_inference_steps"] = args.steps
    image = Image.fromarray(data.astronaut()).resize((args.size, args.size))
    base = ChainRequest(image=image, preset="", stages=json.dumps(stages), seed=7)
    for key in ("sd15", "comic-diffusion", "pixel-art-style"):
        engine.cache.get(key)  # loads outside the timings

    def run(request: ChainRequest) -> None:
        *_, last = engine.chain(request)
        assert last.finished

    print(f"device: cpu, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"tiny SD-family chain x3, {args.size}px, {args.steps} steps x strength 0.8 per stage, {args.rounds} rounds")
    for previews in (True, False):
        latent = replace(base, previews=previews)
        decoded = replace(base, previews=previews, latent_handover=False)
        latent_times, decoded_times = paired_times(lambda r=latent: run(r), lambda r=decoded: run(r), args.rounds)
        label = "with previews decoded for display" if previews else "without previews (API)"
        print(
            f"{label}: latent median {statistics.median(latent_times):.2f}s, "
            f"decode/encode median {statistics.median(decoded_times):.2f}s, "
            f"ratio latent/decode-encode {median_ratio(latent_times, decoded_times):.3f}"
        )


if __name__ == "__main__":
    main()
