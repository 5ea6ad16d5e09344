"""The few widgets and helpers every tab shares: model picker, seed row, progress, error boundary."""

from __future__ import annotations

import functools
from collections.abc import Callable

import gradio as gr

from engine.cache import ModelUnavailable
from engine.catalog import CATALOG, get_spec, models_for
from engine.requests import RANDOM_SEED, SEED_LIMIT
from engine.run import GenerationCancelled

STRENGTH_INFO = (
    "How far to move away from the init image: the share of the noise schedule that is run. "
    "Low keeps the layout and colours; 1.0 ignores the image almost entirely."
)
GUIDANCE_INFO = (
    "How strongly each step is pushed towards the prompt (classifier-free guidance). "
    "Higher follows the prompt more literally, at the cost of variety and, past ~12, of quality."
)
NEGATIVE_INFO = "What to steer away from: guidance pushes from this text instead of from an empty prompt."
STEPS_INFO = "Steps of the full schedule; img2img runs only int(steps x strength) of them."


def engine_checked(component: gr.Slider | gr.Number) -> gr.Slider | gr.Number:
    """Let a numeric input hand its value to the engine unchecked; its bounds still guide the browser.

    Gradio's own bound check answers "Value 1.5 is greater than maximum value 1.0" without naming the
    parameter; the engine's answers "strength must be in (0, 1], got 1.5". (An instance attribute, not
    a subclass: Gradio writes a .pyi file beside the source of every Component subclass.)
    """
    component.preprocess = lambda payload: payload
    return component


def model_picker(kind: str, value: str, label: str = "Model") -> gr.Dropdown:
    """A dropdown of the catalog models that serve a pipeline kind; its values are catalog keys."""
    choices = [(f"{CATALOG[key].label} ({key})", key) for key in models_for(kind)]
    # allow_custom_value: the engine's check answers an unknown key, naming the parameter and listing the keys
    return gr.Dropdown(
        choices=choices,
        value=value,
        label=label,
        info="Catalog key; the API takes the key.",
        allow_custom_value=True,
    )


def seed_row(settings_max: int = SEED_LIMIT - 1) -> tuple[gr.Number, gr.Button, gr.Button]:
    """Seed box (-1 = random) with a dice button (random) and a recycle button (last seed used)."""
    with gr.Row(equal_height=True):
        seed = gr.Number(
            value=RANDOM_SEED,
            label="Seed",
            info="-1 picks a random seed; the seed used is shown with the result.",
            precision=0,
            minimum=RANDOM_SEED,
            maximum=settings_max,
            scale=4,
        )
        engine_checked(seed)
        dice = gr.Button("🎲 Random", scale=1, min_width=80)
        reuse = gr.Button("♻️ Last seed", scale=1, min_width=80)
    dice.click(lambda: RANDOM_SEED, outputs=seed, queue=False, api_visibility="private")
    return seed, dice, reuse


def model_defaults(key: str) -> tuple[float, float, int]:
    """strength, guidance_scale, num_inference_steps for a catalog key."""
    defaults = get_spec(key).defaults
    if defaults is None:
        raise ValueError(f"model {key!r} has no defaults")
    return defaults.strength, defaults.guidance_scale, defaults.num_inference_steps


def gradio_progress(progress: gr.Progress, desc: str = "Denoising") -> Callable[[int, int], None]:
    """Adapt the engine's progress(done, total) callback to a gr.Progress bar."""

    def report(done: int, total: int) -> None:
        progress((done, total), desc=desc, unit="steps")

    return report


def user_errors(fn: Callable) -> Callable:
    """Turn bad input (ValueError), Stop and a model that cannot load into messages the browser shows.

    ValueError messages already name the parameter and value; they reach the page unchanged so the
    user sees exactly what to fix, and the server keeps serving.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            raise gr.Error(str(exc), title="Invalid input", print_exception=False) from None
        except GenerationCancelled as exc:
            raise gr.Error(f"Stopped: {exc}", title="Stopped", print_exception=False) from None
        except ModelUnavailable as exc:
            raise gr.Error(str(exc), title="Model unavailable", print_exception=False) from None

    return wrapper
