"""Basic tab: an init image and a prompt through AutoPipelineForImage2Image, as in the guide."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import gradio as gr
from gradio.helpers import Examples  # gr.Examples is a function that makes one
from PIL import Image

from engine.base.images import fit_size, probe_size
from engine.core import Engine
from engine.models.catalog import DEFAULT_MODEL, get_spec
from engine.models.loras import text as lora_text
from engine.pipelines.calls import CancelToken, GenerationCancelled
from engine.pipelines.live import LivePreview
from engine.pipelines.schedulers import check_scheduler, steps_run, steps_text
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.checks import (
    FOLLOW_INPUT,
    MAX_SCALE,
    MAX_SIDE,
    MIN_SCALE,
    OUTPUT_SIZES,
    RANDOM_SEED,
    RESIZE_MODES,
    RESIZE_TO,
    check_output_size,
    check_sampling,
    model_defaults,
)
from engine.workflows.shape import GpuWork
from ui.components import (
    GenerationInputs,
    advanced_inputs,
    engine_checked,
    main_inputs,
    prompt_inputs,
    recipe_panel,
    result_gallery,
    result_image,
    run_button,
    sampling_inputs,
    stop_button,
    summary_box,
)
from ui.events import (
    Finished,
    documented,
    gradio_progress,
    live_images,
    user_errors,
    warning_text,
    watched,
    wire_comparison,
    wire_generation,
    wire_preview,
    wire_recipe_selection,
)
from ui.outputs import seed_results

EXAMPLE_PROMPTS = {
    "chelsea the cat": "cat wizard, gandalf, lord of the rings, detailed, fantasy, cute, adorable, Pixar, Disney, 8k",
    "astronaut": "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k",
    "coffee": "a cup of coffee on a wooden table, watercolor painting, soft pastel colors",
}


def plan_text(
    engine: Engine,
    image: str | None,
    model: str,
    strength: float,
    steps: float,
    scheduler: str | None = None,
    output_size: str = FOLLOW_INPUT,
    width: float = 512,
    height: float = 512,
    scale_by: float = 1.0,
    resize_mode: str = RESIZE_MODES[0],
) -> str:
    """What a run will do, shown before it starts: denoising steps (as the progress bar will count them)
    and output size (the engine's own rounding and checks, from the image's header alone)."""
    try:
        spec = get_spec(model)
        lines = []
        if strength is not None and steps is not None:
            # the engine's own checks, so the plan says what the run would (strength 5 is an error, not a clamp)
            asked = SimpleNamespace(strength=strength, guidance_scale=None, num_inference_steps=steps)
            strength, _, steps = check_sampling(spec, engine.settings, asked)
            lines.append(steps_text(model, steps, strength, check_scheduler(scheduler, model)))
        settings = engine.settings
        output = check_output_size(output_size, width, height, scale_by, resize_mode, spec, settings)
        if image:
            original = probe_size(image, name="image", max_input_pixels=settings.max_input_pixels)
            size = fit_size(
                original,
                multiple=spec.size_multiple,
                max_pixels=settings.working_pixels,
                min_side=settings.min_side,
            )
            how = ""
            if output is not None:
                size = output.size_for(original)
                how = f"{output.describe(original)}, "
            lines.append(f"Output **{size[0]}×{size[1]}** ({how}input {original[0]}×{original[1]}).")
            if strength is not None and steps is not None:
                run = steps_run(model, steps, strength, check_scheduler(scheduler, model))
                lines.append(engine.wait_text([GpuWork(spec.key, run, size[0] * size[1])]))
        elif output is not None and output.choice == RESIZE_TO:
            size = output.size_for((output.width, output.height))
            lines.append(f"Output **{size[0]}×{size[1]}** ({output.describe(None)}).")
        return " ".join(line for line in lines if line)
    except ValueError as exc:
        return warning_text(exc)


def result_text(result) -> str:
    """The facts of a finished run, in one short paragraph."""
    plan = result.plan
    seeds = plan.seeds
    seed_text = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
    lines = [
        f"Seed {seed_text} · {result.steps_run} denoising steps · "
        f"{plan.image.size[0]}×{plan.image.size[1]} · {result.seconds:.1f}s · {plan.spec.label}"
        + (f" · LoRAs {lora_text(plan.loras)}" if plan.loras else "")
    ]
    if plan.image.notes:
        lines.append("Input: " + "; ".join(plan.image.notes) + ".")
    flagged = [seed for seed, flag in zip(seeds, result.nsfw, strict=False) if flag]
    if flagged:
        listed = ", ".join(str(seed) for seed in flagged)
        lines.append(
            f"The safety checker flagged {len(flagged)} image(s) (seed {listed}); they are not shown. "
            "Try another seed or prompt."
        )
    lines.extend(result.notes)
    return "\n\n".join(lines)


@dataclass(frozen=True)
class BasicTab:
    """The Basic tab's components, as its events read and fill them (`inputs.summary` is its summary)."""

    inputs: GenerationInputs
    picks: Examples
    plan: gr.Markdown
    generate: gr.Button
    stop: gr.Button
    num_images: gr.Slider
    output_size: gr.Radio
    width: gr.Slider
    height: gr.Slider
    scale_by: gr.Slider
    resize_mode: gr.Radio
    gallery: gr.Gallery
    slider: gr.Image
    grid: gr.Image
    code: gr.Code
    files: gr.File
    recipes: gr.State
    last_seed: gr.State

    def api_inputs(self) -> list:
        """The img2img handler's inputs, in its signature's (and the API's) order."""
        inputs = self.inputs
        return [
            *inputs.api_inputs(),
            self.num_images,
            inputs.weighted_prompt,
            inputs.scheduler,
            inputs.loras,
            *self.size_inputs(),
        ]

    def size_inputs(self) -> list:
        """The output size's inputs, in the handler's order (the last of its arguments)."""
        return [self.output_size, self.width, self.height, self.scale_by, self.resize_mode]


def layout(engine: Engine) -> BasicTab:
    """The Basic tab's layout: image, prompt and settings on the left, results on the right."""
    default_model = DEFAULT_MODEL
    settings = engine.settings
    strength0, _, steps0 = model_defaults(default_model, settings)

    gr.Markdown(
        "Start from an image and a prompt. **Strength** decides how much of the image survives; "
        "**guidance** how literally the prompt is followed."
    )
    examples = engine.example_images()
    with gr.Row():
        with gr.Column(scale=1):
            # what a first visit needs is above the fold: the image, the prompt, examples of both, Generate and
            # what it will do; the examples show their photos only (a row of thumbnails, whole on a phone too)
            top = prompt_inputs(settings)
            picks = gr.Examples(
                examples=[[str(examples[label]), prompt] for label, prompt in EXAMPLE_PROMPTS.items()],
                inputs=list(top),
                label="Examples (photos from scikit-image, each with a prompt)",
                visible_columns=[0],
            )
            with gr.Row():
                generate = run_button("Generate")
                stop = stop_button()
            plan = gr.Markdown(plan_text(engine, None, default_model, strength0, steps0))
            inputs = main_inputs(settings, default_model, top=top)
            sampling_inputs(inputs, settings, default_model)  # the tab's first sentence names guidance
            with gr.Accordion("Advanced", open=False):
                advanced_inputs(inputs, settings, default_model)
                num_images = engine_checked(
                    gr.Slider(1, settings.max_images, value=1, step=1, label="Number of images")
                )
                size = size_inputs(settings)
                inputs.output = size  # the Recipe and History tabs' Send to Basic fills them
        with gr.Column(scale=1):
            gallery = result_gallery("Results", columns=2, height=420, preview=True, elem_id="basic-gallery")
            slider = result_image("Init | result: drag to compare", elem_id="basic-slider", slider=True)
            gr.Markdown(
                "How to read it: at low strength the result keeps the photo's shapes and colours; towards 1 the "
                "prompt takes over. Higher guidance follows the prompt more literally, with harsher colours past "
                "about 12. Select a result for the code that makes it.",
                elem_classes=["hint"],
            )
            grid = result_image("Comparison")  # init | results
            inputs.summary = summary_box("basic-summary")
            code, files = recipe_panel()
    return BasicTab(
        inputs=inputs,
        picks=picks,
        plan=plan,
        generate=generate,
        stop=stop,
        num_images=num_images,
        **size,
        gallery=gallery,
        slider=slider,
        grid=grid,
        code=code,
        files=files,
        recipes=gr.State([]),
        last_seed=gr.State(RANDOM_SEED),
    )


def size_inputs(settings, tab: str = "basic") -> dict:
    """The output size's controls (the web UI's "Resize to" / "Resize by" and its resize modes); the width, height
    and scale show for the choice that reads them. `tab` prefixes their element ids."""
    output_size = engine_checked(
        gr.Dropdown(
            list(OUTPUT_SIZES),
            value=FOLLOW_INPUT,
            label="Output size",
            info="The input's own size, a width x height, or a scale of the input (rounded to the model's multiple)",
            elem_id=f"{tab}-output-size",
        )
    )
    with gr.Row(visible=False) as sides:
        width = engine_checked(gr.Slider(settings.min_side, MAX_SIDE, value=512, step=8, label="Width"))
        height = engine_checked(gr.Slider(settings.min_side, MAX_SIDE, value=512, step=8, label="Height"))
    scale_by = engine_checked(
        gr.Slider(MIN_SCALE, MAX_SCALE, value=1.0, step=0.05, label="Scale", visible=False, elem_id=f"{tab}-scale-by")
    )
    resize_mode = engine_checked(
        gr.Dropdown(
            list(RESIZE_MODES),
            value=RESIZE_MODES[0],
            label="Resize mode",
            info="Just resize stretches; crop and resize fills the size and crops the centre; resize and fill fits "
            "the whole image and fills the bands from its edges",
            visible=False,
            elem_id=f"{tab}-resize-mode",
        )
    )
    output_size.change(
        lambda choice: (
            gr.Row(visible=choice == RESIZE_TO),
            gr.Slider(visible=choice == OUTPUT_SIZES[2]),
            gr.Dropdown(visible=choice != FOLLOW_INPUT),
        ),
        inputs=output_size,
        outputs=[sides, scale_by, resize_mode],
        queue=False,
        api_visibility="private",
    )
    return {
        "output_size": output_size,
        "width": width,
        "height": height,
        "scale_by": scale_by,
        "resize_mode": resize_mode,
    }


def handler(engine: Engine) -> Callable:
    """The img2img handler (the /img2img endpoint and MCP tool); its defaults are the default model's values."""
    default_model = DEFAULT_MODEL
    settings = engine.settings
    strength0, guidance0, steps0 = model_defaults(default_model, settings)

    @documented(settings)
    @user_errors
    def img2img(
        image: str | None,
        prompt: str,
        negative_prompt: str = "",
        model: str = default_model,
        strength: float = strength0,
        guidance_scale: float = guidance0,
        num_inference_steps: int = steps0,
        seed: int = RANDOM_SEED,
        num_images: int = 1,
        weighted_prompt: bool = False,
        scheduler: str = "",
        loras: str = "",
        output_size: str = FOLLOW_INPUT,
        width: int = 512,
        height: int = 512,
        scale_by: float = 1.0,
        resize_mode: str = RESIZE_MODES[0],
        cancel: CancelToken | None = None,
        live: bool = False,
        progress: gr.Progress = gr.Progress(),
    ):
        """Image-to-image (the Basic tab): change an image with a prompt, as the diffusers guide does.

        Use this to restyle or edit one image. Returns the result images (PNGs carrying their recipe),
        an [init | results] grid, a summary (seed used, denoising steps that ran, size, time), the
        diffusers script that reproduces the first image, and downloads.

        Args:
            $basic_args
            num_images: 1 to $max_images images, from consecutive seeds.
            weighted_prompt: read the prompts as Compel syntax, e.g. (word)1.3 (SD 1.5 and SDXL refiner).
            scheduler: $scheduler_arg
            loras: $loras_arg
            output_size: Follow input (the default: the image's own size, scaled to at most $working_pixels
                pixels), Resize to (width x height) or Resize by (scale_by x the image's size); sides rounded to
                the model's multiple, at most $working_pixels pixels.
            width: Resize to: the width, $min_side to $max_side.
            height: Resize to: the height, $min_side to $max_side.
            scale_by: Resize by: the scale of the image's size, 0.05 to 4 (the web UI's int(side x scale)).
            resize_mode: Resize to / by, as the web UI names them: Just resize (stretch), Crop and resize (cover
                the size, keep the centre) or Resize and fill (fit inside, fill the bands from the edges).
        """
        request = Img2ImgRequest(
            image=image,
            prompt=prompt,
            negative_prompt=negative_prompt,
            model=model,
            strength=strength,
            guidance_scale=guidance_scale,
            num_inference_steps=num_inference_steps,
            seed=seed,
            num_images=num_images,
            weighted_prompt=weighted_prompt,
            scheduler=scheduler or None,
            loras=loras,
            output_size=output_size,
            width=width,
            height=height,
            scale_by=scale_by,
            resize_mode=resize_mode,
        )
        report = gradio_progress(progress)
        results = []
        shown: dict[int, Image.Image] = {}  # each image's latest live preview, by its place among the seeds
        try:
            for item in watched(
                lambda live_preview: engine.run(request, progress=report, cancel=cancel, live_preview=live_preview),
                live=live,
                cancel=cancel,
            ):
                if isinstance(item, LivePreview):  # the page watches: the gallery shows the latents as they denoise
                    shown.update(live_images(item))
                    caption = f"live preview: step {item.step} of {item.steps}"
                    gallery = [(shown[place], caption) for place in sorted(shown)]
                    yield gallery, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), []
                else:
                    results.append(item)
        except GenerationCancelled as stopped:
            message = f"Stopped after {stopped.steps_done} denoising step(s); nothing was kept."
            yield [], None, message, "", None, gr.skip(), []
            return
        (result,) = results
        gallery_items, ids, script, downloads = seed_results(engine, result)
        yield gallery_items, result.grid, result_text(result), script, downloads, result.plan.seeds[0], ids

    return img2img


def build(engine: Engine, tools: list) -> tuple[GenerationInputs, Finished]:
    """Lay out the Basic tab and wire its events; returns its inputs (the Recipe tab fills them) and
    its finished run. Adds its handler to `tools`."""
    tab = layout(engine)
    inputs = tab.inputs
    plan_inputs = [
        inputs.image,
        inputs.model,
        inputs.strength,
        inputs.num_inference_steps,
        inputs.scheduler,
        *tab.size_inputs(),
    ]
    wire_preview(plan_inputs, lambda *values: plan_text(engine, *values), tab.plan)
    outputs = [tab.gallery, tab.grid, inputs.summary, tab.code, tab.files, tab.last_seed, tab.recipes]
    done = wire_generation(
        tab.generate,
        tab.stop,
        handler(engine),
        inputs=tab.api_inputs(),
        outputs=outputs,
        tools=tools,
        live_output=tab.gallery,
    )
    wire_comparison(engine, done, tab.recipes, tab.gallery, tab.slider)
    wire_recipe_selection(engine, tab.gallery, tab.recipes, tab.code, tab.files)
    assert inputs.reuse_seed is not None  # advanced_inputs built it
    inputs.reuse_seed.click(
        lambda value: value, inputs=tab.last_seed, outputs=inputs.seed, queue=False, api_visibility="private"
    )
    return inputs, Finished(done, tab.gallery)
