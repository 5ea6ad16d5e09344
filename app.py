"""Img2Img Studio: parse flags -> Settings -> Engine -> ui.build_app(engine) -> queue -> launch.

python app.py                  # auto: real checkpoints when the Hub answers, else tiny twins
python app.py --models tiny    # random-weight twins, offline, on a CPU
python app.py --help           # every flag; each also has an env var
"""

from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str] | None = None) -> None:
    # Never send the owner's Hugging Face token implicitly (set before huggingface_hub reads it).
    os.environ.setdefault("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    from engine.hosting import on_zero_gpu

    if on_zero_gpu():
        import spaces  # noqa: F401  ZeroGPU: spaces must patch torch before anything touches CUDA
    from engine.core import Engine
    from engine.settings import Settings

    settings = Settings.from_cli(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        engine = Engine(settings)
    except ValueError as exc:  # a setting the engine checks (STUDIO_PRELOAD)
        raise SystemExit(f"app.py: {exc}") from None
    engine.preload()  # STUDIO_PRELOAD (on ZeroGPU, the default model): loaded before the page opens

    import ui

    if engine.zero_gpu:
        from ui.zerogpu import attach

        attach(engine)  # every run and depth estimate becomes a spaces.GPU call sized by its plan
    app = ui.build_app(engine)
    ui.launch(app, engine)


if __name__ == "__main__":
    main(sys.argv[1:])
