"""Faults: out of memory in the UNet and the VAE, NaN from the VAE, the safety checker, model switching."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import weakref
from collections.abc import Callable

import numpy as np
import pytest
import torch

from engine.core import Engine
from engine.pipelines.calls import NonFiniteOutput, OutOfMemory
from engine.workflows.basic import Img2ImgRequest

STEPS = 4


@pytest.fixture()
def local(settings):
    """An engine with its own cache, so remedies (tiling, evictions) stay out of the shared one."""
    engine = Engine(settings)
    yield engine
    engine.cache.clear()


def request(photo, **fields):
    return Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=STEPS, seed=3, **fields)


def fail(module: torch.nn.Module, times: int, error: Callable[[], Exception]):
    """Make `module` raise `error()` on its next `times` forward calls; returns the hook handle."""
    left = [times]

    def hook(mod, args):
        if left[0] > 0:
            left[0] -= 1
            raise error()

    return module.register_forward_pre_hook(hook)


def oom() -> Exception:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")


def test_out_of_memory_in_the_unet_is_retried_once_with_the_same_result(local, photo):
    expected = local.img2img(request(photo)).images[0]
    local.cache.get("comic-diffusion")  # another model, which the remedy unloads
    pipe = local.cache.get("sd15")
    handle = fail(pipe.unet, 1, oom)
    try:
        result = local.img2img(request(photo))
    finally:
        handle.remove()
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(expected))  # same generator states
    assert result.steps_run == int(STEPS * 0.8) + 1  # the failed attempt's steps are not counted
    assert any(
        "out of memory in the denoising loop" in note and "1 other model(s) unloaded" in note for note in result.notes
    )
    assert "comic-diffusion" not in local.cache.loaded()


def test_out_of_memory_twice_gives_a_clear_message_and_the_next_request_succeeds(local, photo):
    pipe = local.cache.get("sd15")
    handle = fail(pipe.unet, 2, oom)
    try:
        with pytest.raises(OutOfMemory, match="out of memory in the denoising loop, again after a retry"):
            local.img2img(request(photo))
    finally:
        handle.remove()
    assert local.img2img(request(photo)).images[0].size == (136, 96)


def test_out_of_memory_in_the_vae_decode_retries_with_tiling(local, photo):
    pipe = local.cache.get("sd15")
    handle = fail(pipe.vae.decoder, 1, oom)
    try:
        result = local.img2img(request(photo))
    finally:
        handle.remove()
    assert pipe.vae.use_tiling
    assert any("out of memory in the VAE decode; retried once with VAE tiling" in note for note in result.notes)
    assert np.asarray(result.images[0]).std() > 0  # a real decode, not a black square


def test_memory_is_freed_and_nothing_is_kept_alive_by_the_failed_call(local, photo):
    """The failed call's tensors are released: a weak reference to one dies before the retry succeeds."""
    pipe = local.cache.get("sd15")
    seen: list[weakref.ref] = []

    def keep_a_weak_ref(module, args, kwargs, output):
        seen.append(weakref.ref(output.sample if hasattr(output, "sample") else output[0]))

    left = [1]

    def fail_after_a_step(module, args, kwargs, output):
        if left[0] > 0:
            left[0] -= 1
            raise oom()

    h1 = pipe.unet.register_forward_hook(keep_a_weak_ref, with_kwargs=True)
    h2 = pipe.unet.register_forward_hook(fail_after_a_step, with_kwargs=True)
    try:
        local.img2img(request(photo))
    finally:
        h1.remove()
        h2.remove()
    gc.collect()
    assert seen and seen[0]() is None


def test_nan_from_the_vae_is_retried_with_the_vae_upcast(local, photo):
    expected = local.img2img(request(photo)).images[0]
    pipe = local.cache.get("sd15")
    left = [1]

    def nan_once(module, args, output):
        if left[0] > 0:
            left[0] -= 1
            return torch.full_like(output, float("nan"))
        return output

    handle = pipe.vae.decoder.register_forward_hook(nan_once)
    try:
        result = local.img2img(request(photo))
    finally:
        handle.remove()
    assert any("the VAE decoded NaN; retried once with the VAE upcast to float32" in n for n in result.notes)
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(expected))


def test_nan_that_persists_is_reported_never_a_black_image(local, photo):
    pipe = local.cache.get("sd15")
    handle = pipe.vae.decoder.register_forward_hook(lambda m, a, out: torch.full_like(out, float("nan")))
    try:
        with pytest.raises(NonFiniteOutput, match="black image"):
            local.img2img(request(photo))
    finally:
        handle.remove()
    assert np.asarray(local.img2img(request(photo)).images[0]).std() > 0


def test_a_safety_checker_flag_is_a_message_not_a_black_square(local, photo, monkeypatch):
    from ui.basic import result_text

    pipe = local.cache.get("sd15")

    def checker(image, device, dtype):  # flags the second image, blacking it as diffusers' checker does
        image = image.clone()
        image[1] = 0
        return image, [False, True]

    monkeypatch.setattr(pipe, "run_safety_checker", checker)
    result = local.img2img(request(photo, num_images=2))
    assert result.nsfw == (False, True) and result.shown == [0]
    assert result.grid.size == (2 * 136, 96)  # init and the one image shown
    text = result_text(result)
    assert "flagged 1 image(s) (seed 4); they are not shown" in text


def test_switching_models_twenty_times_keeps_memory_flat(settings, photo):
    """With a budget that fits one model, every switch evicts the last: nothing stays alive."""
    from dataclasses import replace

    engine = Engine(replace(settings, cache_budget_gb=0.0001))
    models = ["sd15", "sdxl-refiner", "kandinsky22", "comic-diffusion", "elden-ring"]
    alive: list[weakref.ref] = []
    rss = []
    for switch in range(20):
        key = models[switch % len(models)]
        engine.img2img(
            Img2ImgRequest(image=photo, prompt="a cat", model=key, num_inference_steps=2, strength=1.0, seed=switch)
        )
        pipe = engine.cache.peek(key)
        alive.append(weakref.ref(getattr(pipe, "unet", None) or pipe.decoder_pipe.unet))
        del pipe
        gc.collect()
        rss.append(_rss_mb())
        assert list(engine.cache.loaded()) == [key]
    assert sum(ref() is not None for ref in alive) == 1  # only the model loaded last
    growth = max(rss[10:]) - rss[5]
    assert growth < 60, f"memory grew {growth:.0f} MB over 15 switches: {rss}"


def _rss_mb() -> float:
    libc = ctypes.util.find_library("c")
    if libc:
        ctypes.CDLL(libc).malloc_trim(0)  # give freed heap back, so RSS reflects live memory
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
