"""The Engine: the one object that owns settings, the model mode, the pipeline cache and examples.

The UI talks to this and nothing else; a script can too:

    from engine.core import Engine
    from engine.chain import ChainPlan, ChainProgress, ChainRequest, plan_chain, run_chain
from engine.settings import Settings
from engine.sweep import SweepPlan, SweepProgress, SweepSpec, plan_sweep, run_sweep
    from engine.requests import Img2ImgRequest
    engine = Engine(Settings.from_env(models="tiny"))
    result = engine.img2img(Img2ImgRequest(image="cat.png", prompt="a cat wizard"))
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from engine.basic import Img2ImgResult, run_img2img
from engine.cache import DevicePolicy, PipelineCache
from engine.catalog import ModelSpec, get_spec
from engine.chain import ChainPlan, ChainProgress, ChainRequest, plan_chain, run_chain
from engine.requests import Img2ImgRequest
from engine.run import CancelToken, ProgressFn, StepReporter
from engine.settings import Settings
from engine.sweep import SweepPlan, SweepProgress, SweepSpec, plan_sweep, run_sweep

logger = logging.getLogger(__name__)

EXAMPLES = {
    "astronaut": "astronaut",
    "chelsea the cat": "chelsea",
    "coffee": "coffee",
}


def resolve_mode(settings: Settings, *, probe_hub=None) -> str:
    """`hub` or `tiny`. `auto` picks hub when SD 1.5's weights are cached or the Hub answers, else tiny."""
    if settings.models != "auto":
        return settings.models
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(get_spec("sd15").hub_id, "model_index.json")
    if isinstance(cached, str):
        return "hub"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return "tiny"
    return "hub" if (probe_hub or _hub_answers)() else "tiny"


def _hub_answers(timeout: float = 3.0) -> bool:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        HfApi().model_info(get_spec("sd15").hub_id, timeout=timeout, token=False)
        return True
    except (HfHubHTTPError, OSError) as exc:
        logger.info("the Hugging Face Hub did not answer (%s): using the tiny twins", type(exc).__name__)
        return False


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
        self.settings = settings
        self.mode = resolve_mode(settings, probe_hub=probe_hub)
        self.policy = policy or DevicePolicy.detect(settings.offload, settings.compile)
        budget = int(settings.cache_budget_gb * 2**30) or None
        self.cache = PipelineCache(self.model_source, self.policy, budget)
        logger.info("model mode %s on %s (%s)", self.mode, self.policy.device, self.policy.dtype)

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

    def model_id(self, key: str) -> str:
        """The id a recipe records: the Hub id, or the twin's folder in tiny mode."""
        spec = get_spec(key)
        return spec.hub_id if self.mode == "hub" else str((self.twins_dir / key).resolve())

    @property
    def banner(self) -> str:
        """One line for the page header saying which models are live."""
        device = f"{self.policy.device} ({str(self.policy.dtype).removeprefix('torch.')})"
        if self.mode == "tiny":
            return (
                f"Model mode: **tiny**: random-weight twins of every model, on {device}. "
                "Images are noise from random weights; every workflow, size and parameter behaves as with "
                "the real checkpoints. Start with `--models hub` for real images."
            )
        return f"Model mode: **hub**: real checkpoints from the Hugging Face Hub, on {device}."

    # -- workflows -----------------------------------------------------------------------------

    def img2img(
        self,
        request: Img2ImgRequest,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> Img2ImgResult:
        """Validate and run one Basic request.

        Raises:
            ValueError: bad input, naming the parameter and the value.
            GenerationCancelled: the token was cancelled mid-run.
        """
        job = request.validate(self.settings)
        reporter = StepReporter(progress=progress, cancel=cancel)
        return run_img2img(
            self.cache, job, model_id=self.model_id(job.spec.key), model_mode=self.mode, reporter=reporter
        )

    def plan_sweep(self, spec: SweepSpec) -> SweepPlan:
        """Validate a sweep and plan its calls, before any work. Raises ValueError naming the axis and value."""
        return plan_sweep(spec, self.settings)

    def sweep(
        self,
        spec: SweepSpec | SweepPlan,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[SweepProgress]:
        """Plan (unless given a plan) and run a sweep, yielding after each pipeline call."""
        plan = spec if isinstance(spec, SweepPlan) else self.plan_sweep(spec)
        reporter = StepReporter(progress=progress, cancel=cancel)
        yield from run_sweep(self.cache, plan, reporter=reporter, model_id=self.model_id, model_mode=self.mode)

    def plan_chain(self, request: ChainRequest) -> ChainPlan:
        """Resolve a chain's stages, hand-overs and sizes before any work."""
        return plan_chain(request, self.settings)

    def chain(
        self,
        request: ChainRequest | ChainPlan,
        *,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[ChainProgress]:
        """Plan (unless given a plan) and run a chain, yielding after each stage."""
        plan = request if isinstance(request, ChainPlan) else self.plan_chain(request)
        reporter = StepReporter(progress=progress, cancel=cancel)
        yield from run_chain(self.cache, plan, reporter=reporter, model_id=self.model_id, model_mode=self.mode)

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
                Image.fromarray(getattr(data, name)()).save(path)
            paths[label] = path
        # A 64 px copy: the x2 -> x4 upscale chain makes 8x its side, which stays quick on a CPU.
        small = folder / "astronaut-64.png"
        if not small.is_file():
            Image.open(paths["astronaut"]).resize((64, 64), Image.Resampling.LANCZOS).save(small)
        paths["astronaut, 64 px"] = small
        return paths
