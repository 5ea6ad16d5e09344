"""Runnable diffusers scripts from recipes: the exact code behind each image.

The script uses diffusers the way the guide does (AutoPipelineForImage2Image, output_type="latent"
hand-overs), with the recipe's model ids, dtype, scheduler, seeds and generator device, and saves the
image to its first argument (default result.png). Its second argument is the init image (default
init.png): the app offers the init exactly as the pipeline saw it, so the script reproduces the
result pixel for pixel. In tiny mode the model ids are the twins' local folders, so it runs offline.
"""

from __future__ import annotations

import inspect
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.models.catalog import known_spec, owner_models
from engine.pipelines.device import DevicePolicy
from engine.pipelines.loading import load_options
from engine.pipelines.portable import resize_image, single_file_pipeline
from engine.pipelines.prompts import LINEAR_PARSING_LINE
from engine.pipelines.schedulers import SCHEDULERS
from engine.recipes.recipe import Recipe

HEADER = '''"""{title}

Made by Img2Img Studio {version}. Run:  python {{this file}} [result.png] [init.png]{more}
"""

import sys

import torch
from PIL import Image
'''


def literal(value: Any) -> str:
    """A Python literal for a JSON-like value (True/False/None, not true/false/null).

    Every value from a recipe reaches the script through this (or `comment`), never pasted as text:
    a recipe can come from a crafted PNG.
    """
    return repr(json.loads(json.dumps(value)))


def comment(text: object) -> str:
    """Text safe inside a comment or the docstring: one line, no quotes or backslashes."""
    return "".join(c if c.isprintable() and c not in "\"'\\" else "?" for c in str(text))[:200]


def size_literal(size) -> str:
    """A (width, height) literal."""
    width, height = (int(side) for side in size)
    return repr((width, height))


def header(recipe: Recipe, title: str, classes: list[str], more_args: str = "") -> list[str]:
    """Imports, arguments, device and dtype; the single-file loader when the recipe uses the owner's file."""
    keys = [recipe.model, *(stage.get("model") for stage in recipe.parameters.get("stages") or ())]
    single_file = any(getattr(known_spec(key), "origin", "") == "file" for key in keys)
    return [
        HEADER.format(title=comment(title), version=comment(recipe.app_version), more=more_args).rstrip("\n"),
        f"from diffusers import {', '.join(sorted(set(classes)))}",
        "",
        'OUTPUT = sys.argv[1] if len(sys.argv) > 1 else "result.png"',
        'INIT = sys.argv[2] if len(sys.argv) > 2 else "init.png"',
        'DEVICE = "cuda" if torch.cuda.is_available() else "cpu"',
        f"DTYPE = getattr(torch, {literal(recipe.dtype)})",
        'VARIANT = "fp16" if DTYPE == torch.float16 else None  # half-precision files, where the repo has them',
        f"GENERATOR_DEVICE = {literal(recipe.generator_device)} if DEVICE == {literal(recipe.generator_device)} "
        "else DEVICE",
        "",
        *(source(single_file_pipeline) + OWNER_FOLDER_LINES["models"] if single_file else []),
    ]


# The owner's files are named in a recipe, never located: the script reads them from the folder its user names,
# with the same setting the app reads (a script made on a server tells nothing of the server's folders).
OWNER_FOLDER_LINES = {
    "models": [
        "import os",
        "",
        "# your single-file checkpoints: the folder the app's STUDIO_MODELS_DIR named",
        'MODELS_DIR = os.environ.get("STUDIO_MODELS_DIR", "models")',
        "",
    ],
    "loras": [
        "import os",
        "",
        "# your LoRA files: the folder the app's STUDIO_LORA_DIR named",
        'LORA_DIR = os.environ.get("STUDIO_LORA_DIR", "loras")',
    ],
}


def saved(image: str) -> list[str]:
    """A script's last lines: save `image` (a Python expression) to OUTPUT and say so."""
    return [f"{image}.save(OUTPUT)", 'print("saved", OUTPUT)', ""]


def weight_options(key: str) -> str:
    """The weight-file arguments the app loads a catalog entry with (engine.pipelines.loading.load_options, as
    on a float16 device: the script picks VARIANT at run time); safetensors only for a key the catalog does
    not know (recipes are validated before; this writer never trusts them)."""
    import torch

    spec = known_spec(key)
    if spec is None:
        return ", use_safetensors=True"
    options = load_options(spec, DevicePolicy(dtype=torch.float16), hub=False)
    # None: prefer safetensors, else the repo's .bin files, which diffusers reads weights-only
    return f", use_safetensors={options['use_safetensors']!r}" + (", variant=VARIANT" if "variant" in options else "")


def load(loader: str, key: str, model_id: str, revision: str | None) -> str:
    """The expression that loads a model as the app did: by repo id or folder, or the owner's single file."""
    spec = known_spec(key)
    if spec is not None and spec.origin == "file":  # model_id: the file's name (engine.core.Engine.model_id)
        path = f"os.path.join(MODELS_DIR, {literal(Path(model_id).name)})"
        return f"single_file_pipeline({path}, {literal(spec.config_id)}, {loader}, DTYPE)"
    pinned = f", revision={literal(revision)}" if revision else ""
    return f"{loader}.from_pretrained({literal(model_id)}{pinned}, dtype=DTYPE{weight_options(key)})"


def init_image_lines(size: tuple[int, int], resize_mode: str | None = None) -> list[str]:
    """Open the init image and bring it to the working size: stretched (the input's own size, scaled), or by the
    resize mode the run asked for, with the app's own function (engine.pipelines.portable.resize_image). Given the
    app's init.png (already at that size) nothing changes; given the original upload, the same pixels come out."""
    if resize_mode is None:
        return [
            'init_image = Image.open(INIT).convert("RGB")',
            f"if init_image.size != {size_literal(size)}:  # the app's working size",
            f"    init_image = init_image.resize({size_literal(size)}, Image.Resampling.LANCZOS)",
            "",
        ]
    width, height = (int(side) for side in size)
    return [
        *source(resize_image),
        'init_image = Image.open(INIT).convert("RGB")',
        f"if init_image.size != {size_literal(size)}:  # the size the run asked for",
        f"    init_image = resize_image(init_image, {literal(resize_mode)}, {width}, {height})",
        "",
    ]


def scheduler_lines(recipe: Recipe) -> list[str]:
    """Swap in the scheduler the run chose (Basic's scheduler, a sweep's axis), configured from the
    checkpoint's own."""
    name = recipe.extra.get("scheduler_name")
    if not name:
        return []
    class_name, overrides = SCHEDULERS[name]
    return [
        f"from diffusers import {class_name}",
        "",
        'denoiser = getattr(pipe, "decoder_pipe", pipe)  # a combined pipeline keeps it on its decoder',
        f"denoiser.scheduler = {class_name}.from_config(denoiser.scheduler.config, **{literal(overrides)})",
        "",
    ]


def source(*functions: Callable) -> list[str]:
    """The functions' own source (engine.pipelines.portable, a family's encoders), as the engine runs them."""
    lines: list[str] = []
    for function in functions:
        lines += [*textwrap.dedent(inspect.getsource(function)).rstrip("\n").split("\n"), "", ""]
    return lines


def weighted_prompt_encoder(recipe: Recipe) -> Callable:
    """The Compel encoder of the recipe's model family.

    Raises:
        ValueError: the family takes no weighted prompt (a crafted recipe).
    """
    spec = known_spec(recipe.model)
    encode = spec.adapter.weighted_prompt if spec is not None else None
    if encode is None:
        raise ValueError(f"model {recipe.model!r} takes no weighted prompt")
    return encode


def weighted_prompt_lines(recipe: Recipe) -> list[str]:
    p = recipe.parameters
    prompt, negative = p.get("prompt") or "", p.get("negative_prompt") or ""
    return [
        *source(weighted_prompt_encoder(recipe)),
        "import pyparsing",
        "",
        LINEAR_PARSING_LINE,
        f"prompt_kwargs = weighted_prompt(pipe, {literal(prompt)}, {literal(negative)})",
    ]


def img2img_preamble(recipe: Recipe, title: str) -> list[str]:
    """Imports, the init image, the pipeline on its device and any scheduler swap."""
    lines = header(recipe, title, ["AutoPipelineForImage2Image"])
    lines += init_image_lines(recipe.size, recipe.extra.get("resize_mode"))
    lines += [
        f"pipe = {load('AutoPipelineForImage2Image', recipe.model, recipe.model_id, recipe.revision)}",
        "pipe = pipe.to(DEVICE)",
        "",
    ]
    return lines + lora_lines(recipe) + scheduler_lines(recipe)


def lora_lines(recipe: Recipe) -> list[str]:
    """The run's LoRAs loaded and weighted as the app applied them (engine.pipelines.lora), by the names the recipe
    keeps.

    Raises:
        ValueError: a LoRA this app does not offer (the recipe came from elsewhere).
    """
    chosen = recipe.extra.get("loras") or []
    if not chosen:
        return []
    loads, from_folder = [], False
    for item in chosen:
        lora = owner_models().lora(item["name"])
        if lora is None:
            raise ValueError(f"the recipe's LoRA {item['name']!r} is not offered by this app")
        file = literal(Path(lora.source).name)
        if lora.origin == "hub":  # an allowed Hub repo: its file, downloaded as the app downloaded it
            where = f"{literal(lora.name)}, weight_name={file}"
        else:
            where, from_folder = f"os.path.join(LORA_DIR, {file})", True
        loads.append(f"pipe.load_lora_weights({where}, adapter_name={literal(lora.adapter)})")
    lines = [
        *(OWNER_FOLDER_LINES["loras"] if from_folder else []),
        "# The run's LoRAs with their weights (diffusers' PEFT integration)",
        *loads,
    ]
    adapters = [owner_models().loras[item["name"]].adapter for item in chosen]
    weights = [item["weight"] for item in chosen]
    return [*lines, f"pipe.set_adapters({literal(adapters)}, adapter_weights={literal(weights)})", ""]
