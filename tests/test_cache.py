import weakref

import pytest
import torch

from engine.pipelines.cache import PipelineCache
from engine.pipelines.device import DevicePolicy, module_bytes


@pytest.fixture()
def cache(engine):
    return PipelineCache(engine.model_source, DevicePolicy(), budget_bytes=10**9)


def test_second_get_reuses_the_pipeline(cache):
    first = cache.get("sd15", "img2img")
    assert cache.get("sd15", "img2img") is first
    assert cache.loads == 1


def test_from_pipe_shares_weight_objects_and_keeps_dtype(engine):
    cache = PipelineCache(engine.model_source, DevicePolicy(dtype=torch.bfloat16), budget_bytes=10**9)
    img2img = cache.get("sd15", "img2img")
    text2img = cache.get("sd15", "text2img")
    assert type(text2img).__name__ == "StableDiffusionPipeline"
    assert text2img.unet is img2img.unet and text2img.vae is img2img.vae
    assert text2img.text_encoder is img2img.text_encoder
    assert img2img.unet.dtype == torch.bfloat16 and text2img.dtype == torch.bfloat16
    assert cache.loads == 1
    assert cache.loaded()["sd15"]["kinds"] == ["img2img", "text2img"]


def test_eviction_frees_the_weights(cache):
    unet = weakref.ref(cache.get("sd15", "img2img").unet)
    assert unet() is not None
    assert cache.evict("sd15")
    assert unet() is None, "something still holds the evicted UNet"
    assert cache.loaded() == {}


def test_lru_eviction_under_the_budget(engine):
    probe = PipelineCache(engine.model_source, DevicePolicy(), budget_bytes=10**9)
    size = module_bytes(probe.get("sd15"))
    probe.clear()
    cache = PipelineCache(engine.model_source, DevicePolicy(), budget_bytes=int(size * 2.5))
    first = weakref.ref(cache.get("sd15").unet)
    cache.get("comic-diffusion")
    cache.get("sd15")  # touch: comic-diffusion is now least recently used
    cache.get("pixel-art-style")
    assert list(cache.loaded()) == ["sd15", "pixel-art-style"]
    assert first() is not None


def test_kind_the_model_does_not_serve(cache):
    with pytest.raises(ValueError, match="model 'sdxl-refiner' has no text2img pipeline"):
        cache.get("sdxl-refiner", "text2img")


def test_a_model_that_cannot_load_says_which_and_why(tmp_path):
    from engine.pipelines.loading import ModelUnavailable

    cache = PipelineCache(lambda spec: str(tmp_path / "missing"), DevicePolicy(), budget_bytes=10**9)
    with pytest.raises(ModelUnavailable, match=r"model 'sd15' \(stable-diffusion-v1-5/stable-diffusion-v1-5\)"):
        cache.get("sd15")
    assert cache.loaded() == {}


def test_speed_options_apply_and_keep_the_image(engine, photo):
    import numpy as np

    from engine.workflows.basic import Img2ImgRequest, run_img2img
    from engine.workflows.shape import RunContext

    plan = Img2ImgRequest(image=photo, prompt="a cat", strength=0.6, num_inference_steps=4, seed=3).validate(
        engine.settings
    )
    eager = PipelineCache(engine.model_source, DevicePolicy(), budget_bytes=10**9)
    fast = PipelineCache(engine.model_source, DevicePolicy(channels_last=True, fuse_qkv=True), budget_bytes=10**9)
    pipe = fast.get("sd15")
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert {type(p).__name__ for p in pipe.unet.attn_processors.values()} == {"FusedAttnProcessor2_0"}
    images = [run_img2img(plan, RunContext(cache=c, settings=engine.settings)).images[0] for c in (eager, fast)]
    assert np.abs(np.asarray(images[0], dtype=np.int16) - np.asarray(images[1], dtype=np.int16)).max() <= 2


def test_adopt_registers_an_in_memory_pipeline(engine):
    source = PipelineCache(engine.model_source, DevicePolicy(), budget_bytes=10**9).get("sd15")
    cache = PipelineCache(engine.model_source, DevicePolicy(), budget_bytes=10**9)
    cache.adopt("sd15", "img2img", source)
    assert cache.get("sd15") is source and cache.loads == 0
    assert cache.get("sd15", "text2img").unet is source.unet


def test_a_bin_only_repository_loads_with_one_line_that_says_so(engine, caplog):
    """diffusers logged an error and 'Defaulting to unsafe serialization' for every .bin-only repository's
    components, though it reads them weights-only: the log looked broken in normal use."""
    import logging

    engine.cache.clear()
    with caplog.at_level(logging.INFO):
        engine.cache.get("comic-diffusion")  # its repository publishes .bin weights only
    lines = [record.getMessage() for record in caplog.records]
    assert not [line for line in lines if "unsafe serialization" in line or "error occurred while trying" in line]
    loaded = [line for line in lines if line.startswith("loaded comic-diffusion")]
    assert len(loaded) == 1 and "publishes .bin weights only, read weights-only" in loaded[0]
