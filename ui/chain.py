"""Chain tab: the guide's three chains as presets, and a builder of up to five stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
from gradio.helpers import Examples  # gr.Examples is a function that makes one

from engine.core import Engine
from engine.pipelines.calls import CancelToken
from engine.pipelines.live import LivePreview
from engine.workflows.chain import DEFAULT_SUBJECT, PRESET_NOTES, PRESETS, ChainProgress, ChainRequest, stages_json
from engine.workflows.checks import MAX_SIDE, RANDOM_SEED
from engine.workflows.registry import reads_files
from ui.components import (
    EXAMPLE_MASKS,
    engine_checked,
    example_mask,
    header_only,
    image_input,
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
    live_images,
    user_errors,
    warning_text,
    watched,
    wire_comparison,
    wire_generation,
    wire_preview,
    wire_recipe_selection,
)
from ui.outputs import png_outputs, recipe_files

DEFAULT_PRESET = "image-image-image"
STAGES_INFO = (
    "JSON list, one object per stage: model (catalog key), prompt ({subject} is replaced), and optionally "
    "kind (text2img, img2img, upscale, inpaint), strength, guidance_scale, num_inference_steps, negative_prompt, "
    "mask_blur (an inpaint stage's). Used when the preset is empty; editing a preset's stages switches to custom."
)


def chain_request(image, preset, prompt, seed, stages="", width=512, height=512, latent_handover=True, mask=None):
    return ChainRequest(
        mask=mask,
        image=image,
        preset=preset or None,
        prompt=prompt,
        seed=seed,
        stages=stages or None,
        width=width,
        height=height,
        latent_handover=latent_handover,
    )


def plan_text(
    engine: Engine, image, preset, prompt, seed, stages="", width=512, height=512, latent_handover=True, mask=None
) -> str:
    """The plan, or what is wrong, before running; the image and the mask read from their headers only."""
    try:
        options = (preset, prompt, seed, stages, width, height, latent_handover)
        return engine.describe(engine.plan(chain_request(header_only(image), *options, mask=header_only(mask))))
    except ValueError as exc:
        return warning_text(exc)


def script_inputs(plan, recipe) -> dict:
    """The images a stage's script reads besides the init: the chain's mask once a stage up to it inpaints."""
    return {name: image for name, image in plan.script_inputs.items() if name in reads_files(recipe)}


def strip(state: ChainProgress) -> list[tuple]:
    """(image, recipe, caption) for every stage's output, saying what it hands on."""
    items = []
    for result in state.results:
        if result.image is None:
            continue
        passes = f" → {result.passes}" if result.passes else " (final)"
        w, h = result.image.size
        items.append((result.image, result.recipe, f"{result.stage.label}{passes} · {w}×{h}"))
    return items


def summary_text(state: ChainProgress) -> str:
    lines = []
    for result in state.results:
        stage = result.stage
        into = f", received {stage.receives}" if stage.receives else ""
        lines.append(f"{stage.label}{into}: {result.steps} steps, {result.seconds:.1f}s")
    if state.stopped:
        lines.append(f"Stopped: {state.stopped}; the finished stages are kept.")
    elif state.failed:
        lines.append(f"⚠️ {state.failed}. The finished stages are kept: select one for its script.")
    elif state.finished and state.final is not None:
        lines.append(f"Done: seed {state.plan.seed}, final {state.final.width}×{state.final.height}.")
    return "\n\n".join([*lines, *state.notes])


@dataclass(frozen=True)
class ChainTab:
    """The Chain tab's components, as its events read and fill them."""

    image: gr.Image
    preset: gr.Dropdown
    prompt: gr.Textbox
    picks: Examples
    plan: gr.Markdown
    run: gr.Button
    stop: gr.Button
    stages: gr.Code
    seed: gr.Number
    width: gr.Slider
    height: gr.Slider
    latent_handover: gr.Checkbox
    gallery: gr.Gallery
    final: gr.Image
    slider: gr.Image
    comparison: gr.Image
    summary: gr.Textbox
    code: gr.Code
    recipe_downloads: gr.File
    recipes: gr.State
    mask: gr.Image

    def api_inputs(self) -> list:
        """The chain handler's inputs, in its signature's (and the API's) order."""
        return [
            self.image,
            self.preset,
            self.prompt,
            self.seed,
            self.stages,
            self.width,
            self.height,
            self.latent_handover,
            self.mask,
        ]


def layout(engine: Engine) -> ChainTab:
    """The Chain tab's layout: image, preset and stages on the left, the stages' results on the right."""
    settings = engine.settings
    gr.Markdown(
        "Run pipelines one after another. Stages of one latent family pass **latents** "
        '(`output_type="latent"`), saving a decode and an encode; others pass a decoded **image**.'
    )
    examples = engine.example_images()
    with gr.Row():
        with gr.Column(scale=1):
            image = image_input(height=280)
            preset = gr.Dropdown(
                [("custom (stages below)", ""), *[(name, name) for name in PRESETS]],
                value=DEFAULT_PRESET,
                label="Preset",
                info=PRESET_NOTES[DEFAULT_PRESET],
                allow_custom_value=True,  # the engine answers an unknown preset with the list
            )
            prompt = gr.Textbox(value=DEFAULT_SUBJECT, label="Subject", lines=2, max_length=settings.max_prompt_chars)
            mask = image_input("Mask (white where to inpaint)", height=200, render=False)
            picks = gr.Examples(
                examples=[
                    [str(examples["astronaut"]), "image-image-image", DEFAULT_SUBJECT, None],
                    [str(examples["astronaut, 64 px"]), "image-upscale-superres", DEFAULT_SUBJECT, None],
                    [None, "text-image-image", DEFAULT_SUBJECT, None],
                    [
                        str(examples["coffee"]),
                        "image-inpaint",
                        EXAMPLE_MASKS["coffee"][1],
                        example_mask(engine, "coffee"),
                    ],
                ],
                inputs=[image, preset, prompt, mask],
                label="Examples: the guide's three chains, and a restyle then an inpaint (with its mask)",
                visible_columns=[0, 1],
            )
            plan = gr.Markdown()
            with gr.Row():
                run = run_button("Run chain")
                stop = stop_button()
            with gr.Accordion("Stages and options", open=False):
                stages = gr.Code(
                    value=stages_json(DEFAULT_PRESET, engine.settings), language="json", label="Stages", lines=12
                )
                gr.Markdown(STAGES_INFO)
                seed, _, _ = seed_row()
                with gr.Row():
                    width = engine_checked(
                        gr.Slider(settings.min_side, MAX_SIDE, value=512, step=8, label="Width (text-to-image start)")
                    )
                    height = engine_checked(gr.Slider(settings.min_side, MAX_SIDE, value=512, step=8, label="Height"))
                latent_handover = gr.Checkbox(
                    value=True,
                    label="Pass latents between stages of one latent family",
                    info="Untick to decode and re-encode at every hand-over, and compare.",
                )
            with gr.Accordion("Mask, for inpaint stages", open=False):
                gr.Markdown(
                    "White where an inpaint stage repaints (any size: stretched to each stage's input), as the "
                    "image-inpaint and inpaint-upscale presets need; paint one in the Inpaint tab and download its "
                    "mask.png.",
                    elem_classes=["hint"],
                )
                mask.render()
        with gr.Column(scale=1):
            gallery = result_gallery("Stages", columns=3, height=300, elem_id="chain-stages")
            final = result_image("Final", elem_id="chain-final", type="filepath")
            slider = result_image("Init | final: drag to compare", elem_id="chain-slider", slider=True)
            comparison = result_image("Comparison", visible=False)  # init | final, for the API; the page slides
            gr.Markdown(
                'How to read it: the stages from left to right; "→ latent" means the next stage received '
                'latents (no decode in between), "→ image" a decoded picture. Select a stage for its code.',
                elem_classes=["hint"],
            )
            summary = summary_box("chain-summary")
            code, recipe_downloads = recipe_panel()
    return ChainTab(
        image=image,
        preset=preset,
        prompt=prompt,
        picks=picks,
        plan=plan,
        run=run,
        stop=stop,
        stages=stages,
        seed=seed,
        width=width,
        height=height,
        latent_handover=latent_handover,
        gallery=gallery,
        final=final,
        slider=slider,
        comparison=comparison,
        summary=summary,
        code=code,
        recipe_downloads=recipe_downloads,
        recipes=gr.State([]),
        mask=mask,
    )


def handler(engine: Engine) -> Callable:
    """The chain handler (the /chain endpoint and MCP tool)."""
    settings = engine.settings
    default_stages = stages_json(DEFAULT_PRESET, settings)  # as the page and the Gradio API's clients send it

    @documented(settings)
    @user_errors
    def chain(
        image: str | None = None,
        preset: str = DEFAULT_PRESET,
        prompt: str = DEFAULT_SUBJECT,
        seed: int = RANDOM_SEED,
        stages: str = default_stages,  # the Stages box's starting value (used only when preset is empty)
        width: int = 512,
        height: int = 512,
        latent_handover: bool = True,
        mask: str | None = None,
        cancel: CancelToken | None = None,
        live: bool = False,
        progress: gr.Progress = gr.Progress(),
    ):
        """Chained pipelines (the Chain tab): text-to-image, img2img, inpaint, edit or upscale stages in a row.

        Use this for the guide's chains: text-image-image (SD 1.5 then Kandinsky 2.2),
        image-image-image (SD 1.5, Comic-Diffusion, pixel-art-style, passing latents) or
        image-upscale-superres (SD 1.5, x2 latent upscaler, x4 upscaler: 8x the side); and with a mask,
        image-inpaint (restyle, then repaint the masked part) or inpaint-upscale (repaint, then 4x); image-edit
        (restyle, then an instruction edit) or edit-image (edit, then restyle). Returns each
        stage's image, the final image, [init | final], a summary naming each hand-over, and the script.

        Args:
            image: the init image (not used, and may be empty, when the first stage is text-to-image).
            preset: text-image-image, image-image-image, image-upscale-superres, image-inpaint, inpaint-upscale,
                image-edit, edit-image, or empty to use stages.
            prompt: the subject; each preset stage adds its style's trigger words.
            seed: -1 for random, else in [0, 2^32); every stage uses it.
            stages: JSON list of at most $max_chain_stages stages, used when preset is empty:
                [{"model": "sd15", "kind": "img2img", "strength": 0.6, "prompt": "{subject}, ..."}, ...].
            width: width of a text-to-image first stage ($min_side to $max_side; the working size caps the image).
            height: height of a text-to-image first stage ($min_side to $max_side).
            latent_handover: pass latents between stages of one latent family instead of decoding.
            mask: a black and white image, white where inpaint stages repaint (any size: stretched to each one's
                input); needed when a stage inpaints, refused when none does.
        """
        request = chain_request(image, preset, prompt, seed, stages, width, height, latent_handover, mask)
        plan = engine.plan(request)

        def report(done: int, total: int) -> None:
            progress((done, total), desc=f"Chain: {len(plan.stages)} stages", unit="steps")

        init = plan.init.image if plan.init is not None else None
        gallery: list[tuple[str, str]] = []  # each stage's PNG is written once
        ids: list[str] = []
        for item in watched(
            lambda live_preview: engine.chain(plan, progress=report, cancel=cancel, live_preview=live_preview),
            live=live,
            cancel=cancel,
        ):
            if isinstance(item, LivePreview):  # the page watches: the running stage after the finished ones
                running = [
                    (image, f"stage {place + 1}: live preview, step {item.step} of {item.steps}")
                    for place, image in live_images(item)
                ]
                yield [*gallery, *running], gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), ids
                continue
            state = item
            items = strip(state)
            ids = [engine.results.put(recipe, init, script_inputs(plan, recipe)) for _, recipe, _ in items]
            gallery += png_outputs(settings, items[len(gallery) :], ids[len(gallery) :])
            final_png = gallery[-1][0] if state.finished else None
            # at the end (done, stopped or a later stage failed): the script of the last stage made
            ended = state.finished or state.stopped is not None or state.failed is not None
            script, downloads = (
                recipe_files(settings, items[-1][1], init, script_inputs(plan, items[-1][1]))
                if ended and items
                else ("", None)
            )
            yield gallery, final_png, state.comparison(), summary_text(state), script, downloads, ids

    return chain


def preset_chosen(name: str, settings) -> tuple:
    """A preset fills the stages and says what it does; none ("custom") keeps the stages."""
    if not name:
        return gr.skip(), gr.Dropdown(info="Custom: the stages below are run.")
    return stages_json(name, settings), gr.Dropdown(info=PRESET_NOTES[name])


def build(engine: Engine, tools: list) -> Finished:
    """Lay out the Chain tab and wire its events; adds its handler to `tools`."""
    tab = layout(engine)
    inputs = tab.api_inputs()
    wire_preview(inputs, lambda *values: plan_text(engine, *values), tab.plan)
    tab.preset.change(
        lambda name: preset_chosen(name, engine.settings),
        inputs=tab.preset,
        outputs=[tab.stages, tab.preset],
        queue=False,
        api_visibility="private",
    )
    tab.stages.input(lambda _: "", inputs=tab.stages, outputs=tab.preset, queue=False, api_visibility="private")
    wire_recipe_selection(engine, tab.gallery, tab.recipes, tab.code, tab.recipe_downloads)
    outputs = [tab.gallery, tab.final, tab.comparison, tab.summary, tab.code, tab.recipe_downloads, tab.recipes]
    done = wire_generation(
        tab.run, tab.stop, handler(engine), inputs=inputs, outputs=outputs, tools=tools, live_output=tab.gallery
    )
    wire_comparison(engine, done, tab.recipes, tab.gallery, tab.slider, last=True)
    return Finished(done, tab.gallery)
