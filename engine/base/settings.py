"""Limits and flags in one frozen dataclass, read from env vars and the command line.

The same object bounds the UI's sliders and the engine's validation, so the two never disagree.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

MODEL_MODES = ("auto", "hub", "tiny")
FULL_PIXELS = 1024 * 1024
# Tiny mode on a CPU makes noise from random weights: a small working size and few steps there, so a
# newcomer's first example finishes in seconds (benchmarks/RESULTS.md), not minutes.
QUICK_PIXELS = 256 * 256
QUICK_STEPS = 10
OFFLOAD_MODES = ("auto", "none", "model", "sequential")
BACKENDS = ("local", "ray")


def _env(
    name: str,
    help_text: str,
    *,
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
) -> dict:
    return {"env": name, "help": help_text, "flag": flag, "choices": choices, "secret": secret}


@dataclass(frozen=True)
class Settings:
    """Every limit and switch of the app. Build it with `Settings.from_env()` or `Settings.from_cli()`."""

    host: str = field(default="127.0.0.1", metadata=_env("STUDIO_HOST", "address to listen on", flag="--host"))
    port: int = field(default=7860, metadata=_env("STUDIO_PORT", "port to listen on", flag="--port"))
    models: str = field(
        default="auto",
        metadata=_env(
            "STUDIO_MODELS",
            "hub: real checkpoints; tiny: random-weight twins; auto: hub when the weights are cached or the Hub "
            "answers, else tiny",
            flag="--models",
            choices=MODEL_MODES,
        ),
    )
    offload: str = field(
        default="auto",
        metadata=_env(
            "STUDIO_OFFLOAD",
            "CUDA only. auto: keep models on the GPU while they fit, else model offload",
            flag="--offload",
            choices=OFFLOAD_MODES,
        ),
    )
    compile: bool = field(
        default=False,
        metadata=_env(
            "STUDIO_COMPILE",
            "CUDA only: torch.compile the UNet and VAE (H100: 1.75x faster images after a first one of about 100 s)",
            flag="--compile",
        ),
    )
    cuda_graphs: bool = field(
        default=True,
        metadata=_env(
            "STUDIO_CUDA_GRAPHS",
            "CUDA only: replay each step's UNet/ControlNet as a CUDA graph (H100: 3.4x faster images); 0 turns it off",
        ),
    )
    mcp: bool = field(
        default=False,
        metadata=_env(
            "STUDIO_MCP", "also serve every endpoint as an MCP tool at /gradio_api/mcp/ (for agents)", flag="--mcp"
        ),
    )
    data_dir: Path = field(
        default=Path(".huggingface"),
        metadata=_env("STUDIO_DATA_DIR", "local folder for tiny twins and example images", flag="--data-dir"),
    )
    max_input_pixels: int = field(
        default=40_000_000,
        metadata=_env("STUDIO_MAX_INPUT_PIXELS", "uploads larger than this (read from the header) are refused"),
    )
    max_pixels: int = field(
        default=0,
        metadata=_env(
            "STUDIO_MAX_PIXELS",
            f"working size: larger images are scaled down to this many pixels; 0: {FULL_PIXELS}, or {QUICK_PIXELS} "
            "(256x256) in tiny mode on a CPU",
        ),
    )
    default_steps: int = field(
        default=0,
        metadata=_env(
            "STUDIO_DEFAULT_STEPS",
            f"num_inference_steps a run starts with, at most the model's own; 0: each model's own (50 for SD 1.5, "
            f"4 for FLUX.1 schnell), or {QUICK_STEPS} in tiny mode on a CPU",
        ),
    )
    min_side: int = field(default=64, metadata=_env("STUDIO_MIN_SIDE", "smallest image side accepted, in pixels"))
    max_steps: int = field(default=150, metadata=_env("STUDIO_MAX_STEPS", "most num_inference_steps per run"))
    max_images: int = field(default=4, metadata=_env("STUDIO_MAX_IMAGES", "most images per Basic run"))
    max_prompt_chars: int = field(default=2000, metadata=_env("STUDIO_MAX_PROMPT_CHARS", "longest prompt accepted"))
    max_sweep_cells: int = field(default=64, metadata=_env("STUDIO_MAX_SWEEP_CELLS", "most cells in one sweep"))
    max_grid_pixels: int = field(
        default=25_000_000, metadata=_env("STUDIO_MAX_GRID_PIXELS", "largest sweep grid image, in pixels")
    )
    max_batch: int = field(
        default=8, metadata=_env("STUDIO_MAX_BATCH", "most sweep cells in one batched pipeline call")
    )
    max_chain_stages: int = field(default=5, metadata=_env("STUDIO_MAX_CHAIN_STAGES", "most stages in one chain"))
    max_output_pixels: int = field(
        default=4096 * 4096,
        metadata=_env("STUDIO_MAX_OUTPUT_PIXELS", "largest image any chain stage may make, in pixels"),
    )
    metadata: bool = field(
        default=True,
        metadata=_env("STUDIO_METADATA", "write each result's recipe into its PNG; false leaves PNGs bare"),
    )
    safety_checker: bool = field(
        default=True,
        metadata=_env(
            "STUDIO_SAFETY_CHECKER",
            "run the checkpoints' own safety checker (SD 1.5 family); false drops it (1.2 GB less to download)",
        ),
    )
    queue_size: int = field(default=32, metadata=_env("STUDIO_QUEUE_SIZE", "most jobs waiting in the queue"))
    max_sessions: int = field(
        default=1000,
        metadata=_env(
            "STUDIO_MAX_SESSIONS",
            "visitor sessions whose state the server keeps (about 0.4 MB each); past it the least recently used "
            "is dropped",
        ),
    )
    max_file_mb: int = field(default=25, metadata=_env("STUDIO_MAX_FILE_MB", "largest upload, in MB"))
    max_outputs_mb: int = field(
        default=2048,
        metadata=_env(
            "STUDIO_MAX_OUTPUTS_MB",
            "disk for result PNGs and download folders under the data dir; the oldest are deleted past it",
        ),
    )
    results_mb: int = field(
        default=512,
        metadata=_env(
            "STUDIO_RESULTS_MB",
            "memory for recent results' recipes and init images (the scripts' downloads); oldest evicted first",
        ),
    )
    preload: str = field(
        default="",
        metadata=_env(
            "STUDIO_PRELOAD",
            "catalog keys of models to load before the page opens, comma-separated (e.g. sd15,controlnet-depth); "
            "empty: none, or sd15 on ZeroGPU",
        ),
    )
    gpu_seconds_max: int = field(
        default=120,
        metadata=_env(
            "STUDIO_GPU_SECONDS_MAX",
            "ZeroGPU only: the most GPU seconds one run may ask for; a run estimated above it is refused with "
            "what to change",
        ),
    )
    backend: str = field(
        default="local",
        metadata=_env(
            "STUDIO_BACKEND",
            "local: models run in this process; ray: on Ray Serve replicas (docs/deploying.md, Scaling out)",
            flag="--backend",
            choices=BACKENDS,
        ),
    )
    ray_address: str = field(
        default="",
        metadata=_env(
            "STUDIO_RAY_ADDRESS",
            "ray backend: the Ray cluster to join (e.g. 10.0.0.5:6379, or auto); empty: start Ray on this machine",
            flag="--ray-address",
        ),
    )
    replicas: int = field(
        default=0,
        metadata=_env(
            "STUDIO_REPLICAS",
            "ray backend: engine replicas, one GPU each; 0: one per GPU in the cluster (1 where it has none)",
            flag="--replicas",
        ),
    )
    cache_budget_gb: float = field(
        default=0.0,
        metadata=_env("STUDIO_CACHE_GB", "memory the pipeline cache may hold, in GB; 0 picks it from the device"),
    )
    models_dir: str = field(
        default="",
        metadata=_env(
            "STUDIO_MODELS_DIR",
            "a folder of your own single-file checkpoints (.safetensors; .ckpt/.pt only as plain tensors): each "
            "becomes a model named file:<file name>, its family read from its tensors",
        ),
    )
    allow_hub_models: str = field(
        default="",
        metadata=_env(
            "STUDIO_ALLOW_HUB_MODELS",
            "hub mode: Hub repos visitors may pick besides the catalog, comma-separated ids or patterns "
            "(me/my-model, me/*); the family comes from each repo's model_index.json",
        ),
    )
    lora_dir: str = field(
        default="",
        metadata=_env(
            "STUDIO_LORA_DIR",
            "a folder of LoRA .safetensors files: each can be applied to a run with a weight (several at once)",
        ),
    )
    # Never repr'd, logged or shown: describe() says only whether it is set.
    hf_token: str = field(
        default="",
        repr=False,
        metadata=_env(
            "STUDIO_HF_TOKEN",
            "Hugging Face token for gated models (SD3.5, FLUX.1 dev) in hub mode; no other token is ever sent",
            secret=True,
        ),
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read every field from its env var (falling back to the default), then apply `overrides`.

        Raises:
            ValueError: an env var holds a value of the wrong type or outside its choices.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}  # each parsed to its field's type by _parse
        for f in fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is None and f.name in _GRADIO_FALLBACK:
                raw = environ.get(_GRADIO_FALLBACK[f.name])
            if raw is not None and raw != "":
                values[f.name] = _parse(f.metadata["env"], raw, type(f.default), f.metadata["choices"])
        values.update(overrides)
        return replace(cls(), **values)

    @classmethod
    def from_cli(cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Env vars first, then command-line flags on top."""
        parser = build_parser()
        args = parser.parse_args(argv)
        overrides = {k: v for k, v in vars(args).items() if v is not None}
        try:
            return cls.from_env(environ, **overrides)
        except ValueError as exc:
            parser.error(str(exc))
            raise  # unreachable: parser.error exits

    @property
    def working_pixels(self) -> int:
        """The working size cap (max_pixels, 0 meaning the full 1024x1024)."""
        return self.max_pixels or FULL_PIXELS

    def steps_default(self, model_default: int) -> int:
        """num_inference_steps when a run does not say: default_steps, or the model's own, whichever is fewer
        (a distilled model's 4 steps are not raised to a shortened default meant for 50-step models)."""
        return min(self.default_steps, model_default) if self.default_steps else model_default

    def resolved(self, *, quick: bool) -> Settings:
        """The automatic values filled in: small and fast (`quick`: tiny mode on a CPU) or full."""
        return replace(
            self,
            max_pixels=self.max_pixels or (QUICK_PIXELS if quick else FULL_PIXELS),
            default_steps=self.default_steps or (QUICK_STEPS if quick else 0),
            # absolute, so Ray replicas (another working directory) read the same folders
            models_dir=str(Path(self.models_dir).expanduser().resolve()) if self.models_dir else "",
            lora_dir=str(Path(self.lora_dir).expanduser().resolve()) if self.lora_dir else "",
        )

    def describe(self) -> list[tuple[str, str, str]]:
        """(env var, value, meaning) for every setting, for the README and the startup log."""
        return [(f.metadata["env"], self._shown(f), f.metadata["help"]) for f in fields(self)]

    def _shown(self, f) -> str:
        value = getattr(self, f.name)
        if f.metadata["secret"]:
            return "(set)" if value else "(not set)"
        return str(value)


# Hugging Face Spaces sets GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, and Gradio's documented switch for
# MCP is GRADIO_MCP_SERVER; honour them when ours are unset.
_GRADIO_FALLBACK = {"host": "GRADIO_SERVER_NAME", "port": "GRADIO_SERVER_PORT", "mcp": "GRADIO_MCP_SERVER"}


def _parse(env_name: str, raw: str, kind: type, choices: tuple[str, ...] | None) -> object:
    raw = raw.strip()
    try:
        if kind is bool:
            lowered = raw.lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError
            return lowered in ("1", "true", "yes", "on")
        if kind is int:
            return int(raw)
        if kind is float:
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError
            return value
        if kind is str and choices and raw not in choices:
            raise ValueError
        return Path(raw) if issubclass(kind, Path) else raw
    except ValueError:
        expected = f"one of {', '.join(choices)}" if choices else f"a {kind.__name__}"
        raise ValueError(f"{env_name} must be {expected}, got {raw!r}") from None


def env_help() -> str:
    """Every setting's env var, default and meaning, for `--help` (flags or not, all of them)."""
    lines = ["every setting also reads an env var (flags win over env vars):"]
    for f in fields(Settings):
        fallback = f" (or {_GRADIO_FALLBACK[f.name]})" if f.name in _GRADIO_FALLBACK else ""
        lines.append(f"  {f.metadata['env']}{fallback}={f.default}  {f.metadata['help']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The app's command line: one flag per setting that has one; --help lists every env var too."""
    parser = argparse.ArgumentParser(
        description="Img2Img Studio: the diffusers image-to-image guide in a browser.",
        epilog=env_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for f in fields(Settings):
        flag = f.metadata["flag"]
        if flag is None:
            continue
        help_text = f"{f.metadata['help']} (env {f.metadata['env']}, default {f.default})"
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action="store_const", const=True, default=None, help=help_text)
        else:
            kind = Path if isinstance(f.default, Path) else type(f.default)
            parser.add_argument(flag, dest=f.name, type=kind, choices=f.metadata["choices"], help=help_text)
    return parser
