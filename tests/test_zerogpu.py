"""ZeroGPU: GPU work runs in `spaces.GPU` calls sized by their plans; the device policy; a GPU torch cannot use.

ZeroGPU itself cannot run here (it needs Hugging Face's GPU scheduler). tests/fake_spaces stands in for
the `spaces` package and does what the real `spaces.GPU` does around a call, minus the GPU: it asks the
duration function with the call's arguments, then passes the arguments to the function and its results
back through pickle (ZeroGPU runs the call in a forked worker and moves both across as pickles).
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from pixels import assert_same_pixels
from workflow_cases import INPAINT_STAGES, middle_mask

from engine import hosting
from engine.base.settings import Settings
from engine.core import Engine, preload_keys
from engine.pipelines.device import DevicePolicy
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.chain import ChainRequest
from engine.workflows.depth import DepthRequest
from engine.workflows.edit import EditRequest
from engine.workflows.inpaint import InpaintRequest
from engine.workflows.shape import GpuWork
from engine.workflows.sweep import SweepRequest

STEPS = 4


def fake_spaces():
    """tests/fake_spaces/spaces (the stand-in for the spaces package), imported under another name."""
    path = Path(__file__).parent / "fake_spaces" / "spaces" / "__init__.py"
    spec = importlib.util.spec_from_file_location("fake_spaces", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorder:
    """spaces.GPU as the stand-in makes it, recording (function name, seconds asked) in `calls`."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.gpu = fake_spaces().make_gpu(lambda name, seconds: self.calls.append((name, seconds)))

    def __call__(self, *, duration):
        return self.gpu(duration=duration)


@pytest.fixture()
def zero(settings):
    """An engine as on a ZeroGPU Space (CUDA absent, as here), its GPU work through a Recorder."""
    from ui.zerogpu import attach

    engine = Engine(settings, zero_gpu=True)
    recorder = Recorder()
    attach(engine, gpu=recorder)
    return engine, recorder


def test_zero_gpu_is_read_from_the_environment_as_spaces_reads_it():
    for value in ("true", "True", "1", "t", " TRUE "):
        assert hosting.on_zero_gpu({"SPACES_ZERO_GPU": value})
    for value in ("", "false", "0", "no"):
        assert not hosting.on_zero_gpu({"SPACES_ZERO_GPU": value})
    assert not hosting.on_zero_gpu({})


def test_the_zero_gpu_policy_keeps_models_resident_and_uncompiled():
    policy = DevicePolicy.detect("auto", compile=True, cuda_graphs=True, zero_gpu=True, cuda=True)
    assert (policy.device, policy.dtype, policy.offload) == ("cuda", torch.float16, "none")
    assert not policy.compile and not policy.cuda_graphs and policy.zero_gpu
    # off ZeroGPU the same machine keeps what the owner asked for
    dedicated = DevicePolicy.detect("auto", compile=True, cuda_graphs=True, zero_gpu=False, cuda=True)
    assert dedicated.compile and dedicated.cuda_graphs and dedicated.offload == "auto" and not dedicated.zero_gpu
    assert DevicePolicy.detect(zero_gpu=True, cuda=False) == DevicePolicy()


def test_every_workflow_runs_through_one_sized_gpu_call_and_equals_the_local_run(engine, zero, photo):
    zero_engine, recorder = zero
    (edited,) = engine.run(EditRequest(image=photo, prompt="make it night", num_inference_steps=STEPS, seed=8))
    requests = [
        Img2ImgRequest(image=photo, prompt="a cat wizard", num_inference_steps=STEPS, seed=3, num_images=2),
        SweepRequest(
            base=Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=STEPS, seed=5),
            x_axis="guidance_scale",
            x_values="3, 9",
        ),
        ChainRequest(image=photo, preset="image-image-image", prompt="a cat", seed=7),
        DepthRequest(image=photo, prompt="a cat", num_inference_steps=STEPS, seed=2),
        InpaintRequest(image=photo, mask=middle_mask(photo), prompt="a dog", num_inference_steps=STEPS, seed=4),
        ChainRequest(image=photo, preset="", stages=INPAINT_STAGES, seed=6, mask=middle_mask(photo)),
        # an edit continuing an earlier one: the previous result's recipe and images cross to the GPU too
        EditRequest(
            image=edited.images[0], prompt="add snow", num_inference_steps=STEPS, seed=9, previous=edited.previous(0)
        ),
    ]
    names = []
    for request in requests:
        plan = engine.plan(request)
        expected_seconds = zero_engine.gpu_seconds(plan)  # asked before the call, as ZeroGPU asks it
        assert expected_seconds == hosting.gpu_seconds(zero_engine.gpu_work(plan), resident=zero_engine.cache.loaded())
        before = len(recorder.calls)
        local = list(engine.run(plan))
        remote = list(zero_engine.run(plan))
        assert len(recorder.calls) == before + 1, f"{type(request).__name__} made {len(recorder.calls) - before} calls"
        name, seconds = recorder.calls[-1]
        names.append(name)
        assert seconds == expected_seconds
        assert len(remote) == len(local)
        assert_same_pixels(local[-1], remote[-1])
    # Basic ends with one result (a plain call: its progress bar works on ZeroGPU); the others stream
    assert names == [
        "_run_to_end",
        "_run_streaming",
        "_run_streaming",
        "_run_streaming",
        "_run_to_end",
        "_run_streaming",
        "_run_to_end",
    ]


def test_a_depth_estimate_is_its_own_sized_call(engine, zero, photo):
    zero_engine, recorder = zero
    width, height = engine.plan(DepthRequest(image=photo, prompt="x")).image.size
    expected = hosting.gpu_seconds([GpuWork("midas", 1, width * height)], resident=zero_engine.cache.loaded())
    local = engine.estimate_depth(photo, "midas")
    remote = zero_engine.estimate_depth(photo, "midas")
    assert np.array_equal(np.asarray(local), np.asarray(remote))
    assert recorder.calls == [("_estimate", expected)]
    zero_engine.estimate_depth(photo, "midas")  # remembered: no second call
    assert len(recorder.calls) == 1


def test_a_run_past_the_spaces_limit_is_refused_before_any_gpu_call(settings, photo):
    from dataclasses import replace

    from ui.zerogpu import attach

    engine = Engine(replace(settings, gpu_seconds_max=40), zero_gpu=True)
    recorder = Recorder()
    attach(engine, gpu=recorder)
    big = SweepRequest(
        base=Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=50, seed=5, strength=1.0),
        x_axis="seed",
        x_values="1, 2, 3, 4, 5, 6",
    )
    with pytest.raises(ValueError, match=r"about \d+ s of GPU time .*allows 40 s per run \(STUDIO_GPU_SECONDS_MAX\)"):
        list(engine.run(big))
    assert recorder.calls == []


def test_call_sizes_grow_with_the_work_and_count_models_loaded_at_start():
    one = [GpuWork("sd15", 40, 512 * 512)]
    # 10 s start + 10 s load + 40 steps x 0.06 s + 0.26 MP x 0.3 s decode, x 1.5, rounded up
    assert hosting.gpu_seconds(one) == 34
    assert hosting.gpu_seconds(one, resident={"sd15"}) == 19
    assert hosting.gpu_seconds([GpuWork("sd15", 80, 512 * 512)]) > hosting.gpu_seconds(one)
    assert hosting.gpu_seconds([GpuWork("sd15", 40, 1024 * 1024)]) > hosting.gpu_seconds(one)
    assert hosting.gpu_seconds([GpuWork("sd15", 40, 512 * 512, images=4)]) > hosting.gpu_seconds(one)
    assert hosting.gpu_seconds([GpuWork("sdxl-refiner", 40, 512 * 512)]) > hosting.gpu_seconds(one)
    # a small image still pays for a whole step
    assert hosting.gpu_seconds([GpuWork("sd15", 40, 64 * 64)]) == hosting.gpu_seconds([GpuWork("sd15", 40, 0)])


def test_preloaded_models_are_loaded_before_the_first_run(settings):
    from dataclasses import replace

    engine = Engine(replace(settings, preload="sd15, controlnet-depth"))
    assert engine.preload() == ["sd15", "controlnet-depth"]
    assert {"sd15", "controlnet-depth"} <= set(engine.cache.loaded())
    assert preload_keys(settings, zero_gpu=True) == ["sd15"]  # ZeroGPU's default: the default model
    assert preload_keys(settings, zero_gpu=False) == []
    with pytest.raises(ValueError, match=r"STUDIO_PRELOAD must list catalog keys among .*; got 'midas'"):
        Engine(replace(settings, preload="midas"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_lock_held_when_zero_gpu_forks_its_worker_is_free_in_the_worker(settings):
    """ZeroGPU forks a worker per GPU call while other requests' threads run: a lock one of them held at
    that moment must not stay held in the worker (its first model load there would hang)."""
    engine = Engine(settings)
    for owner, name in ((engine.cache, "lock"), (engine, "_memo_lock")):
        held, release = threading.Event(), threading.Event()

        def hold(lock=getattr(owner, name), held=held, release=release):
            with lock:
                held.set()
                release.wait(60)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(60)
        pid = os.fork()
        if pid == 0:  # the worker: it must get the lock at once
            os._exit(0 if getattr(owner, name).acquire(timeout=5) else 1)
        _, status = os.waitpid(pid, 0)
        release.set()
        holder.join(60)
        assert os.waitstatus_to_exitcode(status) == 0, f"{name} stayed held in the forked worker"


def test_a_gpu_torch_cannot_use_is_said_with_the_driver_and_the_fix(tmp_path):
    version = tmp_path / "version"
    version.write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.129.03  Thu Oct 19 18:56:32 UTC 2023\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
    )
    driver = hosting.nvidia_driver(version)
    assert driver == "535.129.03"
    assert hosting.nvidia_driver(tmp_path / "absent") is None
    old_driver = hosting.cuda_unusable(
        driver=driver, torch_version="2.14.1+cu130", torch_cuda="13.0", cuda_available=False
    )
    assert "driver 535.129.03 is older than torch 2.14.1+cu130 needs" in old_driver
    assert "CUDA 13.0, which runs on drivers 580.65.06 and newer" in old_driver
    cpu_build = hosting.cuda_unusable(driver=driver, torch_version="2.14.1+cpu", torch_cuda=None, cuda_available=False)
    assert "CPU-only build" in cpu_build
    assert hosting.cuda_unusable(driver=driver, torch_version="2.14.1", torch_cuda="12.8", cuda_available=True) is None
    assert hosting.cuda_unusable(driver=None, torch_version="2.14.1", torch_cuda="13.0", cuda_available=False) is None


def test_zero_gpu_without_cuda_starts_on_the_cpu_and_says_so(settings):
    engine = Engine(settings, zero_gpu=True)
    assert engine.policy.device == "cpu" and engine.mode == "tiny"
    assert "SPACES_ZERO_GPU is set but CUDA is not available" in engine.warning
    assert "on ZeroGPU" in engine.banner
    assert Engine(settings, zero_gpu=False).warning == ""  # this machine has no NVIDIA driver


def test_on_zero_gpu_the_gpu_queue_lets_runs_overlap(settings):
    import ui
    from ui.events import GPU_QUEUE

    def gpu_limits(engine):
        app = ui.build_app(engine)
        return {fn.concurrency_limit for fn in app.fns.values() if fn.concurrency_id == GPU_QUEUE}

    assert gpu_limits(Engine(settings, zero_gpu=False)) == {1}
    assert gpu_limits(Engine(settings, zero_gpu=True)) == {None}


def test_settings_parse_the_zero_gpu_limits():
    parsed = Settings.from_env({"STUDIO_GPU_SECONDS_MAX": "90", "STUDIO_PRELOAD": "sd15"})
    assert (parsed.gpu_seconds_max, parsed.preload) == (90, "sd15")
    with pytest.raises(ValueError, match="STUDIO_GPU_SECONDS_MAX must be a int, got 'lots'"):
        Settings.from_env({"STUDIO_GPU_SECONDS_MAX": "lots"})


def test_app_py_on_zero_gpu_preloads_and_runs_every_gpu_endpoint_in_a_sized_call(tmp_path, settings):
    """`python app.py` with SPACES_ZERO_GPU=true (CUDA absent, as here) and the spaces stand-in first on the
    path: it starts in tiny mode, loads SD 1.5 before the page opens, says there is no GPU, and each API
    call reaches the GPU through one spaces.GPU call asking for its plan's seconds."""
    import httpx
    from gradio_client import Client, handle_file
    from PIL import Image
    from ports import clean_env, free_port, serving
    from skimage import data

    from engine.core import Engine

    Image.fromarray(data.chelsea()).resize((128, 96)).save(tmp_path / "cat.png")
    calls = tmp_path / "gpu-calls.jsonl"
    port = free_port()
    env = clean_env(
        SPACES_ZERO_GPU="true",
        PYTHONPATH=str(Path(__file__).parent / "fake_spaces"),
        FAKE_SPACES_LOG=str(calls),
        HF_HUB_OFFLINE="1",
        GRADIO_TEMP_DIR=str(tmp_path / "gradio"),
        STUDIO_PORT=str(port),
        STUDIO_DATA_DIR=str(settings.data_dir),  # the session's twins: built once
        STUDIO_MODELS="tiny",
    )
    log = tmp_path / "app.log"
    with serving([], env, log):
        config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=30).text
        assert "Model mode: **tiny**" in config and "on ZeroGPU, a GPU lent per run" in config
        assert "SPACES_ZERO_GPU is set but CUDA is not available" in config
        assert "loaded sd15 at start (STUDIO_PRELOAD)" in log.read_text()
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        cat = handle_file(str(tmp_path / "cat.png"))
        client.predict(image=cat, prompt="a cat wizard", num_inference_steps=STEPS, seed=1, api_name="/img2img")
        client.predict(
            image=cat, prompt="a cat", num_inference_steps=STEPS, x_axis="seed", x_values="1, 2", api_name="/sweep"
        )
        client.predict(image=cat, api_name="/estimate_depth")
    asked = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [call["task"] for call in asked] == ["_run_to_end", "_run_streaming", "_estimate"]
    # the seconds are the plans' own: the same requests sized here by an engine with SD 1.5 loaded at start
    from dataclasses import replace

    here = Engine(replace(settings, preload="sd15"), zero_gpu=True)
    here.preload()
    image = tmp_path / "cat.png"
    basic = Img2ImgRequest(image=str(image), prompt="a cat wizard", num_inference_steps=STEPS, seed=1)
    base = Img2ImgRequest(image=str(image), prompt="a cat", num_inference_steps=STEPS)
    sweep = SweepRequest(base=base, x_axis="seed", x_values="1, 2")
    depth_image = here.plan(DepthRequest(image=str(image), prompt="x")).image.image
    assert [call["seconds"] for call in asked] == [
        here.gpu_seconds(basic),
        here.gpu_seconds(sweep),
        here.depth_seconds("midas", depth_image),
    ]
