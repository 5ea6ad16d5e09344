"""Inpaint tab: paint over what to change (or upload a mask), and repaint it with a prompt.

The page paints on an image editor; the handler (the /inpaint endpoint and MCP tool) takes the image and its mask
as two files, as API clients send them. The click's first step turns the editor's layers into those two files
(`split_editor`): the background is the image, and whatever was painted, in any colour, is the mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from PIL import Image, ImageChops

from engine.base.images import open_image
from engine.core import Engine
from engine.models.catalog import DEFAULT_MODEL, get_spec, models_for
from engine.pipelines.calls import CancelToken, GenerationCancelled
from engine.workflows.checks import RANDOM_SEED, model_defaults
from engine.workflows.inpaint import (
    MAX_EXPAND,
    MAX_OVERLAP,
    WHOLE_PICTURE,
    InpaintRequest,
    mask_of,
)
from ui.basic import result_text
from ui.components import (
    EXAMPLE_MASKS,
    engine_checked,
    example_mask,
    guidance_slider,
    image_input,
    mask_settings,
    model_picker,
    model_sampling,
    recipe_panel,
    result_gallery,
    result_image,
    run_button,
    seed_row,
    stop_button,
    summary_box,
)
from ui.events import (
    Finished,
    documented,
    gradio_progress,
    user_errors,
    wire_comparison,
    wire_generation,
    wire_recipe_selection,
)
from ui.outputs import download_folder, seed_results

DEFAULT_PROMPT = "a small dog, detailed fur, soft light"

# the outpaint's presets: (left, right, up, down) pixels
EXPAND_PRESETS = {
    "Left 128": (128, 0, 0, 0),
    "Right 128": (0, 128, 0, 0),
    "Up 128": (0, 0, 128, 0),
    "Down 128": (0, 0, 0, 128),
    "All sides 64": (64, 64, 64, 64),
}


def example_rows(engine: Engine) -> list[list]:
    """The examples: a photo in the editor, its prompt, and a black and white mask over the box in the mask
    upload (used since nothing is painted; painting over the photo replaces it)."""
    photos = engine.example_images()
    return [[str(photos[label]), prompt, example_mask(engine, label)] for label, (_, prompt) in EXAMPLE_MASKS.items()]


def model_info() -> str:
    """The model dropdown's info: which models are checkpoints made for inpainting and which are image models that
    inpaint through AutoPipelineForInpainting (from the catalog and the owner's models)."""
    keys = models_for("inpaint")
    dedicated = [key for key in keys if get_spec(key).dedicated_to("inpaint")]
    base = [key for key in keys if key not in dedicated]
    lines = []
    if dedicated:
        named = ", ".join(
            key + (f" (best at strength {defaults.strength})" if (defaults := get_spec(key).defaults) else "")
            for key in dedicated
        )
        lines.append(f"Made for inpainting (the UNet also sees the mask and the masked image): {named}.")
    if base:
        through = "Image models inpainting through AutoPipelineForInpainting on their own weights"
        lines.append(f"{through}: {', '.join(base)}.")
    return " ".join(lines)


@dataclass(frozen=True)
class InpaintTab:
    """The Inpaint tab's components, as its events read and fill them."""

    editor: gr.ImageEditor
    image: gr.Image  # the editor's background, as the handler takes it (hidden)
    mask: gr.Image  # the mask the run gets (hidden): what was painted, else the uploaded one
    mask_upload: gr.Image  # a mask file the person uploads (an example's too)
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    model: gr.Dropdown
    strength: gr.Slider
    guidance_scale: gr.Slider
    num_inference_steps: gr.Slider
    seed: gr.Number
    num_images: gr.Slider
    mask_blur: gr.Slider
    inpaint_area: gr.Dropdown
    padding: gr.Slider
    expand: list  # the outpaint's sides: left, right, up, down
    expand_fill: gr.Dropdown
    overlap: gr.Slider
    color_match: gr.Checkbox
    run: gr.Button
    stop: gr.Button
    gallery: gr.Gallery
    slider: gr.Image
    grid: gr.Image
    summary: gr.Textbox
    code: gr.Code
    files: gr.File
    recipes: gr.State
    last_seed: gr.State

    def api_inputs(self) -> list:
        """The inpaint handler's inputs, in its signature's (and the API's) order."""
        return [
            self.image,
            self.mask,
            self.prompt,
            self.negative_prompt,
            self.model,
            self.strength,
            self.guidance_scale,
            self.num_inference_steps,
            self.seed,
            self.num_images,
            self.mask_blur,
            self.inpaint_area,
            self.padding,
            *self.expand,
            self.expand_fill,
            self.overlap,
            self.color_match,
        ]


def layout(engine: Engine) -> InpaintTab:
    """The Inpaint tab's layout: the image to paint on and the settings on the left, results on the right."""
    settings = engine.settings
    strength0, guidance0, steps0 = model_defaults(DEFAULT_MODEL, settings)
    gr.Markdown(
        "Paint over what should change, say what it should become, and **Inpaint**: the rest of the image is "
        "kept pixel for pixel. **Only masked** repaints the painted part at full detail."
    )
    with gr.Row():
        with gr.Column(scale=1):
            editor = gr.ImageEditor(
                label="Image (paint on it)",
                type="filepath",
                sources=["upload", "clipboard"],
                brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=24),
                eraser=gr.Eraser(default_size=24),
                transforms=(),
                layers=False,
                height=420,
                elem_id="inpaint-editor",
            )
            prompt = gr.Textbox(value=DEFAULT_PROMPT, label="Prompt", lines=2, max_length=settings.max_prompt_chars)
            mask = image_input("Mask (upload)", render=False)
            gr.Examples(
                examples=example_rows(engine),
                inputs=[editor, prompt, mask],
                label="Examples (photos from scikit-image, each with its mask and a prompt)",
                visible_columns=[0, 2],
            )
            with gr.Row():
                run = run_button("Inpaint")
                stop = stop_button()
            negative_prompt = gr.Textbox(value="", label="Negative prompt", max_length=settings.max_prompt_chars)
            model = model_picker("inpaint", DEFAULT_MODEL, info=model_info())
            strength = engine_checked(gr.Slider(0.0, 1.0, value=strength0, step=0.01, label="Strength"))
            with gr.Accordion("Mask and area", open=True):
                inpaint_area, mask_blur, padding = mask_settings()
                color_match = gr.Checkbox(
                    value=False,
                    label="Colour match",
                    info="Bring the repainted part's colours to the image's (the web UI's colour correction): for "
                    "a repaint that came out with a colour cast.",
                )
                gr.Markdown(
                    "A mask file instead of painting: white (or opaque) where to inpaint. Used when nothing is "
                    "painted on the image; the examples fill it.",
                    elem_classes=["hint"],
                )
                mask.render()
            with gr.Accordion("Outpaint: grow the canvas", open=False):
                gr.Markdown(
                    "Pixels to add on each side, at the working size (the image as the model gets it; rounded "
                    "up to the model's multiple). The new area, and **overlap** pixels of the image beside it, are "
                    "painted; a mask is then optional. Strength 1.0 paints the new area from scratch."
                )
                with gr.Row():
                    expand = [
                        engine_checked(gr.Slider(0, MAX_EXPAND, value=0, step=8, label=f"{side.title()}"))
                        for side in ("left", "right", "up", "down")
                    ]
                with gr.Row():
                    expand_fill = engine_checked(
                        gr.Dropdown(
                            ["edge", "noise", "#808080", "#ffffff", "#000000"],
                            value="edge",
                            allow_custom_value=True,
                            label="Fill the new area with",
                            info="its edge pixels drawn out, noise, or a colour (#rrggbb)",
                        )
                    )
                    overlap = engine_checked(gr.Slider(0, MAX_OVERLAP, value=16, step=4, label="Overlap, pixels"))
                presets = gr.Radio(
                    list(EXPAND_PRESETS), value=None, label="Presets", info="Sets the four sides", type="value"
                )
                presets.input(
                    lambda choice: EXPAND_PRESETS.get(choice, (0, 0, 0, 0)),
                    inputs=presets,
                    outputs=expand,
                    queue=False,
                    api_visibility="private",
                )
            with gr.Accordion("Advanced", open=False):
                guidance = guidance_slider(guidance0)
                steps = engine_checked(gr.Slider(1, settings.max_steps, value=steps0, step=1, label="Steps"))
                seed, _, reuse_seed = seed_row()
                num_images = engine_checked(
                    gr.Slider(1, settings.max_images, value=1, step=1, label="Number of images")
                )
            image = image_input("Image", visible=False)
            mask_used = image_input("Mask", visible=False)
        with gr.Column(scale=1):
            gallery = result_gallery("Results", columns=2, height=420, preview=True, elem_id="inpaint-gallery")
            slider = result_image("Before | after: drag to compare", elem_id="inpaint-slider", slider=True)
            grid = result_image("Grid")  # image | mask | results
            summary = summary_box("inpaint-summary")
            code, files = recipe_panel()
    last_seed = gr.State(RANDOM_SEED)
    reuse_seed.click(lambda value: value, inputs=last_seed, outputs=seed, queue=False, api_visibility="private")
    return InpaintTab(
        editor=editor,
        image=image,
        mask=mask_used,
        mask_upload=mask,
        prompt=prompt,
        negative_prompt=negative_prompt,
        model=model,
        strength=strength,
        guidance_scale=guidance,
        num_inference_steps=steps,
        seed=seed,
        num_images=num_images,
        mask_blur=mask_blur,
        inpaint_area=inpaint_area,
        padding=padding,
        expand=expand,
        expand_fill=expand_fill,
        overlap=overlap,
        color_match=color_match,
        run=run,
        stop=stop,
        gallery=gallery,
        slider=slider,
        grid=grid,
        summary=summary,
        code=code,
        files=files,
        recipes=gr.State([]),
        last_seed=last_seed,
    )


def split_editor(engine: Engine) -> Callable:
    """The click's first step: the editor's background as the image, and as the mask its painted strokes (a file
    written for this run) or, with nothing painted, the uploaded mask (or none: an outpaint needs none). The
    upload box itself is never written, so a stroke of one run is not the next run's mask."""
    settings = engine.settings

    @user_errors
    def split(value: dict | None, uploaded: str | None):
        value = value or {}
        background = value.get("background")
        painted: Image.Image | None = None
        for layer in value.get("layers") or ():
            stroke = mask_of(open_image(layer, name="mask", max_input_pixels=settings.max_input_pixels))
            painted = stroke if painted is None else ImageChops.lighter(painted, stroke)
        if painted is None or painted.getbbox() is None:
            return background, uploaded
        path = Path(download_folder(settings)) / "mask.png"
        painted.save(path)
        return background, str(path)

    return split


def handler(engine: Engine) -> Callable:
    """The inpaint handler (the /inpaint endpoint and MCP tool); its defaults are the default model's values."""
    settings = engine.settings
    strength0, guidance0, steps0 = model_defaults(DEFAULT_MODEL, settings)

    @documented(settings)
    @user_errors
    def inpaint(
        image: str | None,
        mask: str | None = None,
        prompt: str = DEFAULT_PROMPT,
        negative_prompt: str = "",
        model: str = DEFAULT_MODEL,
        strength: float = strength0,
        guidance_scale: float = guidance0,
        num_inference_steps: int = steps0,
        seed: int = RANDOM_SEED,
        num_images: int = 1,
        mask_blur: int = 4,
        inpaint_area: str = WHOLE_PICTURE,
        padding: int = 32,
        expand_left: int = 0,
        expand_right: int = 0,
        expand_up: int = 0,
        expand_down: int = 0,
        expand_fill: str = "edge",
        overlap: int = 16,
        color_match: bool = False,
        cancel: CancelToken | None = None,
        progress: gr.Progress = gr.Progress(),
    ):
        """Inpaint (the Inpaint tab): repaint the masked part of an image with a prompt; the rest stays as it was.

        Use this to replace, remove or add something in one region of an image. Returns the result images
        (PNGs carrying their recipe), an [image | mask | results] grid, a summary, the diffusers script that
        reproduces the first image, and downloads (the script, the image and the mask it reads).

        Args:
            image: the image to change.
            mask: white (or opaque, in an image with transparency) where to inpaint, black elsewhere; any size
                (stretched to the image's); optional when outpainting.
            prompt: what the masked part should become (at most $max_prompt_chars characters).
            negative_prompt: what to steer away from (not for FLUX.1).
            model: a model with an inpainting pipeline (sd15, comic-diffusion, pixel-art-style, elden-ring,
                sdxl-base, sd35-medium, flux-schnell, flux-dev).
            strength: in (0, 1]: how much of the masked part is repainted (the default is SD 1.5's; the dedicated
                sd15-inpainting model is made for 1.0).
            guidance_scale: in [0, $max_guidance].
            num_inference_steps: 1 to $max_steps.
            seed: -1 for random, else in [0, 2^32).
            num_images: 1 to $max_images images, from consecutive seeds.
            mask_blur: 0 to 64 pixels of feathered mask edge.
            inpaint_area: Whole picture, or Only masked (the masked part and its padding, repainted at the
                working size and pasted back).
            padding: Only masked: 0 to 256 pixels around the masked part.
            expand_left: Outpaint: 0 to 1024 pixels added on the left (rounded up to the model's multiple).
            expand_right: Outpaint: pixels added on the right.
            expand_up: Outpaint: pixels added at the top.
            expand_down: Outpaint: pixels added at the bottom.
            expand_fill: Outpaint: how the new area starts: edge (its edge pixels drawn out), noise, or #rrggbb.
            overlap: Outpaint: 0 to 128 pixels of the image beside each grown side repainted with it.
            color_match: bring the repainted part's colours to the image's (CIELAB histograms, its lightness kept),
                as the web UI's colour correction does.
        """
        request = InpaintRequest(
            image=image,
            mask=mask,
            prompt=prompt,
            negative_prompt=negative_prompt,
            model=model,
            strength=strength,
            guidance_scale=guidance_scale,
            num_inference_steps=num_inference_steps,
            seed=seed,
            num_images=num_images,
            mask_blur=mask_blur,
            inpaint_area=inpaint_area,
            padding=padding,
            expand_left=expand_left,
            expand_right=expand_right,
            expand_up=expand_up,
            expand_down=expand_down,
            expand_fill=expand_fill,
            overlap=overlap,
            color_match=color_match,
        )
        try:
            (result,) = engine.run(request, progress=gradio_progress(progress, "Inpaint"), cancel=cancel)
        except GenerationCancelled as stopped:
            message = f"Stopped after {stopped.steps_done} denoising step(s); nothing was kept."
            return [], None, message, "", None, gr.skip(), []
        gallery, ids, script, downloads = seed_results(engine, result, result.plan.script_inputs)
        return gallery, result.grid, result_text(result), script, downloads, result.plan.seeds[0], ids

    return inpaint


def build(engine: Engine, tools: list) -> Finished:
    """Lay out the Inpaint tab and wire its events; adds its handler to `tools`."""
    tab = layout(engine)
    outputs = [tab.gallery, tab.grid, tab.summary, tab.code, tab.files, tab.last_seed, tab.recipes]
    done = wire_generation(
        tab.run,
        tab.stop,
        handler(engine),
        inputs=tab.api_inputs(),
        outputs=outputs,
        tools=tools,
        prepare=(split_editor(engine), [tab.editor, tab.mask_upload], [tab.image, tab.mask]),
    )
    wire_comparison(engine, done, tab.recipes, tab.gallery, tab.slider)
    wire_recipe_selection(engine, tab.gallery, tab.recipes, tab.code, tab.files)
    tab.model.input(  # a person picking a model gets its defaults (the dedicated inpainting model: strength 1.0)
        lambda key: model_sampling(key, engine.settings),
        inputs=tab.model,
        outputs=[tab.strength, tab.guidance_scale, tab.num_inference_steps],
        queue=False,
        api_visibility="private",
    )
    return Finished(done, tab.gallery)
