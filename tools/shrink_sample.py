"""A 1x1 copy of an image that keeps every metadata chunk and segment byte for byte (the test corpus's files).

    python -m tools.shrink_sample SOURCE... --out tests/data/sd-metadata/

PNG: every chunk but IHDR and IDAT is copied as it is, in its place; a new IHDR (1x1, the same bit depth and
colour type) and one IDAT of the image's mean colour take the old ones' places, so text after the pixel data
stays after it. JPEG: every APPn and COM segment is copied in its order; the tables, frame and scan are those of a
1x1 JPEG. WebP: every chunk but the image data (VP8, VP8L, ALPH) is copied, the VP8X canvas set to 1x1; the image
data is a 1x1 WebP's, lossless where the original was. Metadata hidden in the pixels themselves (NovelAI's
"stealth" alpha) cannot survive this; such files are not shrunk.
"""

from __future__ import annotations

import argparse
import io
import struct
import zlib
from pathlib import Path

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _mean(data: bytes, mode: str) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        return image.convert(mode).resize((1, 1), Image.Resampling.BOX)


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk, IEND included; anything after IEND is dropped."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    chunks, i = [], len(PNG_SIGNATURE)
    while i + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[i : i + 8])
        chunks.append((kind, data[i + 8 : i + 8 + length]))
        i += 12 + length
        if kind == b"IEND":
            break
    return chunks


def shrink_png(data: bytes) -> bytes:
    chunks = png_chunks(data)
    ihdr = chunks[0][1]
    depth, colour = ihdr[8], ihdr[9]
    if depth != 8 or colour not in (0, 2, 4, 6):
        raise ValueError(f"PNG of bit depth {depth}, colour type {colour}: not handled")
    mode = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}[colour]
    pixel = _mean(data, mode).tobytes()
    out = [PNG_SIGNATURE]
    wrote_idat = False
    for kind, body in chunks:
        if kind == b"IHDR":
            out.append(_png_chunk(kind, struct.pack(">II", 1, 1) + body[8:12] + b"\0"))  # not interlaced
        elif kind == b"IDAT":
            if not wrote_idat:
                out.append(_png_chunk(kind, zlib.compress(b"\0" + pixel, 9)))
                wrote_idat = True
        else:
            out.append(_png_chunk(kind, body))
    return b"".join(out)


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, whole segment bytes) of each segment before the first scan; the scan and the rest are dropped."""
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG")
    segments, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker == 0xDA:
            break
        segments.append((marker, data[i : i + 2 + length]))
        i += 2 + length
    return segments


def _is_metadata(marker: int) -> bool:
    return 0xE0 <= marker <= 0xEF or marker == 0xFE  # APPn, COM


def shrink_jpeg(data: bytes) -> bytes:
    kept = [segment for marker, segment in jpeg_segments(data) if _is_metadata(marker)]
    tiny = io.BytesIO()
    _mean(data, "RGB").save(tiny, format="JPEG", quality=90)
    small = tiny.getvalue()
    scan_start = small.index(b"\xff\xda")
    tables = [segment for marker, segment in jpeg_segments(small) if not _is_metadata(marker)]
    return b"\xff\xd8" + b"".join(kept) + b"".join(tables) + small[scan_start:]


def webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not (data.startswith(b"RIFF") and data[8:12] == b"WEBP"):
        raise ValueError("not a WebP")
    chunks, i = [], 12
    while i + 8 <= len(data):
        kind, length = struct.unpack("<4sI", data[i : i + 8])
        chunks.append((kind, data[i + 8 : i + 8 + length]))
        i += 8 + length + (length & 1)
    return chunks


def _webp_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")


def shrink_webp(data: bytes) -> bytes:
    chunks = webp_chunks(data)
    kinds = [kind for kind, _ in chunks]
    if b"ANIM" in kinds:
        raise ValueError("animated WebP: not handled")
    alpha = b"ALPH" in kinds or any(kind == b"VP8X" and body[0] & 0x10 for kind, body in chunks)
    lossless = b"VP8L" in kinds
    tiny = io.BytesIO()
    _mean(data, "RGBA" if alpha else "RGB").save(tiny, format="WEBP", lossless=lossless, quality=90, exact=True)
    image_chunks = [c for c in webp_chunks(tiny.getvalue()) if c[0] in (b"VP8 ", b"VP8L", b"ALPH")]
    out, placed = [], False
    for kind, body in chunks:
        if kind == b"VP8X":
            out.append(_webp_chunk(kind, body[:4] + b"\0\0\0" + b"\0\0\0"))  # canvas 1x1 (stored minus one)
        elif kind in (b"VP8 ", b"VP8L", b"ALPH"):
            if not placed:
                out.extend(_webp_chunk(k, b) for k, b in image_chunks)
                placed = True
        else:
            out.append(_webp_chunk(kind, body))
    body = b"WEBP" + b"".join(out)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def shrink(data: bytes) -> bytes:
    if data.startswith(PNG_SIGNATURE):
        return shrink_png(data)
    if data.startswith(b"\xff\xd8"):
        return shrink_jpeg(data)
    return shrink_webp(data)


def metadata(data: bytes) -> list[tuple[object, bytes]]:
    """What shrinking keeps, in order: every chunk or segment but the image's own, for checking a copy."""
    if data.startswith(PNG_SIGNATURE):
        return [(kind, body) for kind, body in png_chunks(data) if kind not in (b"IHDR", b"IDAT")]
    if data.startswith(b"\xff\xd8"):
        return [(marker, segment) for marker, segment in jpeg_segments(data) if _is_metadata(marker)]
    skipped = (b"VP8 ", b"VP8L", b"ALPH", b"VP8X")
    return [(kind, body) for kind, body in webp_chunks(data) if kind not in skipped]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for source in args.sources:
        data = source.read_bytes()
        small = shrink(data)
        if metadata(small) != metadata(data):
            raise SystemExit(f"{source}: the copy's metadata differs")
        with Image.open(io.BytesIO(small)) as image:
            image.load()
        (args.out / source.name).write_bytes(small)
        print(f"{source.name}: {len(data):,} -> {len(small):,} bytes")


if __name__ == "__main__":
    main()
