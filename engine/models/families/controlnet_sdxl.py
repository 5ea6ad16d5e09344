"""ControlNets for SDXL base 1.0: one diffusers model, attached to SDXL base's pipeline (cache.get_controlnet)."""

from __future__ import annotations

from engine.models.families import Family

FAMILY = Family(
    name="controlnet-sdxl",
    no_weighting="is a ControlNet, not an image model",
    twin="controlnet",
    controlnet_base="sdxl-base",
    gpu_step_seconds=0.10,
)
