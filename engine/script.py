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
from typing import Any

from engine.catalog import CATALOG
from engine.recipe import Recipe

HEADER = '''"""{title}

Made by Img2Img Studio {version}. Run:  python {{this file}} [result.png] [init.png]{more}
"""

import sys

import torch
from PIL import Image
'''


def script_for(recipe: Recipe) -> str:
    """The script for a recipe's image, written by its workflow (engine.workflows).

    Raises:
        ValueError: a workflow with no script (yet), or a recipe its writer cannot replay.
    """
    from engine.workflows import WORKFLOWS  # the workflows' modules import this one

    workflow = WORKFLOWS.get(recipe.workflow)
    if workflow is None:
        raise ValueError(f"no script export for workflow {recipe.workflow!r}")
    return workflow.script(recipe)


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
    ]


def saved(image: str) -> list[str]:
    """A script's last lines: save `image` (a Python expression) to OUTPUT and say so."""
    return [f"{image}.save(OUTPUT)", 'print("saved", OUTPUT)', ""]


def weight_options(key: str) -> str:
    """The weight-file arguments the app loads a catalog entry with (engine.cache.load_options, as on a float16
    device: the script picks VARIANT at run time); safetensors only for a key the catalog does not know
    (recipes are validated before; this writer never trusts them)."""
    import torch

    from engine.cache import DevicePolicy, load_options

    spec = CATALOG.get(key) if isinstance(key, str) else None
    if spec is None:
        return ", use_safetensors=True"
    options = load_options(spec, DevicePolicy(dtype=torch.float16), hub=False)
    # None: prefer safetensors, else the repo's .bin files, which diffusers reads weights-only
    return f", use_safetensors={options['use_safetensors']!r}" + (", variant=VARIANT" if "variant" in options else "")


def load(loader: str, key: str, model_id: str, revision: str | None) -> str:
    pinned = f", revision={literal(revision)}" if revision else ""
    return f"{loader}.from_pretrained({literal(model_id)}{pinned}, dtype=DTYPE{weight_options(key)})"


def init_image_lines(size: tuple[int, int]) -> list[str]:
    return [
        'init_image = Image.open(INIT).convert("RGB")',
        f"if init_image.size != {size_literal(size)}:  # the app's working size",
        f"    init_image = init_image.resize({size_literal(size)}, Image.Resampling.LANCZOS)",
        "",
    ]


def scheduler_lines(recipe: Recipe) -> list[str]:
    """Swap in the scheduler the run chose (Basic's scheduler, a sweep's axis), configured from the
    checkpoint's own."""
    name = recipe.extra.get("scheduler_name")
    if not name:
        return []
    from engine.schedulers import SCHEDULERS

    class_name, overrides = SCHEDULERS[name]
    return [
        f"from diffusers import {class_name}",
        "",
        'denoiser = getattr(pipe, "decoder_pipe", pipe)  # a combined pipeline keeps it on its decoder',
        f"denoiser.scheduler = {class_name}.from_config(denoiser.scheduler.config, **{literal(overrides)})",
        "",
    ]


def source(*functions: Callable) -> list[str]:
    """The functions' own source (engine.portable, a family's encoders), as the engine runs them."""
    lines: list[str] = []
    for function in functions:
        lines += [*textwrap.dedent(inspect.getsource(function)).rstrip("\n").split("\n"), "", ""]
    return lines


def weighted_prompt_encoder(recipe: Recipe) -> Callable:
    """The Compel encoder of the recipe's model family.

    Raises:
        ValueError: the family takes no weighted prompt (a crafted recipe).
    """
    encode = CATALOG[recipe.model].adapter.weighted_prompt
    if encode is None:
        raise ValueError(f"model {recipe.model!r} takes no weighted prompt")
    return encode


def weighted_prompt_lines(recipe: Recipe) -> list[str]:
    p = recipe.parameters
    prompt, negative = p.get("prompt") or "", p.get("negative_prompt") or ""
    return [
        *source(weighted_prompt_encoder(recipe)),
        f"prompt_kwargs = weighted_prompt(pipe, {literal(prompt)}, {literal(negative)})",
    ]


def img2img_preamble(recipe: Recipe, title: str) -> list[str]:
    """Imports, the init image, the pipeline on its device and any scheduler swap."""
    lines = header(recipe, title, ["AutoPipelineForImage2Image"])
    lines += init_image_lines(recipe.size)
    lines += [
        f"pipe = {load('AutoPipelineForImage2Image', recipe.model, recipe.model_id, recipe.revision)}",
        "pipe = pipe.to(DEVICE)",
        "",
    ]
    return lines + scheduler_lines(recipe)
