"""One sample per workflow, keyed by the registry's names (engine.workflows.registry.WORKFLOWS).

The fuzz, hardening, load, MCP, app and README tests read this table, and tests/test_workflows.py fails
while a registered workflow has no row: a new workflow is fuzzed, hardened, load-tested and served as an
endpoint and an MCP tool (its endpoint and tool are named like the workflow) by adding its row here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from PIL import Image, ImageDraw

from engine.recipes.recipe import Recipe
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.chain import ChainRequest
from engine.workflows.depth import DepthRequest
from engine.workflows.edit import EditRequest
from engine.workflows.inpaint import InpaintRequest
from engine.workflows.sweep import SweepRequest


@dataclass(frozen=True)
class WorkflowCase:
    """A workflow's sample.

    Args:
        request: image -> a small valid request on the twins (a few steps, a fixed seed).
        recipe: the last progress of that request's run -> the recipe of one of its images.
        injectable: recipe fields (paths into its JSON) a crafted PNG may put text into; each must be
            refused naming the field, or stay a literal in the script (tests/test_hardening.py).
        api: (image file, depth map file, seed) -> the endpoint's arguments, as gradio_client sends them
            (tests/test_load.py: small and quick on the twins).
        api_done: the endpoint's outputs for those arguments -> whether the job did all it was asked.
        mcp_required: the MCP tool's required parameters.
    """

    request: Callable[[Image.Image], Any]
    recipe: Callable[[Any], Recipe]
    injectable: tuple[tuple, ...]
    api: Callable[[Any, Any, int], tuple]
    api_done: Callable[[tuple], bool]
    mcp_required: frozenset[str]


TWO_STAGES = json.dumps(
    [{"model": "sd15", "num_inference_steps": 2}, {"model": "comic-diffusion", "num_inference_steps": 3}]
)
# img2img, then inpaint a region (a chain given a mask)
INPAINT_STAGES = json.dumps(
    [{"model": "sd15", "num_inference_steps": 2}, {"model": "sd15", "kind": "inpaint", "num_inference_steps": 3}]
)


# The /img2img endpoint's last five arguments at their defaults (the input's own size), for raw HTTP calls, which
# send every argument (gradio_client fills the defaults itself)
SIZE_DEFAULTS = ("Follow input", 512, 512, 1.0, "Just resize")


def middle_mask(image: Image.Image) -> Image.Image:
    """White where to inpaint: the middle third of `image`."""
    mask = Image.new("L", image.size, 0)
    width, height = image.size
    ImageDraw.Draw(mask).rectangle((width // 3, height // 3, 2 * width // 3, 2 * height // 3), fill=255)
    return mask


def basic_request(image: Image.Image) -> Img2ImgRequest:
    return Img2ImgRequest(image=image, prompt="a cat", num_inference_steps=2, strength=1.0, seed=3)


CASES: dict[str, WorkflowCase] = {
    "img2img": WorkflowCase(
        # resized to a size of its own, so the fuzz and the crafted recipes reach the output size's fields too
        request=lambda image: replace(
            basic_request(image), output_size="Resize to", width=64, height=96, resize_mode="Crop and resize"
        ),
        recipe=lambda result: result.recipe,
        injectable=(
            ("dtype",),
            ("model_id",),
            ("app_version",),
            ("revision",),
            ("generator_device",),
            ("scheduler",),
            ("pipeline",),
            ("model",),
            ("extra", "family"),
            ("extra", "index"),
            ("seeds", 0),
            ("size", 0),
            ("parameters", "prompt"),
            ("extra", "output_size"),
            ("extra", "resize_mode"),
            ("extra", "resize_to", 0),
        ),
        api=lambda image, depth, seed: (image, "a cat", "", "sd15", 1.0, 7.5, 2, seed),
        api_done=lambda out: len(out[0]) == 1,  # the gallery: one image
        mcp_required=frozenset({"image", "prompt"}),
    ),
    "sweep": WorkflowCase(
        request=lambda image: SweepRequest(base=basic_request(image), x_axis="guidance_scale", x_values="3, 7"),
        recipe=lambda progress: progress.recipes[1],
        injectable=(
            ("extra", "position"),
            ("extra", "scheduler_name"),
            ("extra", "batch", 0, "seed"),
            ("parameters", "strength"),
            ("parameters", "num_inference_steps"),
        ),
        api=lambda image, depth, seed: (
            image,
            "a cat",
            "",
            "sd15",
            1.0,
            7.5,
            2,
            seed,
            "guidance_scale",
            "3, 7",
            "",
            "",
        ),
        api_done=lambda out: len(out[2]) == 2,  # the cells
        mcp_required=frozenset({"image", "prompt"}),
    ),
    "chain": WorkflowCase(
        request=lambda image: ChainRequest(
            image=image, preset="image-image-image", prompt="a cat", seed=3, stages=None
        ),
        recipe=lambda progress: progress.results[-1].recipe,
        injectable=(
            ("parameters", "stages", 0, "model"),
            ("parameters", "stages", 0, "kind"),
            ("parameters", "stages", 0, "model_id"),
            ("parameters", "stages", 0, "input_size", 0),
            ("parameters", "stages", 1, "receives"),
        ),
        api=lambda image, depth, seed: (image, "", "a cat", seed, TWO_STAGES),
        api_done=lambda out: "Done: seed" in out[3],  # the summary
        mcp_required=frozenset(),
    ),
    "depth": WorkflowCase(
        request=lambda image: DepthRequest(image=image, num_inference_steps=2, restyle_model="none", seed=3),
        recipe=lambda progress: progress.controlnet_recipe,
        injectable=(
            ("extra", "controlnet_id"),
            ("extra", "controlnet"),
            ("extra", "control_type"),
            ("extra", "canny_low"),
            ("extra", "canny_high"),
            ("extra", "scribble_inverted"),
        ),
        api=lambda image, depth, seed: (image, depth, "midas", "a cat", "", 1.0, 7.5, 2, seed, 0.8, "none"),
        api_done=lambda out: len(out[1]) == 3,  # init, depth, ControlNet
        mcp_required=frozenset({"image"}),
    ),
    "inpaint": WorkflowCase(
        # an outpaint with a mask, so its recipe holds every field of its own
        request=lambda image: InpaintRequest(
            image=image,
            mask=middle_mask(image),
            prompt="a dog",
            num_inference_steps=2,
            strength=1.0,
            seed=3,
            expand_right=8,
            expand_fill="#336699",
            color_match=True,
        ),
        recipe=lambda result: result.recipe,
        injectable=(
            ("extra", "inpaint_area"),
            ("extra", "mask_sha256"),
            ("extra", "mask_blur"),
            ("extra", "padding"),
            ("extra", "outpaint", 0),
            ("extra", "expand_fill"),
            ("extra", "color_match"),
        ),
        # the depth map is the mask: grey, its near half white enough to inpaint
        api=lambda image, depth, seed: (image, depth, "a dog", "", "sd15", 1.0, 7.5, 2, seed),
        api_done=lambda out: len(out[0]) == 1,  # the gallery: one image
        mcp_required=frozenset({"image"}),  # the mask too, unless the call outpaints
    ),
    "edit": WorkflowCase(
        # resized to a size of its own, so the crafted recipes reach the output size's fields too
        request=lambda image: EditRequest(
            image=image,
            prompt="make it night",
            num_inference_steps=2,
            seed=3,
            output_size="Resize to",
            width=64,
            height=96,
            resize_mode="Crop and resize",
        ),
        recipe=lambda result: result.recipe,
        injectable=(
            ("extra", "image_sha256"),
            ("extra", "outputs_sha256", 0),
            ("extra", "resize_mode"),
            ("parameters", "prompt"),
            ("parameters", "max_area"),
        ),
        api=lambda image, depth, seed: (image, "make it night", "flux2-klein-4b", *(None,) * 3, "", 1.0, 2, seed),
        api_done=lambda out: len(out[0]) == 1,  # the gallery: one image
        mcp_required=frozenset({"image"}),
    ),
}


def run_to_end(engine, request) -> Any:
    """A request's last progress (Basic's one result), run through the Engine as the app runs it."""
    *_, last = engine.run(request)
    return last
