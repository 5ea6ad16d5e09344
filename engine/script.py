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
from engine.portable import decode_latents, encode_posterior, per_sample_guidance, sample_latents
from engine.recipe import Recipe

HEADER = '''"""{title}

Made by Img2Img Studio {version}. Run:  python {{this file}} [result.png] [init.png]{more}
"""

import sys

import torch
from PIL import Image
'''

LOADERS = {
    "img2img": "AutoPipelineForImage2Image",
    "text2img": "AutoPipelineForText2Image",
    "upscale": "DiffusionPipeline",
}


def script_for(recipe: Recipe) -> str:
    """The script for a recipe's image.

    Raises:
        ValueError: a workflow with no script (yet).
    """
    if recipe.workflow == "img2img":
        return _img2img_script(recipe)
    if recipe.workflow == "chain":
        return _chain_script(recipe)
    if recipe.workflow == "sweep":
        return _sweep_script(recipe)
    if recipe.workflow == "depth":
        return _depth_script(recipe)
    raise ValueError(f"no script export for workflow {recipe.workflow!r}")


def _literal(value: Any) -> str:
    """A Python literal for a JSON-like value (True/False/None, not true/false/null).

    Every value from a recipe reaches the script through this (or `_comment`), never pasted as text:
    a recipe can come from a crafted PNG.
    """
    return repr(json.loads(json.dumps(value)))


def _comment(text: object) -> str:
    """Text safe inside a comment or the docstring: one line, no quotes or backslashes."""
    return "".join(c if c.isprintable() and c not in "\"'\\" else "?" for c in str(text))[:200]


def _size(size) -> str:
    """A (width, height) literal."""
    width, height = (int(side) for side in size)
    return repr((width, height))


def _header(recipe: Recipe, title: str, classes: list[str], more_args: str = "") -> list[str]:
    return [
        HEADER.format(title=_comment(title), version=_comment(recipe.app_version), more=more_args).rstrip("\n"),
        f"from diffusers import {', '.join(sorted(set(classes)))}",
        "",
        'OUTPUT = sys.argv[1] if len(sys.argv) > 1 else "result.png"',
        'INIT = sys.argv[2] if len(sys.argv) > 2 else "init.png"',
        'DEVICE = "cuda" if torch.cuda.is_available() else "cpu"',
        f"DTYPE = getattr(torch, {_literal(recipe.dtype)})",
        'VARIANT = "fp16" if DTYPE == torch.float16 else None  # half-precision files, where the repo has them',
        f"GENERATOR_DEVICE = {_literal(recipe.generator_device)} if DEVICE == {_literal(recipe.generator_device)} "
        "else DEVICE",
        "",
    ]


def _weights(key: str) -> str:
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


def _load(loader: str, key: str, model_id: str, revision: str | None) -> str:
    pinned = f", revision={_literal(revision)}" if revision else ""
    return f"{loader}.from_pretrained({_literal(model_id)}{pinned}, dtype=DTYPE{_weights(key)})"


def _init_image(size: tuple[int, int]) -> list[str]:
    return [
        'init_image = Image.open(INIT).convert("RGB")',
        f"if init_image.size != {_size(size)}:  # the app's working size",
        f"    init_image = init_image.resize({_size(size)}, Image.Resampling.LANCZOS)",
        "",
    ]


def _scheduler_lines(recipe: Recipe) -> list[str]:
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
        f"denoiser.scheduler = {class_name}.from_config(denoiser.scheduler.config, **{_literal(overrides)})",
        "",
    ]


def _source(*functions: Callable) -> list[str]:
    """The functions' own source (engine.portable, a family's encoders), as the engine runs them."""
    lines: list[str] = []
    for function in functions:
        lines += [*textwrap.dedent(inspect.getsource(function)).rstrip("\n").split("\n"), "", ""]
    return lines


def _weighted_prompt(recipe: Recipe) -> Callable:
    """The Compel encoder of the recipe's model family.

    Raises:
        ValueError: the family takes no weighted prompt (a crafted recipe).
    """
    encode = CATALOG[recipe.model].adapter.weighted_prompt
    if encode is None:
        raise ValueError(f"model {recipe.model!r} takes no weighted prompt")
    return encode


def _weighted_prompt_lines(recipe: Recipe) -> list[str]:
    p = recipe.parameters
    prompt, negative = p.get("prompt") or "", p.get("negative_prompt") or ""
    return [
        *_source(_weighted_prompt(recipe)),
        f"prompt_kwargs = weighted_prompt(pipe, {_literal(prompt)}, {_literal(negative)})",
    ]


def _img2img_preamble(recipe: Recipe, title: str) -> list[str]:
    """Imports, the init image, the pipeline on its device and any scheduler swap."""
    lines = _header(recipe, title, ["AutoPipelineForImage2Image"])
    lines += _init_image(recipe.size)
    lines += [
        f"pipe = {_load('AutoPipelineForImage2Image', recipe.model, recipe.model_id, recipe.revision)}",
        "pipe = pipe.to(DEVICE)",
        "",
    ]
    return lines + _scheduler_lines(recipe)


def _img2img_script(recipe: Recipe) -> str:
    p = dict(recipe.parameters)
    index = recipe.extra.get("index", 0)
    per_seed = recipe.extra.get("pipeline_calls", 1) > 1
    lines = _img2img_preamble(recipe, f"img2img with {recipe.model_id}, seed {recipe.seed}")
    if recipe.weighted_prompt:
        lines += _weighted_prompt_lines(recipe)
        p.pop("prompt", None)
        p.pop("negative_prompt", None)
    else:
        lines.append("prompt_kwargs = {}")
    seeds = [int(seed) for seed in recipe.seeds]
    if CATALOG[recipe.model].adapter.swaps_height_width:
        lines.append("# height and width are passed swapped: diffusers' Kandinsky 2.2 img2img transposes them")
    lines += [
        f"call = {_literal(p)}",
        f"seeds = {seeds!r}",
        "",
    ]
    if per_seed:  # Kandinsky 2.2: one call per seed (its prior cannot take a generator list)
        lines += [
            "images = []",
            "for seed in seeds:",
            "    generator = [torch.Generator(GENERATOR_DEVICE).manual_seed(seed)]",
            "    images += pipe(image=init_image, generator=generator, **{**call, 'num_images_per_prompt': 1},",
            "                   **prompt_kwargs).images",
        ]
    else:
        lines += [
            "generator = [torch.Generator(GENERATOR_DEVICE).manual_seed(seed) for seed in seeds]",
            "images = pipe(image=init_image, generator=generator, **call, **prompt_kwargs).images",
        ]
    lines += [f"images[{int(index)}].save(OUTPUT)", 'print("saved", OUTPUT)', ""]
    return "\n".join(lines)


def _depth_script(recipe: Recipe) -> str:
    """ControlNet img2img as the guide writes it: the ControlNet loaded, then passed to the pipeline."""
    p = dict(recipe.parameters)
    size = _size(recipe.size)
    pinned = f", revision={_literal(recipe.revision)}" if recipe.revision else ""
    lines = _header(
        recipe,
        f"ControlNet depth img2img with {recipe.model_id}, seed {recipe.seed}",
        ["AutoPipelineForImage2Image", "ControlNetModel"],
        more_args=" [control.png]",
    )
    lines += _init_image(recipe.size)
    lines += [
        'CONTROL = sys.argv[3] if len(sys.argv) > 3 else "control.png"',
        f'control_image = Image.open(CONTROL).convert("RGB").resize({size}, Image.Resampling.BILINEAR)',
        "",
        f"controlnet = {_load('ControlNetModel', recipe.extra['controlnet'], recipe.extra['controlnet_id'], None)}",
        "pipe = AutoPipelineForImage2Image.from_pretrained(",
        f"    {_literal(recipe.model_id)}{pinned}, controlnet=controlnet, dtype=DTYPE{_weights(recipe.model)}",
        ").to(DEVICE)",
        "",
        f"call = {_literal(p)}",
        f"generator = [torch.Generator(GENERATOR_DEVICE).manual_seed({int(recipe.seed)})]",
        "image = pipe(image=init_image, control_image=control_image, generator=generator, **call).images[0]",
        "image.save(OUTPUT)",
        'print("saved", OUTPUT)',
        "",
    ]
    return "\n".join(lines)


def _chain_script(recipe: Recipe) -> str:
    stages = recipe.parameters["stages"]
    seed = int(recipe.seed)
    lines = _header(recipe, f"a {len(stages)}-stage chain, seed {seed}", [LOADERS[s["kind"]] for s in stages])
    if recipe.reads_init:
        lines += _init_image(stages[0]["input_size"])
        lines.append("carried = init_image")
    else:
        lines.append("carried = None")
    lines.append("")
    previous = None
    for number, stage in enumerate(stages, start=1):
        loader = LOADERS[stage["kind"]]
        call = stage["call"]
        receives = stage.get("receives") or "nothing"
        lines.append(_comment(f"# stage {number}: {stage['model']} ({stage['kind']}), receives {receives}"))
        if previous is not None and previous["model_id"] == stage["model_id"] and loader != "DiffusionPipeline":
            # the same weights in another pipeline kind: share them, passing the dtype (diffusers issue 12754)
            lines.append(f"pipe = {loader}.from_pipe(pipe, dtype=DTYPE)")
        else:
            loaded = _load(loader, stage["model"], stage["model_id"], stage.get("revision"))
            lines.append(f"pipe = {loaded}.to(DEVICE)")
        lines.append(f"call = {_literal(call)}")
        previous = stage
        if stage["kind"] != "text2img":
            size = _size(stage["input_size"])
            lines += [
                f"if isinstance(carried, Image.Image) and carried.size != {size}:",
                f"    carried = carried.resize({size}, Image.Resampling.LANCZOS)",
                "call['image'] = carried",
            ]
        lines += [
            f"output = pipe(generator=[torch.Generator(GENERATOR_DEVICE).manual_seed({seed})], **call).images",
            "carried = output if call['output_type'] == 'latent' else output[0]",
            "",
        ]
    lines += [
        *_source(decode_latents),
        "if not isinstance(carried, Image.Image):  # an intermediate stage's latents: decode them for display",
        "    carried = decode_latents(pipe, carried)",
        "carried.save(OUTPUT)",
        'print("saved", OUTPUT)',
        "",
    ]
    return "\n".join(lines)


SWEEP_BODY = """
# The cells of the batched call this image came from, and its place in it.
batch = {batch}
position = {position}

# 1. Prompt embeddings, encoded as the app encodes them, one row per cell.
{encode}
prompt_kwargs = {{name: torch.cat([row[name] for row in rows]) for name in rows[0]}}

# 2. The init image through the VAE encoder once; each cell samples the posterior with its own generator,
#    where the pipeline would, so the generator goes on as in a run of its own.
generators = [torch.Generator(GENERATOR_DEVICE).manual_seed(cell["seed"]) for cell in batch]
latents = sample_latents(pipe, encode_posterior(pipe, init_image), generators)

# 3. One guidance scale per call: per_sample_guidance gives each cell its own.
scales = [cell["guidance_scale"] for cell in batch]
call_scale = max(scales)
with per_sample_guidance(pipe.unet, scales, call_scale):
    images = pipe(
        image=latents,
        strength={strength},
        num_inference_steps={steps},
        guidance_scale=call_scale,
        num_images_per_prompt=1,
        generator=generators,
        **prompt_kwargs,
    ).images
images[position].save(OUTPUT)
print("saved", OUTPUT)
"""


def _sweep_encode_lines(recipe: Recipe) -> list[str]:
    """The prompt encoder of the cell's family and the rows it makes, as engine.sweep calls it."""
    if recipe.weighted_prompt:
        return [
            *_source(_weighted_prompt(recipe)),
            'rows = [weighted_prompt(pipe, cell["prompt"], cell["negative_prompt"] or "") for cell in batch]',
        ]
    encode = CATALOG[recipe.model].adapter.encode_prompt
    if encode is None:
        raise ValueError(f"model {recipe.model!r} does not batch sweep cells")
    return [
        *_source(encode),
        "with torch.inference_mode():",
        '    rows = [encode_prompt(pipe, cell["prompt"], cell["negative_prompt"]) for cell in batch]',
    ]


def _sweep_script(recipe: Recipe) -> str:
    """A batched sweep cell: replays the whole batched call, then keeps this cell's image."""
    p = recipe.parameters
    lines = _img2img_preamble(recipe, f"sweep cell with {recipe.model_id}, seed {recipe.seed}")
    lines += ["import contextlib", "", "", *_source(encode_posterior, sample_latents, per_sample_guidance)]
    body = SWEEP_BODY.format(
        batch=_literal(recipe.extra["batch"]),
        position=int(recipe.extra["position"]),
        encode="\n".join(_sweep_encode_lines(recipe)),
        strength=_literal(p["strength"]),
        steps=_literal(p["num_inference_steps"]),
    )
    return "\n".join(lines) + body
