"""The Engine: the one object that owns settings, the model mode, the pipeline cache and examples.

The UI talks to this and nothing else; a script can too:

    from engine.core import Engine
    from engine.workflows.basic import Img2ImgRequest
    from engine.base.settings import Settings
    engine = Engine(Settings.from_env(models="tiny"))
    result = engine.img2img(Img2ImgRequest(image="cat.png", prompt="a cat wizard"))
"""

from __future__ import annotations

import functools
import hashlib
import html
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from huggingface_hub import constants as hub_constants
from PIL import Image

from engine.base.forks import renew_after_fork
from engine.base.settings import Settings
from engine.hosting import (
    RunClock,
    check_gpu_seconds,
    gpu_problem,
    gpu_seconds,
    on_zero_gpu,
    slowdown_prior,
    wait_text,
)
from engine.models.catalog import DEFAULT_MODEL, ModelSpec, get_spec, models_for
from engine.models.owner import install
from engine.models.tiny import build_twin, hub_cache_holds_only_twins, twins_in_hub_cache
from engine.pipelines.cache import PipelineCache
from engine.pipelines.calls import CancelToken, ProgressFn, StepReporter
from engine.pipelines.device import DevicePolicy
from engine.pipelines.live import LivePreviewFn
from engine.pipelines.loading import ModelUnavailable, load_options, quiet_twin_truncation
from engine.recipes.results import ResultStore
from engine.workflows.basic import Img2ImgPlan, Img2ImgRequest, Img2ImgResult
from engine.workflows.chain import ChainPlan, ChainProgress, ChainRequest
from engine.workflows.checks import check_flag, check_model, normalize_for_model
from engine.workflows.depth import DepthPlan, DepthProgress, DepthRequest, depth_to_control, estimate
from engine.workflows.registry import workflow_of
from engine.workflows.shape import GpuWork, RunContext
from engine.workflows.sweep import SweepPlan, SweepProgress, SweepRequest

logger = logging.getLogger(__name__)

EXAMPLES = {
    "astronaut": "astronaut",
    "chelsea the cat": "chelsea",
    "coffee": "coffee",
    "motorcycle": "motorcycle",
}
DEPTH_MEMO_SIZE = 4  # recent estimated maps kept, so Estimate then Generate estimates once


class ModelMode(str):
    """`hub` or `tiny`, with the reason it was chosen (said in the log and the page header)."""

    reason: str = ""

    def __new__(cls, mode: str, reason: str = "") -> ModelMode:
        made = super().__new__(cls, mode)
        made.reason = reason
        return made


def resolve_mode(settings: Settings, *, probe_hub=None) -> ModelMode:
    """`hub` or `tiny`. `auto` picks hub when SD 1.5's weights are cached or the Hub answers, else tiny.

    `probe_hub` says whether the Hub answers: True, or False or the reason it did not.
    """
    if settings.models != "auto":
        return ModelMode(settings.models, f"--models {settings.models}")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(get_spec("sd15").hub_id, "model_index.json")
    if isinstance(cached, str):
        return ModelMode("hub", "auto: SD 1.5's weights are in the Hugging Face cache")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return ModelMode("tiny", "auto: HF_HUB_OFFLINE is set and no weights are cached")
    answer = (probe_hub or _hub_answers)()
    if answer is True:
        return ModelMode("hub", "auto: the Hugging Face Hub answers")
    why = answer if isinstance(answer, str) and answer else "it did not answer"
    return ModelMode("tiny", f"auto: the Hugging Face Hub cannot be reached ({why})")


def _hub_answers(timeout: float = 3.0) -> bool | str:
    """True when the Hub answers within `timeout`, else why not.

    Any failure counts as "not reachable": huggingface_hub's errors, OSError, and its HTTP client's own
    (huggingface_hub 2.x raises httpx-style ConnectError, which is neither), so `auto` never stops
    the app from starting.
    """
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(get_spec("sd15").hub_id, timeout=timeout, token=False)
        return True
    except Exception as exc:  # the probe's one job is to say whether the Hub can be used
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'no answer'}"
        logger.info("the Hugging Face Hub did not answer (%s): using the tiny twins", reason)
        return reason


class GpuCalls(Protocol):
    """Where the GPU work of an engine runs when not in this process: ZeroGPU's calls (ui.zerogpu), Ray Serve
    replicas (engine.scale_out).

    Arguments and results cross a process boundary as pickles: plans and progress objects do (tested).
    """

    concurrency: int | None  # runs at once: the GPU queue's limit (None: no limit, the calls queue themselves)
    where: str  # where the work runs, for the page header

    def run(self, plan: Any, progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Iterator[Any]:
        """A plan's progress objects, as Engine.run_here yields them (progress and Stop as far as the
        backend can carry them)."""
        ...

    def depth(self, key: str, image: Image.Image) -> np.ndarray:
        """An estimator's depth array of `image`, as engine.depth.estimate gives it."""
        ...


def preload_keys(settings: Settings, *, zero_gpu: bool) -> list[str]:
    """The catalog keys STUDIO_PRELOAD names (the default model on ZeroGPU when it names none).

    Raises:
        ValueError: a key that is not a model that can be loaded ahead, naming STUDIO_PRELOAD.
    """
    keys = [key.strip() for key in settings.preload.split(",") if key.strip()]
    if not keys and zero_gpu:
        return [DEFAULT_MODEL]
    dedicated = [key for key in models_for("inpaint") if get_spec(key).dedicated_to("inpaint")]
    allowed = [*models_for("img2img"), *models_for("upscale"), *models_for("controlnet"), *dedicated]
    for key in keys:
        if key not in allowed:
            raise ValueError(f"STUDIO_PRELOAD must list catalog keys among {', '.join(allowed)}; got {key!r}")
    return keys


def _quiet_library_progress_bars() -> None:
    """Loading bars go to the server log per component; the UI has its own progress."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


class Engine:
    """Settings, the live model mode, the pipeline cache, and one method per workflow.

    Args:
        settings: limits and flags.
        policy: device policy; detected from the machine when not given.
        probe_hub: for `auto` mode, a function that says whether the Hub answers (tests pass a stub).
        zero_gpu: on a ZeroGPU Space (engine.hosting); None reads the environment.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        policy: DevicePolicy | None = None,
        probe_hub=None,
        zero_gpu: bool | None = None,
    ) -> None:
        _quiet_library_progress_bars()
        self.zero_gpu = on_zero_gpu() if zero_gpu is None else zero_gpu
        self.preload_keys = preload_keys(settings, zero_gpu=self.zero_gpu)
        self.mode = resolve_mode(settings, probe_hub=probe_hub)
        self.policy = policy or DevicePolicy.detect(
            settings.offload, settings.compile, settings.cuda_graphs, zero_gpu=self.zero_gpu
        )
        # Said in the page header and the log: a GPU the app cannot use (None when all is as expected).
        self.gpu_problem = gpu_problem(zero_gpu=self.zero_gpu, cuda_available=self.policy.device == "cuda")
        # Where GPU work runs: None here, in this process; ui.zerogpu sets ZeroGPU's calls on ZeroGPU.
        self.gpu_calls: GpuCalls | None = None
        self.quick = self.mode == "tiny" and self.policy.device == "cpu"
        if self.mode == "tiny" or hub_cache_holds_only_twins(Path(hub_constants.HF_HUB_CACHE)):
            quiet_twin_truncation()  # the twins' byte-level tokenizers cut what CLIP's would not (a real one warns)
        self.settings = settings = settings.resolved(quick=self.quick)
        install(settings, self.mode, self.twins_dir)  # the owner's models beside the catalog (engine.models.owner)
        budget = int(settings.cache_budget_gb * 2**30) or None
        self.cache = PipelineCache(self.model_source, self.policy, budget, self.load_options)
        self._depth_memo: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._memo_lock = threading.Lock()
        renew_after_fork(self, "_memo_lock", threading.Lock)
        self.results = ResultStore(max_bytes=settings.results_mb * 2**20)
        self.clock = RunClock(slowdown_prior(self.policy.device, self.mode))  # how long runs take here
        logger.info(
            "model mode %s (%s) on %s (%s)%s",
            self.mode,
            self.mode.reason,
            self.policy.device,
            self.policy.dtype,
            " on ZeroGPU" if self.zero_gpu else "",
        )
        if self.gpu_problem:
            logger.warning("GPU: %s", self.gpu_problem)

    def preload(self) -> list[str]:
        """Load the models STUDIO_PRELOAD names (on ZeroGPU, before the server starts: ZeroGPU then copies
        their weights onto each worker's GPU at its start); returns the keys that loaded. A model that cannot
        load is logged, not fatal."""
        loaded = []
        for key in self.preload_keys:
            spec = get_spec(key)
            try:
                if "controlnet" in spec.kinds:
                    self.cache.get_controlnet(DEFAULT_MODEL, key)
                else:
                    self.cache.get(key, spec.load_kind)
            except ModelUnavailable as exc:  # the app still starts; a run with this model says why again
                logger.warning("could not load %s at start (STUDIO_PRELOAD): %s", key, exc)
                continue
            loaded.append(key)
            logger.info("loaded %s at start (STUDIO_PRELOAD)", key)
        return loaded

    # -- models --------------------------------------------------------------------------------

    @property
    def twins_dir(self) -> Path:
        return Path(self.settings.data_dir) / "twins"

    def model_source(self, spec: ModelSpec) -> str:
        """What from_pretrained loads for a catalog entry: its Hub id, or its twin folder (built on demand)."""
        if spec.origin == "file":  # the file's configs: the base's twin, or its Hub id read from the cache only
            return spec.config_id if self.mode == "hub" else str(build_twin(spec.config_spec.key, self.twins_dir))
        if self.mode == "hub":
            return spec.hub_id
        return str(build_twin(spec.key, self.twins_dir))

    def load_options(self, spec: ModelSpec) -> dict:
        """from_pretrained options for a catalog entry: weight format, fp16 variant, revision, safety checker."""
        return load_options(
            spec,
            self.policy,
            hub=self.mode == "hub",
            safety_checker=self.settings.safety_checker,
            token=self.settings.hf_token,
        )

    def model_id(self, key: str) -> str:
        """The id a recipe records: the Hub id, the twin's folder in tiny mode, or the name of the owner's file
        (never its path: a visitor who downloads a PNG learns nothing of the server's folders)."""
        spec = get_spec(key)
        if spec.origin == "file":
            return Path(spec.file).name
        return spec.hub_id if self.mode == "hub" or spec.origin == "hub" else str((self.twins_dir / key).resolve())

    @property
    def banner(self) -> str:
        """One line for the page header saying which models are live."""
        device = self.device_text
        if self.mode == "tiny":
            why = f" ({html.escape(self.mode.reason, quote=False)})" if self.mode.reason.startswith("auto") else ""
            return (
                f"Model mode: **tiny**{why}: random-weight twins of every model, on {device}. "
                "Images are noise from random weights; every workflow, size and parameter behaves as with "
                "the real checkpoints. Start with `--models hub` for real images."
                + (
                    f" On a CPU runs start small and quick: a {self.settings.working_pixels:,}-pixel working size "
                    f"and {self.settings.default_steps} steps (STUDIO_MAX_PIXELS, STUDIO_DEFAULT_STEPS change them)."
                    if self.quick
                    else ""
                )
            )
        checker = "" if self.settings.safety_checker else " The safety checker is off (STUDIO_SAFETY_CHECKER=false)."
        twins = twins_in_hub_cache(Path(hub_constants.HF_HUB_CACHE))
        if twins:
            return (
                f"Model mode: **hub**, on {device}, but the Hugging Face cache holds tiny twins of {len(twins)} of "
                "the catalog's repositories (written by `python -m engine.models.tiny --hub-cache`): their images "
                f"are noise from random weights, as in tiny mode.{checker}"
            )
        return f"Model mode: **hub**: real checkpoints from the Hugging Face Hub, on {device}.{checker}"

    @property
    def warning(self) -> str:
        """A line for the page header when the GPU cannot be used as it should (empty when all is well)."""
        if not self.gpu_problem:
            return ""
        return f"⚠️ **No GPU in use**: {html.escape(self.gpu_problem, quote=False)}."

    @property
    def device_text(self) -> str:
        """The device in the header's words: where it runs, with its dtype and speed-ups."""
        speedups = [
            name for name, on in (("CUDA graphs", self.policy.cuda_graphs), ("compiled", self.policy.compile)) if on
        ]
        details = ", ".join([str(self.policy.dtype).removeprefix("torch."), *speedups])
        if self.gpu_calls is not None:
            return self.gpu_calls.where
        place = " on ZeroGPU, a GPU lent per run" if self.zero_gpu else ""
        return f"{self.policy.device} ({details}){place}"

    @property
    def gpu_concurrency(self) -> int | None:
        """How many runs may use the GPU at once: one here; the backend's number (None: ZeroGPU, unlimited)."""
        if self.gpu_calls is not None:
            return self.gpu_calls.concurrency
        return None if self.zero_gpu else 1

    # -- workflows -----------------------------------------------------------------------------

    def context(
        self,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
        live_preview: LivePreviewFn | None = None,
    ) -> RunContext:
        """What one run shares with the engine: cache, settings, a fresh step reporter, model ids."""
        return RunContext(
            cache=self.cache,
            settings=self.settings,
            reporter=StepReporter(progress=progress, cancel=cancel, live_preview=live_preview),
            model_id=self.model_id,
            model_mode=self.mode,
            estimate=functools.partial(self.depth_array, here=True),
        )

    def plan(self, request: Any) -> Any:
        """Validate any workflow's request into its plan, before any work.

        Raises:
            ValueError: bad input, naming the parameter and the value.
        """
        workflow_of(request)
        return request.validate(self.settings)

    def run(
        self,
        request: Any,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
        live_preview: LivePreviewFn | None = None,
    ) -> Iterator[Any]:
        """Plan (unless given a plan) and run any workflow, yielding its progress as work finishes.

        Stop (the token) ends a run with its progress so far, `stopped` set; a Basic run has nothing to keep
        and raises GenerationCancelled. `live_preview` gets what the latents look like while they denoise
        (engine.pipelines.live), for a page that watches; a run on ZeroGPU or Ray Serve makes none.
        """
        plan = self._as_plan(request)
        started, last = time.perf_counter(), None
        if self.gpu_calls is not None:  # ZeroGPU's calls or Ray Serve's replicas: no live previews cross back
            progresses = self.gpu_calls.run(plan, progress=progress, cancel=cancel)
        else:
            progresses = self.run_here(plan, progress=progress, cancel=cancel, live_preview=live_preview)
        for last in progresses:
            yield last
        if last is not None and not getattr(last, "stopped", None):  # a whole run, timed for the next plans
            self.clock.observe(self.gpu_work(plan), time.perf_counter() - started)

    def run_here(
        self,
        plan: Any,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
        live_preview: LivePreviewFn | None = None,
    ) -> Iterator[Any]:
        """Run a plan in this process (what a ZeroGPU worker runs), yielding its progress."""
        context = self.context(progress=progress, cancel=cancel, live_preview=live_preview)
        yield from workflow_of(plan).run(plan, context)

    def _as_plan(self, request: Any) -> Any:
        """A request planned (validated), or a plan as it is."""
        workflow = workflow_of(request)
        return request if isinstance(request, workflow.plan) else self.plan(request)

    def gpu_work(self, plan: Any) -> list[GpuWork]:
        """The denoising loops a plan (or request, planned first) will run."""
        plan = self._as_plan(plan)
        return workflow_of(plan).work(plan)

    def describe(self, plan: Any) -> str:
        """A plan in words (its own `describe()`), with a line when its run is long for this device."""
        return "\n\n".join(line for line in (plan.describe(), self.wait_text(self.gpu_work(plan))) if line)

    def wait_text(self, work: list[GpuWork]) -> str:
        """What a plan says of its run's length: a line when it is long for this device, else ""."""
        seconds, measured = self.clock.estimate(work)
        return wait_text(seconds, measured, self.policy.device if self.gpu_calls is None else "server")

    def gpu_seconds(self, plan: Any) -> int:
        """Seconds a ZeroGPU call for `plan` asks for (engine.hosting), models loaded at start counted as loaded.

        Raises:
            ValueError: more than STUDIO_GPU_SECONDS_MAX, naming the estimate and what to change.
        """
        return self._checked_seconds(self.gpu_work(plan))

    def depth_seconds(self, key: str, image: Image.Image) -> int:
        """Seconds a ZeroGPU call for one depth estimate asks for."""
        return self._checked_seconds([GpuWork(key, 1, image.size[0] * image.size[1])])

    def _checked_seconds(self, work: list[GpuWork]) -> int:
        seconds = gpu_seconds(work, resident=self.cache.loaded())
        return check_gpu_seconds(seconds, self.settings.gpu_seconds_max, work)

    def img2img(
        self,
        request: Img2ImgRequest | Img2ImgPlan,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
        live_preview: LivePreviewFn | None = None,
    ) -> Img2ImgResult:
        """Validate and run one Basic request; its result.

        Raises:
            ValueError: bad input, naming the parameter and the value.
            GenerationCancelled: the token was cancelled mid-run.
        """
        (result,) = self.run(request, progress=progress, cancel=cancel, live_preview=live_preview)
        return result

    def sweep(self, request: SweepRequest | SweepPlan, **options) -> Iterator[SweepProgress]:
        """Plan (unless given a plan) and run a sweep, yielding after each pipeline call."""
        return self.run(request, **options)

    def chain(self, request: ChainRequest | ChainPlan, **options) -> Iterator[ChainProgress]:
        """Plan (unless given a plan) and run a chain, yielding after each stage."""
        return self.run(request, **options)

    def depth(self, request: DepthRequest | DepthPlan, **options) -> Iterator[DepthProgress]:
        """Depth map, ControlNet img2img and restyle; yields when each is ready."""
        return self.run(request, **options)

    def estimate_depth(
        self, image, depth_estimator: str = "midas", *, invert: bool = False, normalize: bool = True
    ) -> Image.Image:
        """An estimator's depth map of `image` at the image's upright size: 8-bit greyscale, near bright.

        The estimator sees the image at the working size a generation would use, so a preview and the
        generation after it share one estimate.
        """
        estimator = check_model(depth_estimator, "depth", name="depth_estimator")
        invert, normalize = check_flag("invert_depth", invert), check_flag("normalize_depth", normalize)
        working = normalize_for_model(image, get_spec("sd15"), self.settings)
        array = self.depth_array(estimator.key, working.image)
        depth = depth_to_control(array, invert=invert, normalize=normalize)
        return depth.resize(working.original_size, Image.Resampling.BILINEAR)

    def depth_array(self, key: str, image: Image.Image, *, here: bool = False) -> np.ndarray:
        """estimate() with a few recent results remembered, keyed by estimator and pixels; on ZeroGPU in a GPU
        call unless `here` (inside a running workflow, already in one)."""
        digest = hashlib.sha256(image.tobytes()).hexdigest()
        memo_key = (key, image.size, image.mode, digest, self.mode)
        with self._memo_lock:
            if memo_key in self._depth_memo:
                self._depth_memo.move_to_end(memo_key)
                return self._depth_memo[memo_key]
        if here or self.gpu_calls is None:
            array = estimate(self.cache, key, image)
        else:
            array = self.gpu_calls.depth(key, image)
        with self._memo_lock:
            self._depth_memo[memo_key] = array
            while len(self._depth_memo) > DEPTH_MEMO_SIZE:
                self._depth_memo.popitem(last=False)
        return array

    # -- examples ------------------------------------------------------------------------------

    def example_images(self) -> dict[str, Path]:
        """The sample photos shipped in scikit-image, written once as PNG under the data folder."""
        from PIL import Image
        from skimage import data

        folder = Path(self.settings.data_dir) / "examples"
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for label, name in EXAMPLES.items():
            path = folder / f"{name}.png"
            if not path.is_file():
                pixels = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
                Image.fromarray(pixels).save(path)
            paths[label] = path
        # A 64 px copy: the x2 -> x4 upscale chain makes 8x its side, which stays quick on a CPU.
        small = folder / "astronaut-64.png"
        if not small.is_file():
            Image.open(paths["astronaut"]).resize((64, 64), Image.Resampling.LANCZOS).save(small)
        paths["astronaut, 64 px"] = small
        return paths

    def example_depth_map(self) -> Path:
        """The Middlebury motorcycle's ground-truth disparity (a real depth map, near large) as a 16-bit PNG.

        Disparity is proportional to inverse depth, so it is written scaled to the 16-bit range;
        its unknown pixels (inf) are written as 0, far.
        """
        path = Path(self.settings.data_dir) / "examples" / "motorcycle-disparity.png"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            disparity = motorcycle_disparity()
            finite = np.isfinite(disparity)
            scaled = np.where(finite, disparity, 0.0) / disparity[finite].max() * 65535.0
            Image.fromarray(np.round(scaled).astype(np.uint16)).save(path)
        return path


def motorcycle_disparity() -> np.ndarray:
    """skimage's Middlebury motorcycle disparity for the left view: float32, inf where unknown."""
    from skimage import data

    return data.stereo_motorcycle()[2]
