"""The SD x4 upscaler: takes pixels (its VAE is not SD 1.x's), returns an image four times the size."""

from __future__ import annotations

from engine.models.families import Family

FAMILY = Family(name="sd-x4-upscaler", upscale_factor=4, no_weighting="takes plain prompts", gpu_step_seconds=0.12)
