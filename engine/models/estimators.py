"""Depth estimators behind one interface: `predict(image) -> float map, near large`.

controlnet-aux's annotators (MiDaS, ZoeDepth, LeReS; weights from lllyasviel/Annotators) and
transformers' Depth Anything V2 Small. Each is loaded through its library's own `from_pretrained`,
from a Hub id or a twin folder alike, by `PipelineCache` (kind "depth"), so estimators share the
cache's lock, LRU and memory budget with the pipelines.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from engine.models.catalog import ModelSpec

# controlnet-aux resizes the short side to this before running its network; 384 is DPT's native size.
DETECT_RESOLUTION = 384


@dataclass
class Estimator:
    """A loaded depth estimator. `components` lets the cache count its bytes as it counts a pipeline's."""

    spec: ModelSpec
    model: torch.nn.Module
    detector: Any = None  # controlnet-aux's detector object (untyped)
    processor: Any = None  # transformers' image processor

    @property
    def components(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def to(self, device: str) -> Estimator:
        (self.detector or self.model).to(device)  # a detector moves all its networks (LeReS has two)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def predict(self, image: Image.Image) -> np.ndarray:
        """Relative depth of an RGB image as float32 (H, W) at the image's size; larger is nearer."""
        if self.processor is not None:
            return self._predict_transformers(image)
        return self._predict_annotator(image)

    def _predict_annotator(self, image: Image.Image) -> np.ndarray:
        # the annotators' own convention is an 8-bit map, near bright, at their working resolution
        with torch.inference_mode():
            result = self.detector(
                np.asarray(image.convert("RGB")),
                detect_resolution=DETECT_RESOLUTION,
                image_resolution=DETECT_RESOLUTION,
                output_type="np",
            )
        grey = np.asarray(result, dtype=np.float32)
        if grey.ndim == 3:
            grey = grey[..., 0]
        return _resize_float(grey, image.size)

    def _predict_transformers(self, image: Image.Image) -> np.ndarray:
        inputs = self.processor(images=image.convert("RGB"), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        processed = self.processor.post_process_depth_estimation(outputs, target_sizes=[(image.height, image.width)])
        return processed[0]["predicted_depth"].float().cpu().numpy()


def _resize_float(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if array.shape[::-1] == tuple(size):
        return array
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))


def _import_controlnet_aux():
    """controlnet-aux imports every annotator at once, with a page of deprecation warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import controlnet_aux

    return controlnet_aux


# Estimator families that transformers loads (AutoModelForDepthEstimation); the others are controlnet-aux's.
TRANSFORMERS_ESTIMATORS = frozenset({"depth-anything-v2"})
# The files each controlnet-aux annotator reads from lllyasviel/Annotators.
ANNOTATOR_FILES = {
    "midas": ("dpt_hybrid-midas-501f0c75.pt",),
    "zoe": ("ZoeD_M12_N.pt",),
    "leres": ("res101.pth", "latest_net_G.pth"),
}


def _annotator_folder(spec: ModelSpec, source: str, revision: str | None) -> str:
    """A folder holding the annotator's files: the twin folder, or the Hub snapshot they were fetched into
    (controlnet-aux's own loader cannot pin a revision, so the files are fetched here)."""
    if os.path.isdir(source):
        return source
    from huggingface_hub import hf_hub_download

    paths = [hf_hub_download(source, name, revision=revision) for name in ANNOTATOR_FILES[spec.family]]
    return os.path.dirname(paths[0])


def load_estimator(spec: ModelSpec, source: str, revision: str | None = None) -> Estimator:
    """Load the estimator of a catalog entry of kind "depth" from a Hub id or a folder.

    Raises:
        OSError: weights missing (no network, not in the cache); ValueError/RuntimeError: not loadable;
        pickle.UnpicklingError: an annotator file that is not a plain state dict (torch's weights-only load).
    """
    if spec.family in TRANSFORMERS_ESTIMATORS:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        model = AutoModelForDepthEstimation.from_pretrained(source, use_safetensors=True, revision=revision).eval()
        processor = AutoImageProcessor.from_pretrained(source, revision=revision)
        return Estimator(spec, model, processor=processor)
    aux = _import_controlnet_aux()
    detector_class = {"midas": aux.MidasDetector, "zoe": aux.ZoeDetector, "leres": aux.LeresDetector}.get(spec.family)
    if detector_class is None:
        raise ValueError(f"{spec.key!r} is not a depth estimator")
    detector = detector_class.from_pretrained(_annotator_folder(spec, source, revision))
    return Estimator(spec, detector.model, detector=detector)
