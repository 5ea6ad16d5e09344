"""Recipes: everything needed to reproduce a result.

A `Recipe` is built from the pipeline object that made the image, so it records what really ran
(pipeline and scheduler classes, scheduler config, dtype, generator device), not what was asked for.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.run import denoiser_of

APP_VERSION = "0.1.0"


@dataclass(frozen=True)
class Recipe:
    """What made one result. `parameters` are the pipeline-call arguments that are plain values."""

    workflow: str
    model: str
    model_id: str
    pipeline: str
    scheduler: str
    scheduler_config: dict[str, Any]
    dtype: str
    generator_device: str
    seeds: tuple[int, ...]
    parameters: dict[str, Any]
    size: tuple[int, int]
    model_mode: str = "hub"
    weighted_prompt: bool = False
    app_version: str = APP_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_pipeline(cls, pipe, **fields: Any) -> Recipe:
        """Fill the fields that come from the pipeline object itself."""
        scheduler = denoiser_of(pipe).scheduler
        return cls(
            pipeline=type(pipe).__name__,
            scheduler=type(scheduler).__name__,
            scheduler_config={k: _plain(v) for k, v in dict(scheduler.config).items() if not k.startswith("_")},
            dtype=str(pipe.dtype).removeprefix("torch."),
            **fields,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
