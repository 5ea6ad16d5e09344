"""Compel prompt weighting: `a (red)1.3 cat, (blurry)--` turned into prompt_embeds.

Only families conditioned on CLIP text embeddings take it (their adapter's `weighted_prompt`, in
engine.models.families: SD 1.5 and its fine-tunes, the SDXL refiner); Kandinsky 2.2 is conditioned on its
prior's image embeddings.
"""

from __future__ import annotations

import pyparsing

from engine.models.catalog import ModelSpec


def weighted_embeddings(pipe, spec: ModelSpec, prompt: str, negative_prompt: str) -> dict:
    """Pipeline keyword arguments (prompt_embeds, ...) for a Compel-weighted prompt and negative prompt.

    Both are encoded in one batch and padded to the same length, so prompts longer than CLIP's 77
    tokens are not truncated.

    Raises:
        ValueError: the family takes no embeddings, or the prompt is not valid Compel syntax.
    """
    encode = spec.adapter.weighted_prompt
    if encode is None:
        raise ValueError(f"weighted_prompt is not available: {spec.weighting_unavailable_reason}")
    try:
        return encode(pipe, prompt, negative_prompt)
    except pyparsing.ParseBaseException as exc:
        raise ValueError(f"prompt is not valid Compel syntax: {exc}") from None
    except RecursionError:
        raise ValueError("prompt is nested too deeply for Compel's syntax; use fewer brackets") from None
