"""ControlNets for SD 1.5: one diffusers model, attached to an SD 1.5 pipeline (engine.cache.get_controlnet)."""

from __future__ import annotations

from engine.models.families import Family

FAMILY = Family(
    name="controlnet-sd15",
    no_weighting="is a ControlNet, not an image model",
    twin="controlnet",
    controlnet_base="sd15",
    gpu_step_seconds=0.10,
)
