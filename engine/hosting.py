"""Where the app runs: ZeroGPU (Hugging Face's shared GPUs), an NVIDIA GPU that torch cannot use, or elsewhere.

ZeroGPU lends a GPU slice for each call of a function wrapped in `spaces.GPU(duration=...)`. The call runs
in a forked worker process (its arguments and results cross as pickles), and the seconds it asks for are
checked against the visitor's per-call cap and charged to their daily quota before it starts. So a call
should ask for about what its work needs: `gpu_seconds` sizes it from the plan's denoising loops
(`Workflow.work`, engine.workflows.shape.GpuWork), and `check_gpu_seconds` refuses, before the queue, a run that
could not finish in the Space's limit. ui.zerogpu does the wrapping; this module imports neither gradio
nor spaces.

`cuda_unusable` says why a machine with an NVIDIA driver runs on the CPU anyway (a torch built for a newer
CUDA than the driver serves, or a CPU-only torch): the page header and the log say it, instead of the app
quietly making images at CPU speed.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import threading
from collections.abc import Collection, Mapping
from pathlib import Path

from engine.models.catalog import get_spec
from engine.workflows.shape import GpuWork

ZERO_GPU_ENV = "SPACES_ZERO_GPU"  # set by Hugging Face on ZeroGPU Spaces (the spaces package reads it too)

# Sizing a GPU call (seconds). Each family's step cost is Family.gpu_step_seconds; the figures behind
# them and these are in benchmarks/RESULTS.md ("ZeroGPU call sizes").
START_SECONDS = 10.0  # a worker's start: fork, CUDA init, the weights loaded at start copied onto the GPU
LOAD_SECONDS = 10.0  # a model not loaded at start, read from the Space's disk onto the GPU (H100: 1-2 s warm)
ESTIMATE_SECONDS = 2.0  # one depth estimate
DECODE_SECONDS_PER_MEGAPIXEL = 0.3  # VAE encode and decode (and the safety checker), per image
MARGIN = 1.5  # asked for over the estimate: a call cut off at its duration loses all its work
REFERENCE_PIXELS = 512 * 512  # the size Family.gpu_step_seconds is given for

# Oldest Linux driver each CUDA major version runs on (CUDA's minor-version compatibility; toolkit notes).
MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}
NVIDIA_DRIVER_FILE = Path("/proc/driver/nvidia/version")


def on_zero_gpu(environ: Mapping[str, str] | None = None) -> bool:
    """True on a ZeroGPU Space (`SPACES_ZERO_GPU` true, read as the spaces package reads it)."""
    value = (os.environ if environ is None else environ).get(ZERO_GPU_ENV, "")
    return value.strip().lower() in ("1", "t", "true")


def loop_seconds(work: GpuWork) -> float:
    """An upper bound on one loop's GPU time on ZeroGPU: its steps at its size, and its decodes."""
    spec = get_spec(work.key)
    if "depth" in spec.kinds:
        return ESTIMATE_SECONDS * work.images
    load = max(1.0, work.pixels * work.images / REFERENCE_PIXELS)  # small images still pay a step's overheads
    decode = DECODE_SECONDS_PER_MEGAPIXEL * work.pixels * work.images / 1e6
    return work.steps * spec.adapter.gpu_step_seconds * load + decode


def gpu_seconds(work: list[GpuWork], resident: Collection[str] = ()) -> int:
    """Seconds a GPU call for `work` asks for: the worker's start, a load for each model not `resident`
    (loaded at start), every loop, and a margin; whole seconds, rounded up."""
    loads = len({loop.key for loop in work} - set(resident))
    seconds = START_SECONDS + LOAD_SECONDS * loads + sum(loop_seconds(loop) for loop in work)
    return math.ceil(seconds * MARGIN)


# How long a run may take on this machine, said in its plan before it starts (issue: a 2048x2048 upscale ran 14
# minutes on a CPU with nothing said). A device runs a plan's loops some times slower than `loop_seconds` (the GPU
# figures); each finished run measures that for its models. Before any run here, a prior: tiny twins on a 2-core
# CPU ran 0.3-30x the GPU figures (a chain to 1280x768: 29x; benchmarks/RESULTS.md, "Time estimates").
SLOWDOWN_PRIOR = {"cuda": 1.0}  # by device; any other device:
CPU_SLOWDOWN_PRIOR = {"tiny": 25.0, "hub": 60.0}  # by model mode: real checkpoints on a CPU are slower still
LONG_RUN_SECONDS = 60.0  # a run estimated longer than this is announced in its plan


class RunClock:
    """Estimated wall time of a plan's loops on this process's device, learned from the runs it timed.

    `slowdown[key]`: seconds a run took against its loops' `loop_seconds`, per model (the mean of the last
    measurement and the one before); a model not timed yet takes the median of those that were, or the prior.
    """

    def __init__(self, prior: float) -> None:
        self.prior = prior
        self._slowdown: dict[str, float] = {}
        self._lock = threading.Lock()

    def estimate(self, work: list[GpuWork]) -> tuple[float, bool]:
        """(seconds, whether every model's speed was measured here)."""
        with self._lock:
            known = dict(self._slowdown)
        fallback = statistics.median(known.values()) if known else self.prior
        seconds = sum(loop_seconds(loop) * known.get(loop.key, fallback) for loop in work)
        return seconds, all(loop.key in known for loop in work)

    def observe(self, work: list[GpuWork], seconds: float) -> None:
        """A finished run of `work` took `seconds` (loads included: the first run of a model counts its load)."""
        expected = sum(loop_seconds(loop) for loop in work)
        if expected <= 0 or seconds <= 0:
            return
        ratio = seconds / expected
        with self._lock:
            for key in {loop.key for loop in work}:
                old = self._slowdown.get(key)
                self._slowdown[key] = ratio if old is None else (old + ratio) / 2


def slowdown_prior(device: str, mode: str) -> float:
    """The prior RunClock starts from on `device` for the model `mode` (tiny twins or real checkpoints)."""
    return SLOWDOWN_PRIOR.get(device) or CPU_SLOWDOWN_PRIOR.get(mode, CPU_SLOWDOWN_PRIOR["hub"])


def wait_text(seconds: float, measured: bool, device: str) -> str:
    """The plan's line for a run long for this device ("" for a short one)."""
    if seconds < LONG_RUN_SECONDS:
        return ""
    minutes = seconds / 60
    about = f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"
    source = "from the runs timed on this server" if measured else "a first guess, until a run here is timed"
    return f"⏳ A long run: about {about} on this {device} ({source}). Fewer steps or a smaller image make it shorter."


def describe_work(work: list[GpuWork]) -> str:
    """The loops in a few words, for the message that refuses a run."""
    steps = sum(loop.steps * loop.images for loop in work)
    largest = max((loop.pixels for loop in work), default=0)
    loops = f"{len(work)} loops, " if len(work) > 1 else ""
    return f"{loops}{steps} denoising steps in all, images up to {largest:,} pixels"


def check_gpu_seconds(seconds: int, limit: int, work: list[GpuWork]) -> int:
    """`seconds`, when a GPU call may ask for that many.

    Raises:
        ValueError: past `limit` (STUDIO_GPU_SECONDS_MAX), naming the estimate, the work and what to change.
    """
    if seconds > limit:
        raise ValueError(
            f"this run needs about {seconds} s of GPU time ({describe_work(work)}); this Space allows "
            f"{limit} s per run (STUDIO_GPU_SECONDS_MAX): use fewer steps, images, cells or stages, or a "
            "smaller image"
        )
    return seconds


def nvidia_driver(version_file: Path = NVIDIA_DRIVER_FILE) -> str | None:
    """The loaded NVIDIA kernel driver's version (e.g. 535.129.03), or None when there is none."""
    try:
        text = version_file.read_text()
    except OSError:
        return None
    found = re.search(r"Kernel Module[^\d]*(\d+\.\d+(?:\.\d+)?)", text)
    return found.group(1) if found else "unknown"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def cuda_unusable(
    *, driver: str | None, torch_version: str, torch_cuda: str | None, cuda_available: bool
) -> str | None:
    """Why an NVIDIA GPU is present but torch runs on the CPU, or None when that is not the case.

    Args:
        driver: nvidia_driver(): the loaded driver's version, None when there is no NVIDIA driver.
        torch_version: torch.__version__.
        torch_cuda: torch.version.cuda, the CUDA the wheel was built for (None for a CPU-only build).
        cuda_available: torch.cuda.is_available().
    """
    if cuda_available or driver is None:
        return None
    if torch_cuda is None:
        return (
            f"an NVIDIA GPU is present (driver {driver}) but torch {torch_version} is a CPU-only build, so "
            "everything runs on the CPU: install a CUDA build of torch (docs/running.md, 'Torch and the GPU')"
        )
    major = _version(torch_cuda)[0]
    needed = MIN_DRIVER.get(major)
    if needed is not None and driver != "unknown" and _version(driver) < _version(needed):
        return (
            f"an NVIDIA GPU is present but its driver {driver} is older than torch {torch_version} needs: it "
            f"was built for CUDA {torch_cuda}, which runs on drivers {needed} and newer. Everything runs on "
            f"the CPU: install a torch built for an older CUDA (docs/running.md, 'Torch and the GPU')"
        )
    return (
        f"an NVIDIA GPU is present (driver {driver}) but torch {torch_version} (CUDA {torch_cuda}) cannot use "
        "it, so everything runs on the CPU: see torch's warning in the log (docs/running.md, 'Torch and the GPU')"
    )


def gpu_problem(*, zero_gpu: bool, cuda_available: bool) -> str | None:
    """What the page header and the log should say about the GPU, or None when all is as expected."""
    import torch

    if zero_gpu and not cuda_available:
        return (
            f"{ZERO_GPU_ENV} is set but CUDA is not available, so everything runs on the CPU: on a ZeroGPU "
            "Space the spaces package must be importable (it is imported before torch)"
        )
    return cuda_unusable(
        driver=nvidia_driver(),
        torch_version=torch.__version__,
        torch_cuda=torch.version.cuda,
        cuda_available=cuda_available,
    )
