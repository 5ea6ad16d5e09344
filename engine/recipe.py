"""Recipes: everything needed to reproduce a result, carried inside the PNG.

A `Recipe` is built from the pipeline object that made the image, so it records what really ran
(pipeline and scheduler classes, scheduler config, dtype, generator device), not what was asked for.
Every PNG the app returns carries two text chunks: `parameters`, the AUTOMATIC1111 web UI's infotext
that other tools read, and `img2img-studio`, the full recipe as JSON.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from engine.run import denoiser_of

APP_VERSION = "0.1.0"
PARAMETERS_KEY = "parameters"
RECIPE_KEY = "img2img-studio"
# Scheduler class -> the web UI's sampler name, where one matches.
SAMPLER_NAMES = {
    "PNDMScheduler": "PLMS",
    "DDIMScheduler": "DDIM",
    "DDPMScheduler": "DDPM",
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "LMSDiscreteScheduler": "LMS",
    "HeunDiscreteScheduler": "Heun",
    "DPMSolverMultistepScheduler": "DPM++ 2M",
    "UniPCMultistepScheduler": "UniPC",
    "KDPM2DiscreteScheduler": "DPM2",
}


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
    def from_pipeline(cls, pipe, **fields: Any) -> Recipe:
        """Fill the fields that come from the pipeline object itself."""
        scheduler = denoiser_of(pipe).scheduler
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
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        """The inverse of to_json (tuples restored).

        Raises:
            ValueError: not a recipe.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"recipe is not valid JSON: {exc}") from None
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or not {"workflow", "model", "parameters"} <= set(data):
            raise ValueError("recipe is missing workflow, model or parameters")
        data = {k: v for k, v in data.items() if k in names}
        data["seeds"] = tuple(data.get("seeds", ()))
        data["size"] = tuple(data.get("size", (0, 0)))
        return cls(**data)

    def for_image(self, index: int) -> Recipe:
        """The recipe of image `index` of a multi-image result (its seed; the batch it came from)."""
        return replace(self, extra={**self.extra, "index": index})

    @property
    def seed(self) -> int:
        return self.seeds[self.extra.get("index", 0)] if self.seeds else 0

    def infotext(self) -> str:
        """The web UI's `parameters` text: prompt, negative prompt, then `Key: value` pairs."""
        p = self.parameters
        lines = [str(p.get("prompt") or "")]
        if p.get("negative_prompt"):
            lines.append(f"Negative prompt: {p['negative_prompt']}")
        pairs = {
            "Steps": p.get("num_inference_steps"),
            "Sampler": SAMPLER_NAMES.get(self.scheduler, self.scheduler),
            "CFG scale": p.get("guidance_scale"),
            "Seed": self.seed,
            "Size": f"{self.size[0]}x{self.size[1]}",
            "Model": self.model_id.rsplit("/", 1)[-1],
            "Denoising strength": p.get("strength"),
            "Workflow": self.workflow,
        }
        lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in pairs.items() if v is not None))
        return "\n".join(lines)


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if ("," in text or ":" in text or '"' in text) else text


_PARAM = re.compile(r'\s*([\w ./+-]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def parse_infotext(text: str) -> dict[str, Any]:
    """The fields a web UI infotext shares with the Basic tab, plus the rest as strings.

    Returns prompt, negative_prompt, and where present num_inference_steps, guidance_scale, seed,
    strength, width, height, sampler, model; other `Key: value` pairs under their own names.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("infotext is empty")
    lines = text.strip().split("\n")
    last = lines[-1]
    params: dict[str, str] = {}
    if len(_PARAM.findall(last)) >= 3:
        lines = lines[:-1]
        for key, value in _PARAM.findall(last):
            value = value.strip()
            if value.startswith('"') and value.endswith('"'):
                value = json.loads(value)
            params[key.strip()] = value
    prompt_lines, negative_lines, in_negative = [], [], False
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
    for key, value in params.items():
        if key in conversions:
            name, convert = conversions[key]
            try:
                result[name] = convert(value)
            except ValueError:
                raise ValueError(f"infotext field {key!r} is not a {convert.__name__}: {value!r}") from None
        elif key == "Size" and re.fullmatch(r"\d+x\d+", value):
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


def read_png_text(source: str | Path | bytes) -> dict[str, str]:
    """The text chunks of a PNG.

    Raises:
        ValueError: not a PNG.
    """
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            if image.format != "PNG":
                raise ValueError(f"image must be a PNG made by the app, got {image.format}")
            return {k: v for k, v in image.info.items() if isinstance(v, str)}
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"image could not be read as a PNG: {exc}") from None


def read_recipe(source: str | Path | bytes) -> Recipe:
    """The recipe a PNG from the app carries.

    Raises:
        ValueError: not a PNG, or it carries no recipe (made elsewhere, or with metadata off).
    """
    text = read_png_text(source)
    if RECIPE_KEY not in text:
        raise ValueError("image carries no Img2Img Studio recipe (made elsewhere, or with metadata turned off)")
    return Recipe.from_json(text[RECIPE_KEY])


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
