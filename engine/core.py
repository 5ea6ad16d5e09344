"""The Engine: the one object that owns settings, the model mode, the pipeline cache and examples.

The UI talks to this and nothing else; a script can too:

    from engine.core import Engine
    from engine.requests import Img2ImgRequest
    from engine.settings import Settings
    engine = Engine(Settings.from_env(models="tiny"))
    result = engine.img2img(Img2ImgRequest(image="cat.png", prompt="a cat wizard"))
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.basic import Img2ImgResult
from engine.cache import DevicePolicy, PipelineCache, load_options
from engine.catalog import ModelSpec, get_spec
from engine.chain import ChainPlan, ChainProgress, ChainRequest
from engine.depth import DepthPlan, DepthProgress, DepthRequest, depth_to_control, estimate
from engine.requests import Img2ImgPlan, Img2ImgRequest, check_flag, check_model, normalize_for_model
from engine.results import ResultStore
from engine.run import CancelToken, ProgressFn, StepReporter
from engine.settings import Settings
from engine.sweep import SweepPlan, SweepProgress, SweepRequest
from engine.workflow import RunContext
from engine.workflows import workflow_of

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
    """

    def __init__(self, settings: Settings, *, policy: DevicePolicy | None = None, probe_hub=None) -> None:
        _quiet_library_progress_bars()
        self.mode = resolve_mode(settings, probe_hub=probe_hub)
        self.policy = policy or DevicePolicy.detect(settings.offload, settings.compile, settings.cuda_graphs)
        self.quick = self.mode == "tiny" and self.policy.device == "cpu"
        self.settings = settings = settings.resolved(quick=self.quick)
        budget = int(settings.cache_budget_gb * 2**30) or None
        self.cache = PipelineCache(self.model_source, self.policy, budget, self.load_options)
        self._depth_memo: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self.results = ResultStore(max_bytes=settings.results_mb * 2**20)
        logger.info(
            "model mode %s (%s) on %s (%s)", self.mode, self.mode.reason, self.policy.device, self.policy.dtype
        )

    # -- models --------------------------------------------------------------------------------

    @property
    def twins_dir(self) -> Path:
        return Path(self.settings.data_dir) / "twins"

    def model_source(self, spec: ModelSpec) -> str:
        """What from_pretrained loads for a catalog entry: its Hub id, or its twin folder (built on demand)."""
        if self.mode == "hub":
            return spec.hub_id
        from engine.tiny import build_twin

        return str(build_twin(spec.key, self.twins_dir))

    def load_options(self, spec: ModelSpec) -> dict:
        """from_pretrained options for a catalog entry: weight format, fp16 variant, revision, safety checker."""
        return load_options(spec, self.policy, hub=self.mode == "hub", safety_checker=self.settings.safety_checker)

    def model_id(self, key: str) -> str:
        """The id a recipe records: the Hub id, or the twin's folder in tiny mode."""
        spec = get_spec(key)
        return spec.hub_id if self.mode == "hub" else str((self.twins_dir / key).resolve())

    @property
    def banner(self) -> str:
        """One line for the page header saying which models are live."""
        speedups = [
            name for name, on in (("CUDA graphs", self.policy.cuda_graphs), ("compiled", self.policy.compile)) if on
        ]
        details = ", ".join([str(self.policy.dtype).removeprefix("torch."), *speedups])
        device = f"{self.policy.device} ({details})"
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
        return f"Model mode: **hub**: real checkpoints from the Hugging Face Hub, on {device}.{checker}"

    # -- workflows -----------------------------------------------------------------------------

    def context(self, *, progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> RunContext:
        """What one run shares with the engine: cache, settings, a fresh step reporter, model ids."""
        return RunContext(
            cache=self.cache,
            settings=self.settings,
            reporter=StepReporter(progress=progress, cancel=cancel),
            model_id=self.model_id,
            model_mode=self.mode,
            estimate=self._estimate,
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
    ) -> Iterator[Any]:
        """Plan (unless given a plan) and run any workflow, yielding its progress as work finishes.

        Stop (the token) ends a run with its progress so far, `stopped` set; a Basic run has nothing to keep
        and raises GenerationCancelled.
        """
        workflow = workflow_of(request)
        plan = request if isinstance(request, workflow.plan) else self.plan(request)
        yield from workflow.run(plan, self.context(progress=progress, cancel=cancel))

    def img2img(
        self,
        request: Img2ImgRequest | Img2ImgPlan,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> Img2ImgResult:
        """Validate and run one Basic request; its result.

        Raises:
            ValueError: bad input, naming the parameter and the value.
            GenerationCancelled: the token was cancelled mid-run.
        """
        (result,) = self.run(request, progress=progress, cancel=cancel)
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
        array = self._estimate(estimator.key, working.image)
        depth = depth_to_control(array, invert=invert, normalize=normalize)
        return depth.resize(working.original_size, Image.Resampling.BILINEAR)

    def _estimate(self, key: str, image: Image.Image) -> np.ndarray:
        """estimate() with a few recent results remembered, keyed by estimator and pixels."""
        digest = hashlib.sha256(image.tobytes()).hexdigest()
        memo_key = (key, image.size, image.mode, digest, self.mode)
        with self.cache.lock:
            if memo_key in self._depth_memo:
                self._depth_memo.move_to_end(memo_key)
                return self._depth_memo[memo_key]
            array = estimate(self.cache, key, image)
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
