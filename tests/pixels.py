"""Pixels for tests: two runs of the same plan compared image by image (another backend against this process), and
seeded noise images."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from PIL import Image


@contextlib.contextmanager
def one_thread():
    """This process on one torch thread, as a Ray replica of one CPU runs: float results on a CPU depend
    on the thread count, so runs compared with a replica's are made this way."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def assert_same_pixels(local, remote) -> None:
    """Every image of a finished run (results, grid, final, ControlNet and restyle) equal, and some compared."""
    compared = 0
    for attribute in ("images", "grid", "final", "controlnet", "restyled"):
        value = getattr(local, attribute, None)
        if value is None:
            continue
        other = getattr(remote, attribute)
        if callable(value):
            value, other = value(), other()
        pairs = zip(value, other, strict=True) if isinstance(value, list) else [(value, other)]
        for a, b in pairs:
            if isinstance(a, tuple):  # (image, caption)
                a, b = a[0], b[0]
            if a is not None:
                assert np.array_equal(np.asarray(a), np.asarray(b)), attribute
                compared += 1
    assert compared, f"no image compared in {type(local).__name__}"


def noise_image(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    shape = (height, width, channels) if channels else (height, width)
    return Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode)
