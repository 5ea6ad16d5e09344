"""Recipe tab: read the recipe in a PNG made by the app (or a web UI infotext), see its script, send it to Basic."""

from __future__ import annotations

import gradio as gr

from engine.catalog import models_for
from engine.core import Engine
from engine.recipe import Recipe, parse_infotext, read_png_text, read_recipe
from engine.script import script_for
from ui.mcp import tool_spec
from ui.widgets import GenerationInputs, documented, summary_box, user_errors

EXAMPLE_INFOTEXT = (
    "cat wizard, gandalf, lord of the rings, detailed, fantasy, cute, adorable, Pixar, Disney, 8k\n"
    "Negative prompt: ugly, deformed, disfigured, poor details, bad anatomy\n"
    "Steps: 50, Sampler: PLMS, CFG scale: 7.5, Seed: 33, Size: 448x296, Model: stable-diffusion-v1-5, "
    "Denoising strength: 0.6"
)


def basic_fields(recipe: Recipe | None, infotext: str) -> dict:
    """The Basic controls a recipe (preferred) or a web UI infotext fills."""
    if recipe is not None:
        p = recipe.parameters
        fields = {
            "prompt": p.get("prompt") or "",
            "negative_prompt": p.get("negative_prompt") or "",
            "strength": p.get("strength"),
            "guidance_scale": p.get("guidance_scale"),
            "num_inference_steps": p.get("num_inference_steps"),
            "seed": recipe.seed,
            "model": recipe.model,
        }
    else:
        parsed = parse_infotext(infotext)
        fields = {k: parsed.get(k) for k in ("prompt", "negative_prompt", "strength", "guidance_scale",
                                              "num_inference_steps", "seed")}  # fmt: skip
        fields["model"] = parsed.get("model")
    if fields["model"] not in models_for("img2img"):
        fields["model"] = None  # a web UI checkpoint or an upscaler stage: keep the Basic tab's model
    return fields


def build(engine: Engine, basic: GenerationInputs, tabs: gr.Tabs, tools: list) -> None:
    """Lay out the Recipe tab; `basic` are the Basic tab's inputs that "Send to Basic" fills. Adds its
    handler to `tools`."""
    settings = engine.settings
    gr.Markdown(
        "Every PNG the app makes carries its recipe: the web UI's `parameters` text and the full recipe as JSON. "
        "Drop one here to see the diffusers script that reproduces it, or paste a web UI infotext."
    )
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.File(label="PNG made by Img2Img Studio", file_types=[".png"], type="filepath")
            infotext = gr.Textbox(
                value="", label="…or a web UI infotext (prompt, Negative prompt:, Steps: …)", lines=4
            )  # value "": optional in the API, /recipe(image) alone works
            with gr.Row():
                read = gr.Button("Read recipe", variant="primary")
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
        """Read the recipe of a PNG made by this app: its parameters, the diffusers script and the JSON.

        Use this to reproduce or explain an image. Also reads an AUTOMATIC1111 web UI infotext.

        Args:
            image: a PNG made by the app (its text chunks carry the recipe).
            infotext: used when no PNG is given: the web UI's parameters text.
        """
        if image:
            found = read_recipe(image)
            text = read_png_text(image).get("parameters", "")
            fields = basic_fields(found, text)
            return _fields_text(fields), script_for(found), found.to_json()
        if not infotext or not infotext.strip():
            raise ValueError("image is required: upload a PNG made by the app, or paste a web UI infotext")
        fields = basic_fields(None, infotext)
        return _fields_text(fields), "", ""

    outputs = [summary, script, recipe_json]
    tools.append(tool_spec(recipe, [image, infotext], outputs))
    read.click(recipe, inputs=[image, infotext], outputs=outputs, api_name="recipe")

    @user_errors
    def send_to_basic(image: str | None, infotext: str):
        found = read_recipe(image) if image else None
        if found is None and not (infotext or "").strip():
            raise ValueError("image is required: upload a PNG made by the app, or paste a web UI infotext")
        fields = basic_fields(found, infotext)
        values = [fields.get(name) for name in ("prompt", "negative_prompt", "model", "strength", "guidance_scale",
                                                "num_inference_steps", "seed")]  # fmt: skip
        return [gr.skip() if value is None else value for value in values] + [gr.Tabs(selected="basic")]

    send.click(
        send_to_basic,
        inputs=[image, infotext],
        outputs=[
            basic.prompt,
            basic.negative_prompt,
            basic.model,
            basic.strength,
            basic.guidance_scale,
            basic.num_inference_steps,
            basic.seed,
            tabs,
        ],
        api_visibility="private",
    )


def _fields_text(fields: dict) -> str:
    return "\n".join(f"{name}: {value!r}" for name, value in fields.items() if value is not None)
