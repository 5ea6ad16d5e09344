import io

import numpy as np
import pytest
from PIL import Image

from engine.base.images import fit_size, normalize_image, open_image, to_rgb

LIMITS = dict(max_pixels=1024 * 1024, max_input_pixels=40_000_000, min_side=64)


def png_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=params.pop("format", "PNG"), **params)
    return buffer.getvalue()


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (120, 80), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 10))  # blue mark top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    result = normalize_image(png_bytes(image, format="JPEG", exif=exif, quality=95), multiple=8, **LIMITS)
    assert result.size == (80, 120)
    assert result.image.getpixel((75, 4))[2] > 200  # the mark moved to the top-right
    assert any("EXIF" in note for note in result.notes)


def test_rgba_is_composited_on_white_never_passed_as_four_channels():
    image = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, 32, 64))  # left half fully transparent
    result = normalize_image(image, multiple=8, **LIMITS)
    assert result.image.mode == "RGB"
    assert result.image.getpixel((5, 5)) == (255, 255, 255)
    assert result.image.getpixel((50, 5)) == (255, 0, 0)


def test_palette_with_transparency_and_greyscale():
    palette = Image.new("P", (64, 64), 0)
    palette.putpalette([0, 255, 0] + [0, 0, 0] * 255)
    palette.info["transparency"] = 0
    assert to_rgb(palette).getpixel((1, 1)) == (255, 255, 255)
    assert to_rgb(Image.new("L", (64, 64), 77)).getpixel((0, 0)) == (77, 77, 77)


def test_sixteen_bit_is_scaled_to_eight():
    array = np.full((64, 64), 65535, dtype=np.uint16)
    array[:, :32] = 32768
    image = Image.fromarray(array)
    assert image.mode.startswith("I;16")
    rgb = to_rgb(image)
    assert rgb.getpixel((60, 0)) == (255, 255, 255)
    assert rgb.getpixel((0, 0)) == (128, 128, 128)


def test_cmyk_converts():
    assert normalize_image(Image.new("CMYK", (64, 64), (0, 0, 0, 0)), multiple=8, **LIMITS).image.mode == "RGB"


@pytest.mark.parametrize(
    ("size", "multiple", "expected"),
    [
        ((451, 300), 8, (448, 304)),
        ((451, 300), 64, (448, 320)),
        ((512, 512), 8, (512, 512)),
        ((64, 100), 64, (64, 128)),
    ],
)
def test_sizes_round_to_the_model_multiple(size, multiple, expected):
    assert fit_size(size, multiple=multiple, max_pixels=10**7, min_side=64) == expected


def test_large_images_are_scaled_under_the_working_cap():
    width, height = fit_size((4000, 3000), multiple=8, max_pixels=1024 * 1024, min_side=64)
    assert width * height <= 1024 * 1024 and width % 8 == 0 and height % 8 == 0
    assert abs(width / height - 4 / 3) < 0.02


def test_pixel_cap_is_checked_from_the_header_before_decoding():
    # A 10000x10000 PNG whose pixel data is cut off: decoding would fail as truncated, so the
    # "over the limit" message proves the check ran on the header alone.
    data = png_bytes(Image.new("L", (10000, 10000)))
    assert len(data) < 200_000
    with pytest.raises(ValueError, match=r"10000x10000 = 100,000,000 pixels, over the limit of 40,000,000"):
        open_image(data[:2000], name="image", max_input_pixels=40_000_000)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "image is an empty file"),
        (b"hello, I am text pretending to be a png", "image is not an image this app can read"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "image is not an image this app can read"),
    ],
)
def test_unreadable_inputs_name_the_parameter(payload, message):
    with pytest.raises(ValueError, match=message):
        open_image(payload, name="image", max_input_pixels=10**7)


def test_truncated_file_is_reported():
    data = png_bytes(Image.effect_noise((256, 256), 50))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        open_image(data[: len(data) // 2], name="image", max_input_pixels=10**7)


def test_tiny_images_are_refused():
    with pytest.raises(ValueError, match="image is 7x7; each side must be at least 64 pixels"):
        normalize_image(Image.new("RGB", (7, 7)), multiple=8, **LIMITS)


def test_animated_gif_uses_first_frame():
    frames = [Image.new("P", (64, 64), i) for i in (1, 2)]
    data = io.BytesIO()
    frames[0].save(data, format="GIF", save_all=True, append_images=frames[1:])
    assert normalize_image(data.getvalue(), multiple=8, **LIMITS).size == (64, 64)


def test_probe_size_reads_the_upright_size_from_the_header(tmp_path):
    from engine.base.images import probe_size

    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.new("RGB", (120, 80)).save(path, exif=exif)
    assert probe_size(path, name="image", max_input_pixels=10**6) == (80, 120)
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes(Image.new("L", (10000, 10000)))[:2000])
    with pytest.raises(ValueError, match="over the limit"):
        probe_size(big, name="image", max_input_pixels=10**6)


def _chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_late_exif(size: tuple[int, int], orientation: int) -> bytes:
    """A PNG whose eXIf chunk comes after the pixel data (and after a text chunk), before IEND: Pillow's
    getexif() would decode the pixels to find it, so the header walker must step over each chunk."""
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "x" * 37)  # an odd length: a walker off by a byte loses the chunk grid
    data = png_bytes(Image.new("RGB", size, (10, 20, 30)), pnginfo=text)
    exif = Image.Exif()
    exif[0x0112] = orientation
    end = data.rindex(b"IEND") - 4
    return data[:end] + _chunk(b"eXIf", exif.tobytes()[6:]) + data[end:]  # the chunk holds TIFF, no "Exif\0\0"


@pytest.mark.parametrize(("orientation", "expected"), [(6, (80, 120)), (8, (80, 120)), (3, (120, 80)), (1, (120, 80))])
def test_the_header_walker_finds_an_exif_chunk_after_the_pixels(tmp_path, orientation, expected):
    from engine.base.images import probe_size

    path = tmp_path / "late-exif.png"
    path.write_bytes(png_with_late_exif((120, 80), orientation))
    assert probe_size(path, name="image", max_input_pixels=10**6) == expected
    assert normalize_image(path.read_bytes(), multiple=8, **LIMITS).size == expected  # decoded, it agrees


def test_the_pixel_cap_is_inclusive():
    at_cap = png_bytes(Image.new("RGB", (100, 40)))
    assert open_image(at_cap, name="image", max_input_pixels=4000).size == (100, 40)
    with pytest.raises(ValueError, match=r"image is 100x41 = 4,100 pixels, over the limit of 4,000"):
        open_image(png_bytes(Image.new("RGB", (100, 41))), name="image", max_input_pixels=4000)
