"""Recipes: everything needed to reproduce a result, carried inside the PNG.

A `Recipe` is built from the pipeline object that made the image, so it records what really ran
(pipeline and scheduler classes, scheduler config, dtype, generator device), not what was asked for.
Every PNG the app returns carries two text chunks: `parameters`, the AUTOMATIC1111 web UI's infotext
that other tools read, and `img2img-studio`, the full recipe as JSON.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from engine import __version__
from engine.base.images import PNG_SIGNATURE, image_digest
from engine.pipelines.calls import denoiser_of
from engine.pipelines.prompts import webui_weighting
from engine.pipelines.schedulers import sampler_name
from engine.recipes.schema import INFINITY_TEXT, INIT_DIGEST, RecipeShape, validated_fields

APP_VERSION = __version__  # written into every recipe
MAX_RECIPE_CHARS = 1_000_000
PARAMETERS_KEY = "parameters"
RECIPE_KEY = "img2img-studio"


@dataclass(frozen=True)
class Recipe:
    """What made one result. `parameters` are the pipeline-call arguments that are plain values."""

    workflow: str
    model: str
    model_id: str
    pipeline: str
    scheduler: str
    scheduler_config: dict[str, Any]
    dtype: str
    generator_device: str
    seeds: tuple[int, ...]
    parameters: dict[str, Any]
    size: tuple[int, int]
    model_mode: str = "hub"
    revision: str | None = None
    weighted_prompt: bool = False
    app_version: str = APP_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_pipeline(cls, pipe, *, init: Image.Image | None = None, **fields: Any) -> Recipe:
        """Fill the fields that come from the pipeline object itself; `init` (the image the run started from, as
        the pipeline saw it) is named by its content hash, `extra.init_sha256`."""
        scheduler = denoiser_of(pipe).scheduler
        if init is not None:
            fields["extra"] = {**fields.get("extra", {}), INIT_DIGEST: image_digest(init)}
        return cls(
            pipeline=type(pipe).__name__,
            scheduler=type(scheduler).__name__,
            scheduler_config={k: _plain(v) for k, v in dict(scheduler.config).items() if not k.startswith("_")},
            dtype=str(pipe.dtype).removeprefix("torch."),
            **fields,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        """Standard JSON, which every reader parses (Node's JSON.parse included): an infinite number (the DPM++
        schedulers' lambda_min_clipped) is written as the string "-Infinity" and read back as the number."""
        return json.dumps(_finite_json(self.as_dict()), indent=2, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, shapes: Mapping[str, RecipeShape]) -> Recipe:
        """The inverse of to_json, for a recipe read from a file: untrusted, so every field is checked.
        `shapes` are the workflows' own fields (engine.workflows.registry.recipe_from_json passes the registered ones).

        A recipe turns into a script that people run, so each field must be what the app writes: model
        keys from the catalog, model ids of the Hub's form, a dtype, scheduler and device from fixed sets,
        numbers that are numbers. Unknown fields are dropped.

        Raises:
            ValueError: not a recipe, or a field that is not what the app writes, naming it and the value.
        """
        if not isinstance(text, str) or len(text) > MAX_RECIPE_CHARS:
            raise ValueError(f"recipe must be JSON text of at most {MAX_RECIPE_CHARS:,} characters")
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ValueError(f"recipe is not valid JSON: {str(exc)[:120]}") from None
        if not isinstance(data, dict) or not {"workflow", "model", "parameters"} <= set(data):
            raise ValueError("recipe is missing workflow, model or parameters")
        return cls(**validated_fields(data, shapes))

    def for_image(self, index: int) -> Recipe:
        """The recipe of image `index` of a multi-image result (its seed; the batch it came from)."""
        return replace(self, extra={**self.extra, "index": index})

    @property
    def init_digest(self) -> str | None:
        """The content hash of the init this result was made from, where the recipe names one."""
        return self.extra.get(INIT_DIGEST)

    @property
    def seed(self) -> int:
        return self.seeds[self.extra.get("index", 0)] if self.seeds else 0

    def infotext(self) -> str:
        """The web UI's `parameters` text: prompt, negative prompt, then `Key: value` pairs."""
        p = self.parameters
        prompt, negative = str(p.get("prompt") or ""), str(p.get("negative_prompt") or "")
        if self.weighted_prompt:  # the web UI's syntax here; the JSON keeps Compel's as typed
            prompt, negative = webui_weighting(prompt), webui_weighting(negative) if negative else ""
        tags = [f"<lora:{lora['name']}:{lora['weight']:g}>" for lora in self.extra.get("loras") or ()]
        lines = [" ".join([prompt, *tags]) if tags else prompt]  # as the web UI writes a LoRA run's prompt
        if negative:
            lines.append(f"Negative prompt: {negative}")
        pairs = {
            "Steps": p.get("num_inference_steps"),
            "Sampler": sampler_name(self.scheduler, self.scheduler_config),
            "CFG scale": p.get("guidance_scale"),
            "Seed": self.seed,
            "Size": f"{self.size[0]}x{self.size[1]}",
            "Model": self.model_id.rsplit("/", 1)[-1],
            "Denoising strength": p.get("strength"),
            **webui_extra(self.extra),
            "Workflow": self.workflow,
        }
        lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in pairs.items() if v is not None))
        return "\n".join(lines)


# fields of a recipe's `extra` the web UI writes too, by its names (an inpaint run's mask settings), when present
WEBUI_EXTRA = {"mask_blur": "Mask blur", "inpaint_area": "Inpaint area", "padding": "Masked area padding"}
# values the web UI leaves unsaid, with the fields that go with them: it writes the inpaint area and its padding
# only for "Only masked" (modules/processing.py, inpaint_full_res), the whole picture being its default
WEBUI_UNSAID = {("inpaint_area", "Whole picture"): ("inpaint_area", "padding")}


def webui_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """The web UI's names and values of a recipe's `extra` fields, as the web UI writes them (None: unsaid)."""
    unsaid = {field for (key, value), fields in WEBUI_UNSAID.items() if extra.get(key) == value for field in fields}
    return {name: None if key in unsaid else extra.get(key) for key, name in WEBUI_EXTRA.items()}


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if ("," in text or ":" in text or '"' in text) else text


MAX_INFOTEXT_CHARS = 20_000  # two prompts at the longest the app accepts, and the parameter line
_KEY = re.compile(r"[\w ./+-]{1,64}")
_KEY_WINDOW = 66  # a key is at most 64 characters, then ':'


def _quoted_end(line: str, start: int) -> int:
    """The index after the closing quote of the JSON-style string opening at `start`, or -1."""
    i = start + 1
    while i < len(line):
        char = line[i]
        if char == "\\":
            i += 2
        elif char == '"':
            return i + 1
        else:
            i += 1
    return -1


def _parse_pairs(line: str) -> list[tuple[str, str]]:
    """`Key: value, Key: "quoted, value"` pairs of an infotext's last line, in one pass (linear time).

    A stretch that is not a pair is skipped up to the next comma. Once an opening quote finds no
    closing one, no later quote can (the scan from it covered the rest), so values are then unquoted.
    """
    pairs: list[tuple[str, str]] = []
    i, n, quotes_close = 0, len(line), True
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        colon = line.find(":", i, i + _KEY_WINDOW)
        key = line[i:colon].strip() if colon >= 0 else ""
        if not _KEY.fullmatch(key):
            comma = line.find(",", i)
            i = n if comma < 0 else comma + 1
            continue
        i = colon + 1
        while i < n and line[i] == " ":
            i += 1
        value = None
        if quotes_close and i < n and line[i] == '"':
            end = _quoted_end(line, i)
            if end < 0:
                quotes_close = False
            else:
                try:
                    value = json.loads(line[i:end])
                except json.JSONDecodeError:
                    value = line[i + 1 : end - 1]
                comma = line.find(",", end)
                i = n if comma < 0 else comma + 1
        if value is None:
            comma = line.find(",", i)
            value = line[i : n if comma < 0 else comma].strip()
            i = n if comma < 0 else comma + 1
        pairs.append((key, value))
    return pairs


def parse_infotext(text: str) -> dict[str, Any]:
    """The fields a web UI infotext shares with the Basic tab, plus the rest as strings.

    Returns prompt, negative_prompt, and where present num_inference_steps, guidance_scale, seed,
    strength, width, height, sampler, model; other `Key: value` pairs under their own names.
    Linear in the text's length, which is capped at MAX_INFOTEXT_CHARS.

    Raises:
        ValueError: empty, too long, or a known field whose value is not of its type.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("infotext is empty")
    if len(text) > MAX_INFOTEXT_CHARS:
        raise ValueError(f"infotext is {len(text):,} characters long; the limit is {MAX_INFOTEXT_CHARS:,}")
    lines = text.strip().split("\n")
    params: dict[str, str] = {}
    pairs = _parse_pairs(lines[-1])
    if len(pairs) >= 3:
        lines = lines[:-1]
        params = dict(pairs)
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    result: dict[str, Any] = {"prompt": "\n".join(prompt_lines).strip(), "negative_prompt": "\n".join(negative_lines)}
    conversions = {
        "Steps": ("num_inference_steps", int),
        "CFG scale": ("guidance_scale", float),
        "Seed": ("seed", int),
        "Denoising strength": ("strength", float),
        "Sampler": ("sampler", str),
        "Model": ("model", str),
    }
    conversions = {key.lower(): value for key, value in conversions.items()}  # tools write "CFG Scale" too
    for key, value in params.items():
        if key.lower() in conversions:
            name, convert = conversions[key.lower()]
            try:
                if convert is not str and len(value) > 40:  # int() of thousands of digits is refused anyway
                    raise ValueError
                result[name] = convert(value)
            except ValueError:
                shown = value if len(value) <= 40 else value[:40] + "…"
                raise ValueError(f"infotext field {key!r} is not a {convert.__name__}: {shown!r}") from None
        elif key == "Size" and re.fullmatch(r"\d{1,6}x\d{1,6}", value):
            result["width"], result["height"] = (int(v) for v in value.split("x"))
        else:
            result[key] = value
    return result


def png_bytes(image: Image.Image, recipe: Recipe | None) -> bytes:
    """The image as PNG, with the recipe's two text chunks unless `recipe` is None (metadata off)."""
    info = None
    if recipe is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text(PARAMETERS_KEY, recipe.infotext())
        info.add_itxt(RECIPE_KEY, recipe.to_json())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def save_png(image: Image.Image, recipe: Recipe | None, path: Path) -> Path:
    path = Path(path)
    path.write_bytes(png_bytes(image, recipe))
    return path


MAX_TEXT_CHUNK = 1 << 20  # bytes of one text chunk, decompressed (Pillow's cap, PngImagePlugin.MAX_TEXT_CHUNK)
MAX_TEXT_TOTAL = 8 << 20  # bytes of all of a file's text
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


def _opened(source: str | Path | bytes):
    try:
        return io.BytesIO(source) if isinstance(source, bytes) else Path(source).open("rb")
    except OSError as exc:
        raise ValueError(f"image could not be read: {exc.strerror}") from None


def _inflated(data: bytes) -> bytes:
    """A zTXt/iTXt chunk's compressed text, refused past MAX_TEXT_CHUNK (a small chunk can inflate to gigabytes)."""
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, MAX_TEXT_CHUNK)
    except zlib.error as exc:
        raise ValueError(f"image could not be read as a PNG: a compressed text chunk is damaged ({exc})") from None
    if inflater.unconsumed_tail:
        raise ValueError(f"image could not be read as a PNG: a text chunk inflates past {MAX_TEXT_CHUNK:,} bytes")
    return text


def _decoded(text: bytes) -> str:
    """A tEXt value: Latin-1 by the PNG spec, but Stability Matrix, ComfyUI and others write UTF-8 there, and every
    reader of these files tries UTF-8 first."""
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        return text.decode("latin-1")


def _text_chunk(kind: bytes, data: bytes) -> tuple[str, str]:
    key, _, rest = data.partition(b"\0")
    if kind == b"tEXt":
        return key.decode("latin-1"), _decoded(rest)
    if kind == b"zTXt":
        return key.decode("latin-1"), _decoded(_inflated(rest[1:]))
    compressed = rest[:1] == b"\1"
    _language, _, rest = rest[2:].partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    return key.decode("latin-1"), (_inflated(text) if compressed else text).decode("utf-8", errors="replace")


def read_png_text(source: str | Path | bytes) -> dict[str, str]:
    """The text chunks of a PNG (tEXt, zTXt, iTXt), wherever they are: tools that rewrite a file put them after the
    pixel data, which Pillow does not read. The pixel data is skipped, never decoded; the first chunk of a key wins.

    Raises:
        ValueError: not a PNG, or text past the caps (MAX_TEXT_CHUNK a chunk, MAX_TEXT_TOTAL in all).
    """
    texts: dict[str, str] = {}
    total = 0
    with _opened(source) as fp:
        if fp.read(8) != PNG_SIGNATURE:
            raise ValueError("image must be a PNG made by the app (its first bytes are not a PNG's)")
        while len(header := fp.read(8)) == 8:  # a truncated file: the text read so far
            length, kind = struct.unpack(">I4s", header)
            if kind == b"IEND":
                break
            if kind not in _TEXT_CHUNKS:
                fp.seek(length + 4, io.SEEK_CUR)  # the data and its CRC, unread
                continue
            if length > MAX_TEXT_CHUNK:
                raise ValueError(f"image could not be read as a PNG: a text chunk of {length:,} bytes is too large")
            key, value = _text_chunk(kind, fp.read(length))
            fp.seek(4, io.SEEK_CUR)
            total += len(value)
            if total > MAX_TEXT_TOTAL:
                raise ValueError(
                    f"image could not be read as a PNG: it holds more than {MAX_TEXT_TOTAL:,} bytes of text"
                )
            texts.setdefault(key, value)
    return texts


_USER_COMMENT, _EXIF_IFD = 0x9286, 0x8769
# ImageDescription, Make, Model: where ComfyUI's JPEG and WebP savers write "prompt:{...}" and "Workflow: {...}"
_IFD0_TEXT = (0x010E, 0x010F, 0x0110)
_IFD0_KEYS = ("prompt", "workflow")


def _user_comment(value: object) -> str | None:
    """An EXIF UserComment as text: an 8-byte character code, then the text (the web UI writes UNICODE, UTF-16 in
    the byte order of its writer)."""
    if isinstance(value, str):
        return value.strip("\0") or None
    if not isinstance(value, bytes) or len(value) <= 8:
        return None
    code, text = value[:8], value[8:]
    if code.startswith(b"UNICODE"):
        big_endian = text[:1] == b"\0" or text[1:2] != b"\0"  # ASCII's high byte comes first in big-endian
        decoded = text.decode("utf-16-be" if big_endian else "utf-16-le", errors="replace")
    else:
        decoded = _decoded(text)
    return decoded.strip("\0") or None


def _exif_chunks(comment: str | None) -> dict[str, str]:
    """The chunks a UserComment holds as one JSON object: NovelAI's WebP ({"Comment": "...", "Software": ...}),
    ComfyUI's SaveImagePlus ({"prompt": {graph}, "workflow": {...}}); else {}."""
    if comment is None or not comment.startswith("{") or len(comment) > MAX_TEXT_TOTAL:
        return {}
    try:
        data = json.loads(comment)
    except (json.JSONDecodeError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    if isinstance(data.get("prompt"), dict):
        return {key: json.dumps(data[key]) for key in _IFD0_KEYS if isinstance(data.get(key), dict)}
    if not all(isinstance(v, str) for v in data.values()) or "Software" not in data:
        return {}
    return {key: value.strip("\0") for key, value in data.items()}


def read_image_text(source: str | Path | bytes) -> dict[str, str]:
    """The generation text an image carries: a PNG's text chunks; a JPEG's or WebP's EXIF UserComment (where the
    web UI and Forge write their infotext, as `parameters`; NovelAI its chunks as one JSON object) or, lacking one, a
    JPEG comment, and the `prompt:` and `workflow:` texts ComfyUI's savers write into EXIF ImageDescription, Make
    and Model. Told by the file's first bytes, whatever its name; only headers are read.

    Raises:
        ValueError: not a PNG, JPEG or WebP, or a file Pillow refuses.
    """
    with _opened(source) as fp:
        head = fp.read(16)
    if head.startswith(PNG_SIGNATURE):
        return read_png_text(source)
    if head.startswith(b"\xff\xd8\xff"):
        formats = ["JPEG"]
    elif head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        formats = ["WEBP"]
    else:
        raise ValueError("image must be a PNG, JPEG or WebP (its first bytes are none of these)")
    texts: dict[str, str] = {}
    try:
        with _opened(source) as fp, Image.open(fp, formats=formats) as image:
            exif = image.getexif()
            # in the EXIF IFD, as the standard has it, or in the first IFD (ComfyUI's SaveImagePlus)
            comment = _user_comment(exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT, exif.get(_USER_COMMENT)))
            if comment is None and isinstance(image.info.get("comment"), bytes):
                comment = _decoded(image.info["comment"]).strip("\0") or None
            for tag in _IFD0_TEXT:
                value = exif.get(tag)
                key, colon, text = (value if isinstance(value, str) else "").partition(":")
                if colon and key.strip().lower() in _IFD0_KEYS:
                    texts.setdefault(key.strip().lower(), text.strip()[:MAX_TEXT_TOTAL])
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"image could not be read as a {formats[0]}: {str(exc)[:200]}") from None
    chunks = _exif_chunks(comment)
    if chunks:
        return texts | chunks
    return texts | ({PARAMETERS_KEY: comment[:MAX_TEXT_TOTAL]} if comment else {})


def read_recipe(source: str | Path | bytes, shapes: Mapping[str, RecipeShape]) -> Recipe:
    """The recipe a PNG from the app carries (engine.workflows.registry.read_recipe passes the registered workflows).

    Raises:
        ValueError: not a PNG, or it carries no recipe (made elsewhere, or with metadata off).
    """
    text = read_png_text(source)
    if RECIPE_KEY not in text:
        raise ValueError("image carries no Img2Img Studio recipe (made elsewhere, or with metadata turned off)")
    return Recipe.from_json(text[RECIPE_KEY], shapes)


def _finite_json(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return INFINITY_TEXT[value > 0]
    if isinstance(value, dict):
        return {key: _finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_json(item) for item in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
