"""Input image normalisation: header checks before decoding, EXIF, mode, size.

Every image a user gives goes through `load_image` then `fit_to_model`, so the pipelines always get
an RGB image whose sides are multiples of the model's latent grid and whose pixel count is bounded.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.base.errors import shown_value

_EXIF_ORIENTATION = 0x0112
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The formats accepted, told by their first bytes before Pillow sees the file, and the Pillow plugins
# allowed to open each. Containers whose plugin decodes inside Image.open (ICO, ICNS, and EPS, PSD,
# PDF ...) are refused unread: an ICO declaring 16x16 can hold a 9000x9000 PNG that is decoded there.
_MAGIC: tuple[tuple[bytes, int, tuple[str, ...]], ...] = (
    (PNG_SIGNATURE, 0, ("PNG",)),
    (b"\xff\xd8\xff", 0, ("JPEG", "MPO")),
    (b"WEBP", 8, ("WEBP",)),  # after b"RIFF" and the length
    (b"GIF87a", 0, ("GIF",)),
    (b"GIF89a", 0, ("GIF",)),
    (b"II*\x00", 0, ("TIFF",)),
    (b"MM\x00*", 0, ("TIFF",)),
    (b"BM", 0, ("BMP",)),
)
ACCEPTED_FORMATS = "PNG, JPEG, WebP, GIF, TIFF or BMP"
_PNG_CHUNKS_SCANNED = 10_000  # header-only EXIF search gives up after this many chunks


@dataclass(frozen=True)
class NormalizedImage:
    """An RGB image ready for a pipeline, and what was done to get it."""

    image: Image.Image
    original_size: tuple[int, int]
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def open_image(source: object, *, name: str, max_input_pixels: int) -> Image.Image:
    """Open an image, checking its pixel count from the header before any pixel is decoded.

    Args:
        source: a PIL image, a file path (from the UI's upload folder) or the file's bytes; anything
            else (None, a number from an API client) is refused with a message naming `name`.
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
    image, label = _open_header(source, name=name, max_input_pixels=max_input_pixels)
    try:
        image.seek(0)  # animated formats: the first frame
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{name} is truncated or corrupt ({label!r}): {exc}") from None
    return image


def _open_header(source: object, *, name: str, max_input_pixels: int) -> tuple[Image.Image, str]:
    """A file opened by the reader its first bytes name, its header read and its pixel count checked;
    no pixel decoded yet. Returns the image and the file's name for messages."""
    if isinstance(source, bytes):
        if not source:
            raise ValueError(f"{name} is an empty file (0 bytes)")
        fp: io.BytesIO | Path = io.BytesIO(source)
        label = "the uploaded bytes"
    elif isinstance(source, str | Path):
        fp = Path(source)
        label = fp.name
        try:
            found = fp.is_file()
        except (OSError, ValueError):  # a name too long for the file system, a NUL byte in it
            found = False
        if not found:
            raise ValueError(f"{name} file {shown_value(label)} does not exist")
        if fp.stat().st_size == 0:
            raise ValueError(f"{name} is an empty file (0 bytes): {label!r}")
    else:
        raise ValueError(f"{name} must be an image, got {type(source).__name__}")
    formats = _sniff_formats(fp, name=name, label=label)
    try:
        with warnings.catch_warnings():
            # Our cap, checked next from the header, is stricter than PIL's warning threshold.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fp, formats=formats)
    except UnidentifiedImageError:
        raise ValueError(f"{name} is not an image this app can read ({label!r}); use {ACCEPTED_FORMATS}") from None
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{name} is over the limit of {max_input_pixels:,} pixels: {exc}") from None
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise ValueError(f"{name} could not be read ({label!r}): {exc}") from None
    try:
        _check_pixels(image.size, name, max_input_pixels)
    except ValueError:
        image.close()
        raise
    return image, label


def _sniff_formats(fp: BinaryIO | Path, *, name: str, label: str) -> tuple[str, ...]:
    """The Pillow plugins that may open a file, from its first bytes; refuses every other file unread."""
    if isinstance(fp, Path):
        with fp.open("rb") as handle:
            head = handle.read(16)
    else:
        head = fp.read(16)
        fp.seek(0)
    for magic, offset, formats in _MAGIC:
        if head[offset : offset + len(magic)] == magic and (offset == 0 or head.startswith(b"RIFF")):
            return formats
    raise ValueError(f"{name} is not an image this app can read ({label!r}); use {ACCEPTED_FORMATS}")


def _check_pixels(size: tuple[int, int], name: str, max_input_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"{name} has no pixels ({width}x{height})")
    if width * height > max_input_pixels:
        raise ValueError(
            f"{name} is {width}x{height} = {width * height:,} pixels, over the limit of {max_input_pixels:,}; "
            "scale it down first"
        )


def _header_orientation(image: Image.Image) -> int:
    """The EXIF orientation, read without decoding pixels.

    Pillow's PNG `getexif()` decodes the whole image when the eXIf chunk is not before the pixel data;
    here the chunks after it are walked by their lengths instead, the pixel data skipped unread.
    """
    if image.format != "PNG" or "exif" in image.info:
        return image.getexif().get(_EXIF_ORIENTATION, 1)
    fp = getattr(image, "fp", None)  # an ImageFile opened from a file has one
    if fp is None:
        return 1
    position = fp.tell()
    try:
        fp.seek(8)
        for _ in range(_PNG_CHUNKS_SCANNED):
            header = fp.read(8)
            if len(header) < 8:
                return 1
            length, kind = struct.unpack(">I4s", header)
            if kind == b"IEND":
                return 1
            if kind == b"eXIf" and length <= 65_536:
                exif = Image.Exif()
                exif.load(fp.read(length))
                return exif.get(_EXIF_ORIENTATION, 1)
            fp.seek(length + 4, io.SEEK_CUR)  # the chunk's data and CRC
        return 1
    except (OSError, SyntaxError, ValueError, struct.error):
        return 1
    finally:
        fp.seek(position)


def probe_size(source: str | Path | Image.Image, *, name: str, max_input_pixels: int) -> tuple[int, int]:
    """The upright size of an image from its header alone (EXIF orientations 5-8 swap the sides).

    For previews that must stay cheap while a slider moves; no pixel is decoded, so a preview of
    the largest accepted upload costs what a small one does. `open_image` does the full checks.

    Raises:
        ValueError: not an accepted image, or over the pixel limit.
    """
    if isinstance(source, Image.Image):
        _check_pixels(source.size, name, max_input_pixels)
        orientation = source.getexif().get(_EXIF_ORIENTATION, 1)
        width, height = source.size
    else:
        image, _ = _open_header(source, name=name, max_input_pixels=max_input_pixels)
        with image:
            width, height = image.size
            orientation = _header_orientation(image)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


@dataclass(frozen=True)
class HeaderOnly:
    """An image given for planning only: `normalize_image` reads its header and decodes no pixel.

    Plan previews (Sweep, Chain) run outside the GPU queue, while a person edits; they need the working
    size, not the pixels. The normalised image they get is a blank stand-in of that size.
    """

    source: str | Path | Image.Image


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


@dataclass(frozen=True)
class Resize:
    """A working size asked for instead of the input's own (engine.workflows.checks.OutputSize makes one).

    Args:
        size: the image's upright size -> the working size; raises ValueError naming what was asked.
        apply: (image, width, height) -> the image at that size (engine.pipelines.portable.resize_image).
        label: how, for the note ("crop and resize").
    """

    size: Callable[[tuple[int, int]], tuple[int, int]]
    apply: Callable[[Image.Image, int, int], Image.Image]
    label: str


def normalize_image(
    source: object,  # see open_image; or a HeaderOnly
    *,
    multiple: int,
    max_pixels: int,
    max_input_pixels: int,
    min_side: int,
    name: str = "image",
    resize: Resize | None = None,
) -> NormalizedImage:
    """Open, orient, convert to RGB and resize an input image for a model (see module docstring); with `resize`,
    to the size it asks for, its way, instead of the input's own size.

    A `HeaderOnly` source is sized from its header alone and comes back as a blank stand-in.
    """
    if isinstance(source, HeaderOnly):
        original = probe_size(source.source, name=name, max_input_pixels=max_input_pixels)
        target = fit_size(original, multiple=multiple, max_pixels=max_pixels, min_side=min_side, name=name)
        if resize is not None:
            target = resize.size(original)
        return NormalizedImage(image=Image.new("RGB", target), original_size=original)
    opened = open_image(source, name=name, max_input_pixels=max_input_pixels)
    rgb = to_rgb(opened)
    original = rgb.size
    notes: list[str] = []
    if opened.mode != "RGB":
        notes.append(f"converted from {opened.mode} to RGB")
    if opened.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        notes.append("turned upright by its EXIF orientation")
    target = fit_size(original, multiple=multiple, max_pixels=max_pixels, min_side=min_side, name=name)
    if resize is not None:
        target = resize.size(original)
        if target != original:
            rgb = resize.apply(rgb, *target)
            notes.append(f"resized from {original[0]}x{original[1]} to {target[0]}x{target[1]} ({resize.label})")
    elif target != original:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS)
        notes.append(f"resized from {original[0]}x{original[1]} to {target[0]}x{target[1]} (multiple of {multiple})")
    return NormalizedImage(image=rgb, original_size=original, notes=tuple(notes))


def image_digest(image: Image.Image) -> str:
    """A content hash of an image's pixels (mode and size included): how a recipe names its init, so the server
    can find the init of a PNG whatever the file is called now."""
    digest = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()
