"""Ray Serve backend: 1 vs 2 replicas, side by side in one run, on a local Ray instance.

    python -m benchmarks.ray_scaling [--rounds 3] [--steps 20]

Two deployments live at once on one Ray instance: one of 1 replica, one of 2, each replica pinned to one
core and one torch thread (engine.scale_out's `pin`), tiny SD 1.5 twin at 256x256 on the CPU. Each round
times, on both deployments in alternating order:

* a 16-cell sweep (4 strengths x 4 seeds: 4 batched pipeline calls, fanned out across the replicas);
* 16 Basic jobs sent at once from 16 threads (16 visitors).

Prints each side's median seconds and the median of the paired ratios (2 replicas / 1; 0.5 is perfect).
Bounded: 2 x rounds x 32 jobs. Nothing listens on a port (the deployments are reached through handles).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import threading
from pathlib import Path

from benchmarks.timing import median_ratio, paired_times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from PIL import Image
    from ray import serve
    from skimage import data

    from engine import scale_out
    from engine.base.settings import Settings
    from engine.core import Engine
    from engine.workflows.basic import Img2ImgRequest
    from engine.workflows.sweep import SweepRequest

    data_dir = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    settings = Settings.from_env({}, models="tiny", data_dir=data_dir)
    front = Engine(settings)
    # 3 logical CPUs for 3 replicas of one CPU each; only the deployment being timed works, on 2 real cores
    ray.init(num_cpus=3, include_dashboard=False, runtime_env=scale_out.runtime_env(), logging_level=logging.WARNING)
    try:
        serve.start(proxy_location="Disabled")
        replica_settings = front.settings
        calls = {}
        for replicas in (1, 2):
            app = scale_out.deployment(replicas, gpus=False).bind(replica_settings, True)
            handle = serve.run(app, name=f"bench-{replicas}", route_prefix=None)
            calls[replicas] = scale_out.RayCalls(handle, replicas)
        photo = Image.fromarray(data.chelsea()).resize((256, 256))
        base = Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=args.steps, strength=0.8, seed=1)
        strengths, seeds = "0.5, 0.6, 0.7, 0.8", "1, 2, 3, 4"
        sweep = front.plan(
            SweepRequest(base=base, x_axis="strength", x_values=strengths, y_axis="seed", y_values=seeds)
        )
        basics = [front.plan(Img2ImgRequest(**{**vars(base), "seed": seed})) for seed in range(16)]

        def run_sweep(replicas: int) -> None:
            *_, last = calls[replicas].run(sweep)
            assert len(last.done_cells) == 16

        def run_basics(replicas: int) -> None:
            done: list = []
            threads = [threading.Thread(target=lambda p=p: done.extend(calls[replicas].run(p))) for p in basics]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=600)
            assert len(done) == 16

        for replicas in (1, 2):  # models loaded and twins built before timing
            run_sweep(replicas)
            run_basics(replicas)
        print(f"tiny SD 1.5 twin, 256x256, {args.steps} steps x strength 0.5-0.8, {args.rounds} paired rounds")
        for name, work in (("16-cell sweep (4 calls)", run_sweep), ("16 concurrent Basic jobs", run_basics)):
            two, one = paired_times(lambda work=work: work(2), lambda work=work: work(1), args.rounds)
            print(
                f"{name}: 1 replica {statistics.median(one):.2f} s, 2 replicas {statistics.median(two):.2f} s, "
                f"ratio {median_ratio(two, one):.3f} (2/1; 0.5 is perfect)"
            )
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
