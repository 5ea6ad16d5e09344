"""Kandinsky 2.2's decoder, conditioned on its prior's CLIP image embeddings (the catalog's `prior`).

Its prior doubles the batch for the negative prompt but draws from a generator list by the doubled
size, so per-image generators fail inside diffusers: every seed gets its own call, which keeps each
image reproducible from its seed. Its img2img pipeline reads height and width transposed.
"""

from __future__ import annotations

from engine.models.families import Family

FAMILY = Family(
    name="kandinsky22",
    one_call_per_seed=True,
    swaps_height_width=True,
    no_weighting="is conditioned on image embeddings from its prior, not on CLIP prompt embeddings",
    gpu_step_seconds=0.08,
)
