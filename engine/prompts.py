"""Compel prompt weighting: `a (red)1.3 cat, (blurry)--` turned into prompt_embeds.

Only families conditioned on CLIP text embeddings take it (SD 1.5 and its fine-tunes, the SDXL
refiner); Kandinsky 2.2 is conditioned on its prior's image embeddings.
"""

from __future__ import annotations

import pyparsing

from engine.catalog import ModelSpec


def weighted_embeddings(pipe, spec: ModelSpec, prompt: str, negative_prompt: str) -> dict:
    """Pipeline keyword arguments (prompt_embeds, ...) for a Compel-weighted prompt and negative prompt.

    Both are encoded in one batch and padded to the same length, so prompts longer than CLIP's 77
    tokens are not truncated.

    Raises:
        ValueError: the family takes no embeddings, or the prompt is not valid Compel syntax.
    """
    from compel import Compel, CompelForSD, ReturnedEmbeddingsType

    if spec.weighting_unavailable_reason:
        raise ValueError(f"weighted_prompt is not available: {spec.weighting_unavailable_reason}")
    device = pipe._execution_device
    try:
        if spec.family == "sd15":
            conditioning = CompelForSD(pipe, device=device)(prompt, negative_prompt)
            return {"prompt_embeds": conditioning.embeds, "negative_prompt_embeds": conditioning.negative_embeds}
        if spec.family == "sdxl-refiner":
            # The refiner has only the second (OpenCLIP bigG) text encoder: penultimate states plus pooled.
            compel = Compel(
                tokenizer=pipe.tokenizer_2,
                text_encoder=pipe.text_encoder_2,
                returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
                requires_pooled=True,
                truncate_long_prompts=False,
                device=device,
            )
            embeds, pooled = compel([prompt, negative_prompt])
            return {
                "prompt_embeds": embeds[:1],
                "pooled_prompt_embeds": pooled[:1],
                "negative_prompt_embeds": embeds[1:],
                "negative_pooled_prompt_embeds": pooled[1:],
            }
    except pyparsing.ParseBaseException as exc:
        raise ValueError(f"prompt is not valid Compel syntax: {exc}") from None
    except RecursionError:
        raise ValueError("prompt is nested too deeply for Compel's syntax; use fewer brackets") from None
    raise ValueError(f"weighted_prompt is not available for model family {spec.family!r}")
