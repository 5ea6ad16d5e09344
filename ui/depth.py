"""Depth tab: a depth map (estimated or uploaded) keeps the layout through ControlNet img2img; a style
model then restyles the result, as in the guide."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from gradio.helpers import Examples  # gr.Examples is a function that makes one

from engine.core import Engine
from engine.models.catalog import DEFAULT_MODEL
from engine.pipelines.calls import CancelToken
from engine.recipes.recipe import Recipe
from engine.workflows.checks import RANDOM_SEED, model_defaults
from engine.workflows.depth import (
    DEFAULT_CANNY_HIGH,
    DEFAULT_CANNY_LOW,
    DEFAULT_CONDITIONING_SCALE,
    DEFAULT_CONTROL_TYPE,
    DEFAULT_ESTIMATOR,
    DEFAULT_PROMPT,
    DEFAULT_RESTYLE,
    MAX_CANNY_THRESHOLD,
    MAX_CONDITIONING_SCALE,
    NO_RESTYLE,
    DepthProgress,
    DepthRequest,
    control_types_for,
    depth_models,
)
from ui.basic import EXAMPLE_PROMPTS
from ui.components import (
    NEGATIVE_INFO,
    STEPS_INFO,
    STRENGTH_INFO,
    engine_checked,
    guidance_slider,
    image_input,
    model_picker,
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
from ui.outputs import png_outputs, recipe_files

CONDITIONING_INFO = (
    "How strongly the depth map steers each step: 0 ignores it, 1 follows it closely. The pipeline's default is 0.8."
)
ESTIMATOR_INFO = "Used when no depth map is uploaded. Zoe and LeReS need their weights from the Hub."
INVERT_INFO = "The depth ControlNet expects near = bright; tick for maps made the other way round."
NORMALIZE_INFO = "Stretch the map's range to black..white (off: 8/16-bit maps are used as they are)."
RESTYLE_INFO = "img2img of the ControlNet result with a style model; 'none' skips it."
RESTYLE_PROMPT_INFO = "Empty: the style's trigger words, then the prompt."
CONDITION_INFO = (
    "What the ControlNet follows: depth (a depth map), canny (the image's edges), scribble (your drawing, uploaded "
    "as the depth map: white lines on black, or black on white, which is inverted) or tile (the image itself). "
    "The list is what the base model has."
)


def condition_choices(model: str, current: str) -> gr.Dropdown:
    """The Condition dropdown for a base model: its family's condition types, keeping the current one if it has it."""
    types = list(control_types_for(model)) or [DEFAULT_CONTROL_TYPE]
    return gr.Dropdown(choices=types, value=current if current in types else DEFAULT_CONTROL_TYPE)


def summary_text(state: DepthProgress) -> str:
    plan = state.plan
    width, height = plan.image.size
    if plan.control_type == "canny":
        depth_line = (
            f"Condition: canny image uploaded, resized to {width}×{height}"
            if plan.condition is not None
            else f"Condition: canny edges, thresholds {plan.canny_low}/{plan.canny_high}"
        )
    elif plan.control_type == "scribble":
        inverted = " (dark lines on light: inverted)" if plan.scribble_inverted else ""
        depth_line = f"Condition: scribble drawing uploaded{inverted}, resized to {width}×{height}"
    elif plan.control_type == "tile":
        depth_line = (
            f"Condition: tile image uploaded, resized to {width}×{height}"
            if plan.condition is not None
            else f"Condition: tile, the image itself at {width}×{height}"
        )
    elif plan.depth is not None:
        depth_line = f"Depth map: uploaded, resized to {width}×{height}"
    else:
        depth_line = f"Depth map: estimated with {plan.estimator.label}"
    if "depth" in state.seconds:
        depth_line += f" ({state.seconds['depth']:.1f}s)"
    lines = [depth_line + "."]
    if state.controlnet is not None:
        lines.append(
            f"ControlNet img2img: seed {plan.seed} · {state.steps[0]} denoising steps · {width}×{height} · "
            f"{state.seconds['controlnet']:.1f}s · {plan.spec.label}"
        )
    restyle = state.restyle_result
    if state.restyled is not None and restyle is not None:
        lines.append(
            f"Restyle: {restyle.plan.spec.label} at strength {restyle.plan.strength:g}, "
            f"guidance {restyle.plan.guidance_scale:g} · {restyle.steps_run} steps · {restyle.seconds:.1f}s"
        )
    if state.stopped:
        lines.append(f"Stopped: {state.stopped}; what was finished is kept.")
    if plan.image.notes:
        lines.append("Input: " + "; ".join(plan.image.notes) + ".")
    return "\n\n".join([*lines, *state.notes])


def gallery_entries(state: DepthProgress) -> tuple[list[tuple], list[tuple]]:
    """(image, recipe, caption) per image, and (recipe, init, inputs) for its script panel."""
    items: list[tuple] = []
    entries: list[tuple] = []
    for image, caption in state.images():
        recipe: Recipe | None = None
        entry: tuple = (None, None)
        if image is state.controlnet:
            recipe = state.controlnet_recipe
            entry = (recipe, state.plan.image.image, {"control.png": state.depth})
        elif image is state.restyled and state.restyle_result is not None:
            recipe = state.restyle_result.recipe
            entry = (recipe, state.controlnet)
        items.append((image, recipe, caption))
        entries.append(entry)
    return items, entries


@dataclass(frozen=True)
class DepthTab:
    """The Depth tab's components, as its events read and fill them."""

    image: gr.Image
    depth_map: gr.Image
    prompt: gr.Textbox
    picks: Examples
    negative_prompt: gr.Textbox
    estimator: gr.Dropdown
    estimate: gr.Button
    invert: gr.Checkbox
    normalize: gr.Checkbox
    strength: gr.Slider
    conditioning: gr.Slider
    restyle_model: gr.Dropdown
    run: gr.Button
    stop: gr.Button
    guidance: gr.Slider
    steps: gr.Slider
    seed: gr.Number
    reuse_seed: gr.Button
    start: gr.Slider
    end: gr.Slider
    guess_mode: gr.Checkbox
    model: gr.Dropdown
    control_type: gr.Dropdown
    canny_low: gr.Slider
    canny_high: gr.Slider
    restyle_prompt: gr.Textbox
    restyle_strength: gr.Slider
    restyle_guidance: gr.Slider
    preview: gr.Image
    grid: gr.Image
    slider: gr.Image
    gallery: gr.Gallery
    summary: gr.Textbox
    code: gr.Code
    downloads: gr.File
    last_seed: gr.State
    recipes: gr.State

    def api_inputs(self) -> list:
        """The depth handler's inputs, in its signature's (and the API's) order."""
        return [
            self.image,
            self.depth_map,
            self.estimator,
            self.prompt,
            self.negative_prompt,
            self.strength,
            self.guidance,
            self.steps,
            self.seed,
            self.conditioning,
            self.restyle_model,
            self.start,
            self.end,
            self.guess_mode,
            self.invert,
            self.normalize,
            self.restyle_prompt,
            self.restyle_strength,
            self.restyle_guidance,
            self.model,
            self.control_type,
            self.canny_low,
            self.canny_high,
        ]


def layout(engine: Engine) -> DepthTab:
    """The Depth tab's layout: inputs on the left, results on the right."""
    settings = engine.settings
    strength0, guidance0, steps0 = model_defaults(DEFAULT_MODEL, settings)
    style_strength0, style_guidance0, _ = model_defaults(DEFAULT_RESTYLE, settings)
    last_seed = gr.State(RANDOM_SEED)
    gr.Markdown(
        "A depth map keeps the image's layout while the prompt changes everything else: near is bright, far "
        "is dark. Upload one, or let an estimator make it; then a style model can restyle the result."
    )
    examples = engine.example_images()
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                image = image_input(height=260)
                depth_map = image_input("Depth map (optional)", height=260)
            gr.Markdown("Leave the depth map empty to estimate it from the image.", elem_classes=["hint"])
            prompt = gr.Textbox(value=DEFAULT_PROMPT, label="Prompt", lines=2, max_length=settings.max_prompt_chars)
            picks = gr.Examples(
                examples=[
                    [str(examples["motorcycle"]), str(engine.example_depth_map()), DEFAULT_PROMPT],
                    [str(examples["astronaut"]), None, EXAMPLE_PROMPTS["astronaut"]],
                ],
                inputs=[image, depth_map, prompt],
                label="Examples: the Middlebury motorcycle with its measured disparity; the astronaut, estimated",
                visible_columns=[0, 1],  # the photo and its depth map; the prompt fills in too (a phone has no room)
            )
            negative_prompt = gr.Textbox(
                value="", label="Negative prompt", info=NEGATIVE_INFO, max_length=settings.max_prompt_chars
            )
            control_type = gr.Dropdown(
                choices=list(control_types_for(DEFAULT_MODEL)),
                value=DEFAULT_CONTROL_TYPE,
                label="Condition",
                info=CONDITION_INFO,
            )
            with gr.Row(visible=False) as canny_row:
                canny_low = engine_checked(
                    gr.Slider(1, MAX_CANNY_THRESHOLD, value=DEFAULT_CANNY_LOW, step=1, label="Canny low threshold")
                )
                canny_high = engine_checked(
                    gr.Slider(1, MAX_CANNY_THRESHOLD, value=DEFAULT_CANNY_HIGH, step=1, label="Canny high threshold")
                )
            control_type.change(
                lambda kind: gr.Row(visible=kind == "canny"),
                inputs=control_type,
                outputs=canny_row,
                queue=False,
                api_visibility="private",
            )
            with gr.Row(equal_height=True):
                estimator = model_picker(
                    "depth", DEFAULT_ESTIMATOR, label="Depth estimator", info=ESTIMATOR_INFO, scale=3
                )
                estimate = gr.Button("Estimate depth", scale=1)
            with gr.Row():
                invert = gr.Checkbox(value=False, label="Invert depth", info=INVERT_INFO)
                normalize = gr.Checkbox(value=True, label="Normalise depth", info=NORMALIZE_INFO)
            strength = engine_checked(
                gr.Slider(0.0, 1.0, value=strength0, step=0.01, label="Strength", info=STRENGTH_INFO)
            )
            conditioning = engine_checked(
                gr.Slider(
                    0.0,
                    MAX_CONDITIONING_SCALE,
                    value=DEFAULT_CONDITIONING_SCALE,
                    step=0.05,
                    label="ControlNet conditioning scale",
                    info=CONDITIONING_INFO,
                )
            )
            restyle_model = model_picker(
                "img2img",
                DEFAULT_RESTYLE,
                label="Restyle with",
                keys=depth_models(),
                extra=[("none (no restyle)", NO_RESTYLE)],
                info=RESTYLE_INFO,
            )
            with gr.Row():
                run = run_button("Generate")
                stop = stop_button()
            with gr.Accordion("Advanced", open=False):
                guidance = guidance_slider(guidance0)
                steps = engine_checked(
                    gr.Slider(1, settings.max_steps, value=steps0, step=1, label="Steps", info=STEPS_INFO)
                )
                seed, _, reuse_seed = seed_row()
                with gr.Row():
                    start = engine_checked(gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Control guidance start"))
                    end = engine_checked(gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Control guidance end"))
                guess_mode = gr.Checkbox(
                    value=False,
                    label="Guess mode",
                    info="The ControlNet reads the depth map without the prompt; works best with guidance 3-5.",
                )
                model = model_picker("img2img", DEFAULT_MODEL, label="Base model", keys=depth_models())
                model.change(
                    condition_choices,
                    inputs=[model, control_type],
                    outputs=control_type,
                    queue=False,
                    api_visibility="private",
                )
                restyle_prompt = gr.Textbox(
                    value="", label="Restyle prompt", info=RESTYLE_PROMPT_INFO, max_length=settings.max_prompt_chars
                )
                with gr.Row():
                    restyle_strength = engine_checked(
                        gr.Slider(0.0, 1.0, value=style_strength0, step=0.01, label="Restyle strength")
                    )
                    restyle_guidance = guidance_slider(style_guidance0, label="Restyle guidance scale", info=None)
        with gr.Column(scale=1):
            preview = result_image("Depth map")  # the map used, near bright
            grid = result_image("Grid", elem_id="depth-grid")  # init | depth / ControlNet | restyled
            slider = result_image("Image | final: drag to compare", elem_id="depth-slider", slider=True)
            gallery = result_gallery("Images", columns=4, height=220, elem_id="depth-images")
            summary = summary_box("depth-summary")
            code, downloads = recipe_panel()
    return DepthTab(
        image=image,
        depth_map=depth_map,
        prompt=prompt,
        picks=picks,
        negative_prompt=negative_prompt,
        estimator=estimator,
        estimate=estimate,
        invert=invert,
        normalize=normalize,
        strength=strength,
        conditioning=conditioning,
        restyle_model=restyle_model,
        run=run,
        stop=stop,
        guidance=guidance,
        steps=steps,
        seed=seed,
        reuse_seed=reuse_seed,
        start=start,
        end=end,
        guess_mode=guess_mode,
        model=model,
        control_type=control_type,
        canny_low=canny_low,
        canny_high=canny_high,
        restyle_prompt=restyle_prompt,
        restyle_strength=restyle_strength,
        restyle_guidance=restyle_guidance,
        preview=preview,
        grid=grid,
        slider=slider,
        gallery=gallery,
        summary=summary,
        code=code,
        downloads=downloads,
        last_seed=last_seed,
        recipes=gr.State([]),
    )


def handlers(engine: Engine) -> tuple[Callable, Callable]:
    """The tab's two handlers (each an API endpoint and an MCP tool): estimate_depth and depth.

    Their signatures are the API: the defaults are the default models' starting values.
    """
    settings = engine.settings
    strength0, guidance0, steps0 = model_defaults(DEFAULT_MODEL, settings)
    # the Restyle sliders' starting values, so a call that leaves them out gives the same image on the Gradio API
    # (whose clients send the sliders' values) and as an MCP tool (which takes the signature's defaults)
    style_strength0, style_guidance0, _ = model_defaults(DEFAULT_RESTYLE, settings)

    @documented(settings)
    @user_errors
    def estimate_depth(
        image: str | None,
        depth_estimator: str = DEFAULT_ESTIMATOR,
        invert_depth: bool = False,
        normalize_depth: bool = True,
        cancel: CancelToken | None = None,
    ):
        """Estimate a depth map of an image (8-bit greyscale at the image's size, near bright).

        Use this to preview or reuse the depth map the depth tool would estimate.

        Args:
            image: the image (PNG/JPEG/WebP).
            depth_estimator: midas (controlnet-aux MiDaS), depth-anything-v2-small (transformers); zoe and
                leres need their weights from the Hugging Face Hub.
            invert_depth: swap near and far.
            normalize_depth: stretch the map to the full 0..255 range.
        """
        return engine.estimate_depth(image, depth_estimator, invert=invert_depth, normalize=normalize_depth)

    @documented(settings)
    @user_errors
    def depth(
        image: str | None,
        depth_map: str | None = None,
        depth_estimator: str = DEFAULT_ESTIMATOR,
        prompt: str = DEFAULT_PROMPT,
        negative_prompt: str = "",
        strength: float = strength0,
        guidance_scale: float = guidance0,
        num_inference_steps: int = steps0,
        seed: int = RANDOM_SEED,
        controlnet_conditioning_scale: float = DEFAULT_CONDITIONING_SCALE,
        restyle_model: str = DEFAULT_RESTYLE,
        control_guidance_start: float = 0.0,
        control_guidance_end: float = 1.0,
        guess_mode: bool = False,
        invert_depth: bool = False,
        normalize_depth: bool = True,
        restyle_prompt: str = "",
        restyle_strength: float | None = style_strength0,
        restyle_guidance_scale: float | None = style_guidance0,
        model: str = DEFAULT_MODEL,
        control_type: str = DEFAULT_CONTROL_TYPE,
        canny_low: int = DEFAULT_CANNY_LOW,
        canny_high: int = DEFAULT_CANNY_HIGH,
        cancel: CancelToken | None = None,
        progress: gr.Progress = gr.Progress(),
    ):
        """ControlNet depth (the Depth tab): keep an image's layout through a depth map, then restyle it.

        Use this to change what an image shows while keeping its shapes. Returns the guide's grid
        [init, depth, ControlNet result, restyled], each image as PNG, the depth map used, a summary
        and the script of the last image.

        Args:
            image: the init image.
            depth_map: a depth map (8/16-bit, grey or RGB, any size; near bright), or empty to estimate one; with
                control_type canny or tile, the condition image, or empty for the image's edges or the image; with
                scribble, the drawing (required).
            depth_estimator: midas or depth-anything-v2-small (zoe, leres in hub mode); used when depth_map is empty.
            prompt: what the image should become (at most $max_prompt_chars characters).
            negative_prompt: what to steer away from.
            strength: in (0, 1].
            guidance_scale: in [0, $max_guidance].
            num_inference_steps: 1 to $max_steps (the restyle uses it too).
            seed: -1 for random, else in [0, 2^32).
            controlnet_conditioning_scale: in [0, 2]; how strongly the depth map steers (0.8 by default).
            restyle_model: an SD 1.5 catalog key (elden-ring, comic-diffusion, pixel-art-style, sd15) or none.
            control_guidance_start: share of the steps before the ControlNet starts, in [0, 1).
            control_guidance_end: share of the steps after which it stops, in (0, 1].
            guess_mode: the ControlNet reads the map without the prompt.
            invert_depth: swap near and far in the map.
            normalize_depth: stretch the map to the full range.
            restyle_prompt: empty for the style's trigger words, then the prompt.
            restyle_strength: the restyle's strength (the default is elden-ring's own; null: the style model's own).
            restyle_guidance_scale: the restyle's guidance (the default is elden-ring's; null: the style model's own).
            model: the SD 1.5 base model for the ControlNet (sd15 by default).
            control_type: the condition the ControlNet follows: depth (the default), canny (the image's Canny
                edges), scribble (the drawing uploaded as depth_map, required: white lines on black; a drawing of
                dark lines on light is inverted) or tile (the image itself); with depth_map set, canny and tile use
                that image as the condition as it is. sdxl-base has depth only.
            canny_low: Canny's lower hysteresis threshold, 1 to 255, below canny_high (100 by default).
            canny_high: Canny's upper hysteresis threshold, 1 to 255 (200 by default).
        """
        request = DepthRequest(
            image=image,
            depth_map=depth_map,
            depth_estimator=depth_estimator,
            prompt=prompt,
            negative_prompt=negative_prompt,
            strength=strength,
            guidance_scale=guidance_scale,
            num_inference_steps=num_inference_steps,
            seed=seed,
            controlnet_conditioning_scale=controlnet_conditioning_scale,
            restyle_model=restyle_model,
            control_guidance_start=control_guidance_start,
            control_guidance_end=control_guidance_end,
            guess_mode=guess_mode,
            invert_depth=invert_depth,
            normalize_depth=normalize_depth,
            restyle_prompt=restyle_prompt or None,
            restyle_strength=restyle_strength,
            restyle_guidance_scale=restyle_guidance_scale,
            model=model,
            control_type=control_type,
            canny_low=canny_low,
            canny_high=canny_high,
        )
        plan = engine.plan(request)
        gallery: list[tuple[str, str]] = []  # each image's PNG is written once
        for state in engine.depth(plan, progress=gradio_progress(progress, "ControlNet depth"), cancel=cancel):
            items, entries = gallery_entries(state)
            ids = [engine.results.put(*entry) for entry in entries]
            gallery += png_outputs(settings, items[len(gallery) :], ids[len(gallery) :])
            script, files = recipe_files(settings, *entries[-1]) if state.finished else ("", None)
            yield state.grid(), gallery, state.depth, summary_text(state), script, files, ids, plan.seed

    return estimate_depth, depth


def restyle_defaults(key: str, settings) -> tuple:
    """A chosen restyle model's strength and guidance, for its sliders (unchanged for "none")."""
    try:
        strength_value, guidance_value, _ = model_defaults(key, settings)
    except ValueError:  # "none" or a typed key: Generate names any problem
        return gr.skip(), gr.skip()
    return strength_value, guidance_value


def build(engine: Engine, tools: list) -> Finished:
    """Lay out the Depth tab and wire its events; adds its handlers to `tools`."""
    tab = layout(engine)
    estimate_depth, depth = handlers(engine)
    tab.restyle_model.input(
        lambda key: restyle_defaults(key, engine.settings),
        inputs=tab.restyle_model,
        outputs=[tab.restyle_strength, tab.restyle_guidance],
        queue=False,
        api_visibility="private",
    )
    wire_generation(
        tab.estimate,
        None,
        estimate_depth,
        inputs=[tab.image, tab.estimator, tab.invert, tab.normalize],
        outputs=tab.preview,
        tools=tools,
    )
    outputs = [tab.grid, tab.gallery, tab.preview, tab.summary, tab.code, tab.downloads, tab.recipes, tab.last_seed]
    done = wire_generation(tab.run, tab.stop, depth, inputs=tab.api_inputs(), outputs=outputs, tools=tools)
    wire_recipe_selection(engine, tab.gallery, tab.recipes, tab.code, tab.downloads)
    wire_comparison(engine, done, tab.recipes, tab.gallery, tab.slider, last=True)
    tab.reuse_seed.click(
        lambda value: value, inputs=tab.last_seed, outputs=tab.seed, queue=False, api_visibility="private"
    )
    return Finished(done, tab.gallery)
