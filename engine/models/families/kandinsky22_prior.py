"""Kandinsky 2.2's prior: turns the prompt into CLIP image embeddings; loaded as the decoder's connected pipeline."""

from __future__ import annotations

from engine.models.families import Family

FAMILY = Family(name="kandinsky22-prior", no_weighting="is a prior, not an image model", gpu_step_seconds=0.03)
