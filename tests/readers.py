"""Metadata readers nobody here wrote, called as the tests need them.

sd-parsers 0.6 caches what it last read from a JPEG's EXIF (and a PNG's hidden alpha bits) under the `id()` of
the image object; Python hands a freed object's id to the next one, so a file read after another can get the
earlier file's values. Every image it is given here stays alive for the test session, so no id repeats.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

_HELD: list[Image.Image] = []


def sd_parsers_read(path: str | Path):
    """sd-parsers' PromptInfo for the file at `path` (None where it finds nothing)."""
    from sd_parsers import ParserManager

    image = Image.open(path)
    _HELD.append(image)
    return ParserManager().parse(image)
