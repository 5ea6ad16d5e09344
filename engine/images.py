"""Input image normalisation: header checks before decoding, EXIF, mode, size.

Every image a user gives goes through `load_image` then `fit_to_model`, so the pipelines always get
an RGB image whose sides are multiples of the model's latent grid and whose pixel count is bounded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_EXIF_ORIENTATION = 0x0112
_REFUSED_FORMATS = {"EPS", "PSD"}  # EPS runs Ghostscript; PSD layers are not what the user sees


@dataclass(frozen=True)
class NormalizedImage:
    """An RGB image ready for a pipeline, and what was done to get it."""

    image: Image.Image
    original_size: tuple[int, int]
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def open_image(source: Image.Image | str | Path | bytes, *, name: str, max_input_pixels: int) -> Image.Image:
    """Open an image, checking its pixel count from the header before any pixel is decoded.

    Args:
        source: a PIL image, a file path (from the UI's upload folder) or the file's bytes.
        name: the parameter name used in error messages.
        max_input_pixels: refuse images with more pixels than this.

    Raises:
        ValueError: not an image, unreadable, animated beyond its first frame is fine, too many pixels.
    """
    if source is None:
        raise ValueError(f"{name} is required: upload an image or pick an example")
    if isinstance(source, Image.Image):
        _check_pixels(source.size, name, max_input_pixels)
        return source
    if isinstance(source, bytes):
        if not source:
            raise ValueError(f"{name} is an empty file (0 bytes)")
        fp: io.BytesIO | Path = io.BytesIO(source)
        label = "the uploaded bytes"
    elif isinstance(source, str | Path):
        fp = Path(source)
        label = fp.name
        if not fp.is_file():
            raise ValueError(f"{name} file {label!r} does not exist")
        if fp.stat().st_size == 0:
            raise ValueError(f"{name} is an empty file (0 bytes): {label!r}")
    else:
        raise ValueError(f"{name} must be an image, got {type(source).__name__}")
    try:
        with warnings.catch_warnings():
            # Our cap, checked next from the header, is stricter than PIL's warning threshold.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fp)
    except UnidentifiedImageError:
        raise ValueError(f"{name} is not an image PIL can read ({label!r}); use PNG, JPEG or WebP") from None
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{name} is over the limit of {max_input_pixels:,} pixels: {exc}") from None
    except OSError as exc:
        raise ValueError(f"{name} could not be read ({label!r}): {exc}") from None
    if image.format in _REFUSED_FORMATS:
        raise ValueError(f"{name} is a {image.format} file, which is not accepted; use PNG, JPEG or WebP")
    _check_pixels(image.size, name, max_input_pixels)
    try:
        image.seek(0)  # animated formats: the first frame
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{name} is truncated or corrupt ({label!r}): {exc}") from None
    return image


def _check_pixels(size: tuple[int, int], name: str, max_input_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"{name} has no pixels ({width}x{height})")
    if width * height > max_input_pixels:
        raise ValueError(
            f"{name} is {width}x{height} = {width * height:,} pixels, over the limit of {max_input_pixels:,}; "
            "scale it down first"
        )


def probe_size(source: str | Path | Image.Image, *, name: str, max_input_pixels: int) -> tuple[int, int]:
    """The upright size of an image from its header alone (EXIF orientations 5-8 swap the sides).

    For previews that must stay cheap while a slider moves; `open_image` does the full checks.
    """
    if isinstance(source, Image.Image):
        image = source
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(source)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError):
            raise ValueError(f"{name} is not an image PIL can read") from None
    _check_pixels(image.size, name, max_input_pixels)
    width, height = image.size
    if image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
        return height, width
    return width, height


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation and convert any mode to 8-bit RGB.

    Transparent images are composited on white: an img2img pipeline reads a 4-channel input as latents,
    so RGBA must never reach it. 16-bit and float greyscale are scaled to 8 bits by their full range.
    """
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            array = array / 65535.0
        else:
            low, high = float(np.nanmin(array)), float(np.nanmax(array))
            array = (array - low) / (high - low) if high > low else np.zeros_like(array)
        grey = Image.fromarray(np.clip(np.nan_to_num(array) * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
        return grey.convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def fit_size(
    size: tuple[int, int], *, multiple: int, max_pixels: int, min_side: int, name: str = "image"
) -> tuple[int, int]:
    """The working size for an image: scaled down under `max_pixels`, sides rounded to `multiple`.

    Raises:
        ValueError: a side is shorter than `min_side`.
    """
    width, height = size
    if min(width, height) < min_side:
        raise ValueError(f"{name} is {width}x{height}; each side must be at least {min_side} pixels")
    scale = min(1.0, (max_pixels / (width * height)) ** 0.5)
    width, height = width * scale, height * scale

    def snap(side: float) -> int:
        return max(multiple, round(side / multiple) * multiple)

    new_w, new_h = snap(width), snap(height)
    while new_w * new_h > max_pixels and max(new_w, new_h) > multiple:  # rounding up may cross the cap
        if new_w >= new_h:
            new_w -= multiple
        else:
            new_h -= multiple
    return new_w, new_h


def normalize_image(
    source: Image.Image | str | Path | bytes,
    *,
    multiple: int,
    max_pixels: int,
    max_input_pixels: int,
    min_side: int,
    name: str = "image",
) -> NormalizedImage:
    """Open, orient, convert to RGB and resize an input image for a model (see module docstring)."""
    opened = open_image(source, name=name, max_input_pixels=max_input_pixels)
    rgb = to_rgb(opened)
    original = rgb.size
    notes: list[str] = []
    if opened.mode != "RGB":
        notes.append(f"converted from {opened.mode} to RGB")
    if opened.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        notes.append("turned upright by its EXIF orientation")
    target = fit_size(original, multiple=multiple, max_pixels=max_pixels, min_side=min_side, name=name)
    if target != original:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS)
        notes.append(f"resized from {original[0]}x{original[1]} to {target[0]}x{target[1]} (multiple of {multiple})")
    return NormalizedImage(image=rgb, original_size=original, notes=tuple(notes))
