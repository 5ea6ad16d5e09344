"""Img2Img Studio: parse flags -> Settings -> Engine -> ui.build_app(engine) -> queue -> launch.

python app.py                  # auto: real checkpoints when the Hub answers, else tiny twins
python app.py --models tiny    # random-weight twins, offline, on a CPU
python app.py --backend ray    # the models on Ray Serve replicas, one per GPU (docs/deploying.md, Scaling out)
python app.py --help           # every flag; each also has an env var
"""

from __future__ import annotations

import logging
import os
import signal
import sys


def main(argv: list[str] | None = None) -> None:
    # Never send the owner's Hugging Face token implicitly (set before huggingface_hub reads it).
    os.environ.setdefault("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    from engine.hosting import on_zero_gpu

    if on_zero_gpu():
        import spaces  # noqa: F401  ZeroGPU: spaces must patch torch before anything touches CUDA
    from engine.base.settings import Settings
    from engine.core import Engine

    settings = Settings.from_cli(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        engine = Engine(settings)
    except ValueError as exc:  # a setting the engine checks (STUDIO_PRELOAD)
        raise SystemExit(f"app.py: {exc}") from None
    if settings.backend == "ray":
        start_ray_backend(engine)
    else:
        engine.preload()  # STUDIO_PRELOAD (on ZeroGPU, the default model): loaded before the page opens

    import ui

    if engine.zero_gpu:
        from ui.zerogpu import attach

        attach(engine)  # every run and depth estimate becomes a spaces.GPU call sized by its plan
    app = ui.build_app(engine)
    ui.launch(app, engine)


def start_ray_backend(engine) -> None:
    """Replicas of the engine on Ray Serve (docs/deploying.md, Scaling out); each loads STUDIO_PRELOAD itself."""
    if engine.zero_gpu:
        raise SystemExit(
            "app.py: --backend ray cannot run on ZeroGPU (it lends a GPU per call); use the local backend"
        )
    from engine import scale_out

    try:
        scale_out.start(engine)
    except (ValueError, RuntimeError) as exc:  # a bad replica count, Ray Serve not installed
        raise SystemExit(f"app.py: {exc}") from None
    # A stopped server (SIGTERM) exits through atexit, so the Ray instance it started stops with it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))


if __name__ == "__main__":
    main(sys.argv[1:])
