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
    from engine.core import Engine
    from engine.settings import Settings

    settings = Settings.from_cli(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    engine = Engine(settings)

    import ui

    app = ui.build_app(engine)
    ui.launch(app, engine)


if __name__ == "__main__":
    main(sys.argv[1:])
