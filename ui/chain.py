"""Chain tab: the guide's three chains as presets, and a builder of up to five stages."""

from __future__ import annotations

import gradio as gr

from engine.chain import DEFAULT_SUBJECT, PRESET_NOTES, PRESETS, ChainProgress, ChainRequest, stages_json
from engine.core import Engine
from engine.run import CancelToken
from ui.widgets import (
    engine_checked,
    image_input,
    png_outputs,
    recipe_files,
    recipe_panel,
    seed_row,
    user_errors,
    warning_text,
    wire_generation,
    wire_preview,
    wire_recipe_selection,
)

DEFAULT_PRESET = "image-image-image"
STAGES_INFO = (
    "JSON list, one object per stage: model (catalog key), prompt ({subject} is replaced), and optionally "
    "kind (text2img, img2img, upscale), strength, guidance_scale, num_inference_steps, negative_prompt. "
    "Used when the preset is empty; editing a preset's stages switches to custom."
)


def chain_request(image, preset, prompt, seed, stages="", width=512, height=512, latent_handover=True):
    return ChainRequest(
        image=image,
        preset=preset or None,
        prompt=prompt,
        seed=seed,
        stages=stages or None,
        width=width,
        height=height,
        latent_handover=latent_handover,
    )


def plan_text(engine: Engine, *values) -> str:
    try:
        return engine.plan_chain(chain_request(*values)).describe()
    except ValueError as exc:
        return warning_text(exc)


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
    elif state.finished:
        lines.append(f"Done: seed {state.plan.seed}, final {state.final.width}×{state.final.height}.")
    return "\n\n".join([*lines, *state.notes])


def build(engine: Engine) -> None:
    """Lay out the Chain tab and wire its events."""
    settings = engine.settings
    gr.Markdown(
        "Run pipelines one after another. Stages of one latent family pass **latents** "
        '(`output_type="latent"`), saving a decode and an encode; others pass a decoded **image**.'
    )
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
            plan = gr.Markdown()
            with gr.Row():
                run = gr.Button("Run chain", variant="primary", scale=3)
                stop = gr.Button("Stop", variant="stop", scale=1)
            with gr.Accordion("Stages and options", open=False):
                stages = gr.Code(value=stages_json(DEFAULT_PRESET), language="json", label="Stages", lines=12)
                gr.Markdown(STAGES_INFO)
                seed, _, _ = seed_row()
                with gr.Row():
                    width = engine_checked(gr.Slider(64, 1024, value=512, step=8, label="Width (text-to-image start)"))
                    height = engine_checked(gr.Slider(64, 1024, value=512, step=8, label="Height"))
                latent_handover = gr.Checkbox(
                    value=True,
                    label="Pass latents between stages of one latent family",
                    info="Untick to decode and re-encode at every hand-over, and compare.",
                )
        with gr.Column(scale=1):
            gallery = gr.Gallery(label="Stages", format="png", columns=3, height=300)
            final = gr.Image(label="Final", format="png", type="filepath", interactive=False)
            comparison = gr.Image(label="Init | final", format="png", type="pil", interactive=False)
            summary = gr.Markdown(label="summary")
            code, recipe_downloads = recipe_panel()
    recipes = gr.State([])

    examples = engine.example_images()
    gr.Examples(
        examples=[
            [str(examples["astronaut"]), "image-image-image", DEFAULT_SUBJECT],
            [str(examples["astronaut, 64 px"]), "image-upscale-superres", DEFAULT_SUBJECT],
            [None, "text-image-image", DEFAULT_SUBJECT],
        ],
        inputs=[image, preset, prompt],
        label="Examples: the guide's three chains",
    )

    @user_errors
    def chain(
        image: str | None,
        preset: str,
        prompt: str,
        seed: float,
        stages: str = "",
        width: float = 512,
        height: float = 512,
        latent_handover: bool = True,
        cancel: CancelToken | None = None,
        progress: gr.Progress = gr.Progress(),
    ):
        """Run a chain; yields each stage's image as it finishes, the final image and [init | final].

        Args:
            image: the init image (not used when the first stage is text-to-image).
            preset: text-image-image, image-image-image, image-upscale-superres, or empty for `stages`.
            prompt: the subject; each preset stage adds its style's trigger words.
            seed: -1 for random; every stage uses it.
            stages: JSON list of stages, used when preset is empty (at most 5).
            width, height: size of a text-to-image first stage.
            latent_handover: pass latents where the latent families match.
        """
        request = chain_request(image, preset, prompt, seed, stages, width, height, latent_handover)
        plan = engine.plan_chain(request)

        def report(done: int, total: int) -> None:
            progress((done, total), desc=f"Chain: {len(plan.stages)} stages", unit="steps")

        init = plan.init.image if plan.init is not None else None
        gallery: list[tuple[str, str]] = []  # each stage's PNG is written once
        for state in engine.chain(plan, progress=report, cancel=cancel):
            items = strip(state)
            gallery += png_outputs(settings, items[len(gallery) :])
            entries = [(recipe, init) for _, recipe, _ in items]
            final_png = gallery[-1][0] if state.finished else None
            script, downloads = recipe_files(entries[-1][0], init) if state.finished else ("", None)
            yield gallery, final_png, state.comparison(), summary_text(state), script, downloads, entries

    plan_inputs = [image, preset, prompt, seed, stages, width, height, latent_handover]
    wire_preview(plan_inputs, lambda *values: plan_text(engine, *values), plan)

    def on_preset(name: str):
        if not name:
            return gr.skip(), gr.Dropdown(info="Custom: the stages below are run.")
        return stages_json(name), gr.Dropdown(info=PRESET_NOTES[name])

    preset.change(on_preset, inputs=preset, outputs=[stages, preset], queue=False, api_visibility="private")
    stages.input(lambda _: "", inputs=stages, outputs=preset, queue=False, api_visibility="private")
    wire_recipe_selection(gallery, recipes, code, recipe_downloads)
    wire_generation(
        run,
        stop,
        chain,
        inputs=plan_inputs,
        outputs=[gallery, final, comparison, summary, code, recipe_downloads, recipes],
        api_name="chain",
    )
