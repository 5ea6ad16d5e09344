"""A tab's handler as a tool: what ui.events records when it wires a handler, and ui.mcp serves.

Below both, so the module that wires events and the MCP server each import it and not each other.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr

SKIPPED_PARAMETERS = ("cancel", "live", "progress")  # a handler's parameters that no client passes


@dataclass(frozen=True)
class ToolSpec:
    """One tab's handler as a tool.

    `outputs` names the handler's return values in order (None: not for clients, e.g. the page's
    state); `images` are its parameters that take an image; `choices` the allowed values of others.
    """

    fn: Callable
    outputs: tuple[str | None, ...]
    images: tuple[str, ...] = ()
    choices: dict[str, list] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.fn.__name__


def output_name(component) -> str | None:
    """The name API clients know a value by: its component's label as gradio_client shows it; None for
    state, which no client sees."""
    from gradio_client.utils import sanitize_parameter_names

    if isinstance(component, gr.State):
        return None
    return sanitize_parameter_names(component.label)


def tool_spec(fn: Callable, inputs: list, outputs: list | gr.components.Component) -> ToolSpec:
    """The tool of an event's handler, from its components: outputs named as the Gradio API names them,
    file and upload inputs taking images, dropdowns' choices as the allowed values."""
    names = [name for name in inspect.signature(fn).parameters if name not in SKIPPED_PARAMETERS]
    outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
    images, choices = [], {}
    for name, component in zip(names, inputs, strict=False):
        if isinstance(component, gr.Image | gr.File):
            images.append(name)
        elif isinstance(component, gr.Dropdown):
            choices[name] = [value for _, value in component.choices]
    return ToolSpec(fn, tuple(output_name(c) for c in outputs), tuple(images), choices)
