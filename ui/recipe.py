"""Recipe tab: read the recipe in a PNG made by the app (or a web UI infotext), see its script, send it to Basic."""

from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr
from PIL import Image

from engine.core import Engine
from engine.models.catalog import models_for
from engine.models.loras import text as lora_text
from engine.recipes.foreign import TOOLS, foreign_fields, is_json_parameters
from engine.recipes.recipe import PARAMETERS_KEY, RECIPE_KEY, Recipe, read_image_text
from engine.recipes.results import is_result_id
from engine.recipes.webui import BasicFields
from engine.recipes.webui import basic_fields as webui_fields
from engine.workflows.checks import FOLLOW_INPUT, RESIZE_TO
from engine.workflows.registry import read_recipe, reads_files, reads_init, script_for
from ui.components import (
    BASIC_FIELDS,
    OUTPUT_FIELDS,
    GenerationInputs,
    built,
    run_button,
    scheduler_choices,
    summary_box,
)
from ui.events import documented, user_errors, wire_failure
from ui.tools import tool_spec

EXAMPLE_INFOTEXT = (
    "cat wizard, gandalf, lord of the rings, detailed, fantasy, cute, adorable, Pixar, Disney, 8k\n"
    "Negative prompt: ugly, deformed, disfigured, poor details, bad anatomy\n"
    "Steps: 50, Sampler: PLMS, CFG scale: 7.5, Seed: 33, Size: 448x296, Model: stable-diffusion-v1-5, "
    "Denoising strength: 0.6"
)


# the init image is not a recipe field; the scheduler comes last (its choices follow the model)
FIELD_ORDER = (*BASIC_FIELDS[1:], "weighted_prompt", "loras", *OUTPUT_FIELDS, "scheduler")


def output_fields(fields: BasicFields, recipe: Recipe | None) -> None:
    """Basic's output size controls from an app recipe (what it asked: follow the input, resize to or by, the
    mode) or from an infotext's Size (the web UI's img2img makes that size: Resize to, the mode left as it is)."""
    values = fields.values
    size = values.pop("size", None)
    if recipe is not None:
        extra = recipe.extra
        values["output_size"] = extra.get("output_size") or FOLLOW_INPUT
        values["resize_mode"] = extra.get("resize_mode")
        size = extra.get("resize_to")
        values["scale_by"] = extra.get("scale_by")
    elif size is not None:
        values["output_size"] = RESIZE_TO
        fields.notes.append(
            f"Size {size[0]}x{size[1]}: Output size is set to Resize to {size[0]}x{size[1]} (rounded to the model's "
            "multiple); the resize mode is left as it is (the web UI's default is Just resize)."
        )
    if size is not None:
        values["width"], values["height"] = size


def recipe_fields(recipe: Recipe) -> BasicFields:
    """The Basic controls an app recipe fills."""
    p = recipe.parameters
    fields = BasicFields(
        {
            "prompt": p.get("prompt") or "",
            "negative_prompt": p.get("negative_prompt") or "",
            "strength": p.get("strength"),
            "guidance_scale": p.get("guidance_scale"),
            "num_inference_steps": p.get("num_inference_steps"),
            "seed": recipe.seed,
            "model": recipe.model if recipe.model in models_for("img2img") else None,
            "weighted_prompt": recipe.weighted_prompt,
            "loras": lora_text(recipe.extra.get("loras") or []),
            "scheduler": recipe.extra.get("scheduler_name"),
        }
    )
    output_fields(fields, recipe)
    if fields.values["model"] is None:
        fields.notes.append(f"Model {recipe.model} does not run img2img; the Basic model is kept.")
    files = reads_files(recipe)
    if files:  # not part of the recipe: the downloads of the tab that made it hold them
        names = " and ".join(files)
        fields.notes.append(
            f"Its script also reads {names} (python recipe.py result.png init.png {' '.join(files)}): not part of "
            f"a recipe, the app's own downloads keep {names} beside the script. Basic does not use {names}."
        )
    return fields


def read_source(image: str | None, infotext: str) -> tuple[Recipe | None, BasicFields]:
    """The recipe of an app PNG, else the infotext of a web UI PNG or of the pasted text, as Basic's fields.

    Raises:
        ValueError: no input, not a PNG, or a PNG that carries neither.
    """
    if image:
        chunks = read_image_text(image)
        if RECIPE_KEY in chunks:
            found = read_recipe(image)
            return found, recipe_fields(found)
        if PARAMETERS_KEY in chunks and not is_json_parameters(chunks):
            fields = webui_fields(chunks[PARAMETERS_KEY])
            if all(fields.values.get(name) is None for name in ("num_inference_steps", "seed", "guidance_scale")):
                shown = chunks[PARAMETERS_KEY][:60]
                raise ValueError(
                    f"image's text {shown!r} is no web UI parameters text: it has no Steps, Seed or CFG scale"
                )
            fields.notes.insert(0, "A web UI PNG: its parameters text is read; there is no recipe to replay exactly.")
            output_fields(fields, None)
            return None, fields
        foreign = foreign_fields(chunks)  # engine.recipes.foreign.TOOLS
        if foreign is not None:
            output_fields(foreign, None)
            return None, foreign
        raise ValueError(
            "image carries neither an Img2Img Studio recipe nor a web UI parameters text, nor the metadata of "
            f"{', '.join(TOOLS[:-1])} or {TOOLS[-1]} (made elsewhere, or with metadata turned off)"
        )
    if not infotext or not infotext.strip():
        raise ValueError(
            "image is required: upload an image made by the app or the web UI, or paste a web UI infotext"
        )
    fields = webui_fields(infotext)
    output_fields(fields, None)
    return None, fields


def held_init(engine: Engine, path: str | None, recipe: Recipe | None) -> Image.Image | None:
    """The init image this server still holds for an app PNG: by the result id it was named (a download from a
    gallery keeps that name) when the PNG's recipe is that result's, else by the content hash its recipe names
    (renamed, re-saved by a browser); None when the server holds neither."""
    if not path or recipe is None or not reads_init(recipe):
        return None
    stored = engine.results.get(Path(path).stem) if is_result_id(Path(path).stem) else None
    if stored is not None and stored.recipe.to_json() == recipe.to_json():
        return stored.init
    return engine.results.init_by_digest(recipe.init_digest)


INIT_HINT = (
    "The init image is not part of a recipe: put the image this result was made from into Basic's "
    "Init image (the app's own downloads keep it as init.png beside the script)."
)


def build(engine: Engine, basic: GenerationInputs, tabs: gr.Tabs, tools: list) -> None:
    """Lay out the Recipe tab; `basic` are the Basic tab's inputs that "Send to Basic" fills. Adds its
    handler to `tools`."""
    settings = engine.settings
    gr.Markdown(
        "Every PNG the app makes carries its recipe: the web UI's `parameters` text and the full recipe as JSON. "
        "Drop one here to see the diffusers script that reproduces it, or a web UI or Forge image (PNG, JPEG or "
        "WebP), or paste a web UI infotext."
    )
    with gr.Row():
        with gr.Column(scale=1):
            # no file_types: a file is told by its first bytes, not its name (the JS client names an upload "blob")
            image = gr.File(label="An image made by Img2Img Studio or the web UI (PNG, JPEG or WebP)", type="filepath")
            infotext = gr.Textbox(
                value="", label="…or a web UI infotext (prompt, Negative prompt:, Steps: …)", lines=4
            )  # value "": optional in the API, /recipe(image) alone works
            with gr.Row():
                read = run_button("Read recipe")
                send = gr.Button("Send to Basic")
        with gr.Column(scale=1):
            summary = summary_box("recipe-fields", label="Fields")
            script = gr.Code(language="python", label="Script", interactive=False)
            recipe_json = gr.Code(language="json", label="Recipe", interactive=False)
    gr.Examples(
        examples=[[EXAMPLE_INFOTEXT]],
        inputs=[infotext],
        label="Example: a web UI infotext (then Read recipe, or Send to Basic)",
    )

    @documented(settings)
    @user_errors
    def recipe(image: str | None = None, infotext: str = ""):
        """Read the recipe of a PNG made by this app: its Basic fields, the diffusers script and the JSON.

        Use this to reproduce or explain an image. Also reads an AUTOMATIC1111 web UI PNG or infotext: its
        fields mapped to Basic's (sampler to scheduler, checkpoint to model, (word:1.2) weighting to Compel),
        with a note for each field that does not map; no script then.

        Args:
            image: a PNG made by the app (its text chunks carry the recipe), or a PNG, JPEG or WebP made by the web
                UI or Forge (its parameters text, in a PNG text chunk or the EXIF UserComment).
            infotext: used when no PNG is given: the web UI's parameters text.
        """
        found, fields = read_source(image, infotext)
        if found is None:
            return _fields_text(fields), "", ""
        return _fields_text(fields), script_for(found), found.to_json()

    outputs = [summary, script, recipe_json]
    tools.append(tool_spec(recipe, [image, infotext], outputs))
    wire_failure(read.click(recipe, inputs=[image, infotext], outputs=outputs, api_name="recipe"), outputs)

    send.click(
        functools.partial(send_to_basic, engine),
        inputs=[image, infotext],
        outputs=basic_targets(basic, tabs),
        api_visibility="private",
    )


def basic_targets(basic: GenerationInputs, tabs: gr.Tabs) -> list:
    """What Send to Basic fills (`send_to_basic`'s outputs, in order): Basic's fields, its scheduler, its summary
    (what was filled), its init image, and the tabs (Basic opened)."""
    return [
        *built(
            basic.prompt,
            basic.negative_prompt,
            basic.model,
            basic.strength,
            basic.guidance_scale,
            basic.num_inference_steps,
            basic.seed,
            basic.weighted_prompt,
            basic.loras,
            *[(basic.output or {}).get(name) for name in OUTPUT_FIELDS],
            basic.scheduler,
            basic.summary,
            basic.image,
        ),
        tabs,
    ]


@user_errors
def send_to_basic(engine: Engine, image: str | None, infotext: str, *, origin: str = "the Recipe tab") -> list:
    """Basic filled from an app PNG's recipe (with the init the server still holds) or a web UI infotext."""
    found, fields = read_source(image, infotext)
    init = held_init(engine, image, found)
    if init is None:
        fields.notes.append(INIT_HINT)
    else:
        fields.notes.append("Init image: the one this result was made from, as the pipeline saw it.")
    values = [fields.values.get(name) for name in FIELD_ORDER[:-1]]
    model = fields.values.get("model")
    scheduler = fields.values.get("scheduler")
    schedulers = (
        gr.Dropdown(choices=scheduler_choices(model), value=scheduler or "")
        if model
        else (gr.skip() if scheduler is None else scheduler)
    )
    sent = f"Filled from {origin}:\n" + _fields_text(fields)
    filled = [gr.skip() if value is None else value for value in values]
    return [*filled, schedulers, sent, gr.skip() if init is None else init, gr.Tabs(selected="basic")]


def _fields_text(fields: BasicFields) -> str:
    """One `name: value` line per field that maps, then the notes."""
    lines = [f"{name}: {fields.values[name]!r}" for name in FIELD_ORDER if fields.values.get(name) is not None]
    return "\n".join([*lines, *(f"Note: {note}" for note in fields.notes)])
