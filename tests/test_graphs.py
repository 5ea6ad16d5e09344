"""CUDA graphs for the denoisers (engine.pipelines.graphs): replays equal eager runs, outputs are the caller's own,
anything a graph cannot hold runs eagerly, and the policy turns them on only where they are safe.

The CUDA tests run where a GPU is (the device machine: `python -m pytest tests/test_graphs.py --noconftest`);
CI has none and runs the rest.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.base.settings import Settings
from engine.pipelines.device import DevicePolicy
from engine.pipelines.graphs import GraphedForward, graph_forward, ungraph_forward
from engine.pipelines.speedups import apply_speedups

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tiny_unet(device: str = "cpu", dtype: torch.dtype = torch.float32):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=16,
    )
    return unet.to(device, dtype).eval()


def unet_inputs(batch: int, device: str, dtype: torch.dtype, seed: int):
    generator = torch.Generator(device).manual_seed(seed)
    sample = torch.randn(batch, 4, 16, 16, generator=generator, device=device, dtype=dtype)
    states = torch.randn(batch, 7, 32, generator=generator, device=device, dtype=dtype)
    return sample, torch.tensor(seed * 10 + 1, device=device), states


def test_calls_off_cuda_run_the_modules_own_forward():
    unet = tiny_unet()
    sample, t, states = unet_inputs(2, "cpu", torch.float32, 0)
    with torch.inference_mode():
        expected = unet(sample, t, encoder_hidden_states=states).sample
        graphed = graph_forward(unet)
        assert graph_forward(unet) is graphed  # once per module
        assert isinstance(unet.forward, GraphedForward)
        got = unet(sample, t, encoder_hidden_states=states).sample
    assert torch.equal(got, expected)
    assert graphed.captured == 0 and not graphed.captures  # CPU tensors are never captured
    ungraph_forward(unet)
    assert "forward" not in unet.__dict__  # the class's forward again


def test_cuda_policy_defaults_follow_the_h100_figures(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert DevicePolicy.detect().cuda_graphs is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    policy = DevicePolicy.detect("auto", compile=False)
    assert (policy.device, policy.dtype, policy.cuda_graphs, policy.channels_last, policy.cudnn_benchmark) == (
        "cuda",
        torch.float16,
        True,
        True,
        False,  # 3% faster, but its trial workspaces took up to 75 GiB for a moment
    )
    assert policy.compile is False and policy.fuse_qkv is False  # fused QKV gained nothing and cost 1.7 GiB
    assert DevicePolicy.detect("auto", cuda_graphs=False).cuda_graphs is False
    settings = Settings.from_env({"STUDIO_CUDA_GRAPHS": "0"})
    assert settings.cuda_graphs is False and Settings.from_env({}).cuda_graphs is True


def test_speedups_never_graph_on_cpu():
    unet = tiny_unet()
    pipe = type("Pipe", (), {"unet": unet, "vae": None})()
    apply_speedups(pipe, replace(DevicePolicy(), cuda_graphs=True))
    assert "forward" not in unet.__dict__


@cuda
def test_replays_equal_eager_runs_and_outputs_are_not_aliased():
    unet = tiny_unet("cuda", torch.float16)
    runs = [unet_inputs(2, "cuda", torch.float16, seed) for seed in range(4)]
    with torch.inference_mode():
        expected = [unet(s, t, encoder_hidden_states=e, return_dict=False)[0] for s, t, e in runs]
        graphed = graph_forward(unet)
        got = [unet(s, t, encoder_hidden_states=e, return_dict=False)[0] for s, t, e in runs]
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)  # the same kernels, each call's own inputs copied in
    assert graphed.captured == 1  # one signature, one capture, three replays
    assert len({tensor.data_ptr() for tensor in got}) == len(got)  # each output is the caller's own copy


@cuda
def test_a_new_shape_captures_again_and_hooks_and_autograd_still_work():
    unet = tiny_unet("cuda", torch.float16)
    graphed = graph_forward(unet)
    scale = {"factor": 1.0}
    unet.register_forward_hook(lambda module, args, output: (output[0] * scale["factor"],))
    with torch.inference_mode():
        for batch in (2, 4, 2):
            s, t, e = unet_inputs(batch, "cuda", torch.float16, batch)
            assert unet(s, t, encoder_hidden_states=e, return_dict=False)[0].shape[0] == batch
        assert graphed.captured == 2
        scale["factor"] = 0.0
        assert unet(s, t, encoder_hidden_states=e, return_dict=False)[0].abs().max() == 0  # the hook ran
    s, t, e = unet_inputs(2, "cuda", torch.float16, 9)
    out = unet(s, t, encoder_hidden_states=e, return_dict=False)[0]  # gradients on: eager, differentiable
    assert out.requires_grad and graphed.captured == 2


@cuda
def test_pipeline_with_graphs_equals_without(tmp_path):
    """The whole img2img workflow on the SD 1.5 twin, with and without graphs: the same image."""
    from PIL import Image
    from skimage import data

    from engine.core import Engine
    from engine.workflows.basic import Img2ImgRequest

    settings = Settings.from_env({}, models="tiny", data_dir=tmp_path)
    request = Img2ImgRequest(
        image=Image.fromarray(data.astronaut()).resize((128, 128)),
        prompt="an astronaut in a jungle",
        model="sd15",
        strength=0.6,
        num_inference_steps=10,
        seed=3,
    )
    images = {}
    for graphs in (False, True):
        policy = DevicePolicy(device="cuda", dtype=torch.float16, offload="none", cuda_graphs=graphs)
        engine = Engine(settings, policy=policy)
        images[graphs] = [np.asarray(engine.img2img(request).images[0], dtype=np.int16) for _ in range(2)]
        unet = engine.cache.peek("sd15").unet
        assert isinstance(unet.__dict__.get("forward"), GraphedForward) is graphs
        if graphs:  # out of memory: the cache moves to offload, and offload must not meet stale graphs
            engine.cache.relieve(engine.cache.peek("sd15"))
            # accelerate's hook wraps the module's own forward, not the graphs
            assert not isinstance(unet.__dict__.get("forward"), GraphedForward)
            assert not isinstance(getattr(unet, "_old_forward", None), GraphedForward)
            images["offload"] = [np.asarray(engine.img2img(request).images[0], dtype=np.int16)]
        engine.cache.clear()
    for image in images[True] + images["offload"]:
        assert np.abs(image - images[False][0]).max() <= 1


def test_a_signature_that_changes_every_call_stops_capturing(monkeypatch):
    """A number that varies per step would capture a graph every step: the module goes eager instead, while
    a server's new image sizes (a capture per image of 40 steps) keep their graphs."""
    from engine.pipelines import graphs

    monkeypatch.setattr(graphs, "_signature", lambda leaves, spec: ("call", leaves[-1]))
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    captured = []
    monkeypatch.setattr(graphs.GraphedForward, "_capture", lambda self, leaves, spec: captured.append(leaves[-1]))
    calls = []
    with torch.inference_mode():
        per_size = graphs.GraphedForward(torch.nn.Identity(), lambda x, size: calls.append(size))
        for size in range(20):
            for _ in range(40):
                per_size(None, size)
        assert not per_size.disabled and len(captured) == 20 and len(calls) == 800
        captured.clear()
        per_step = graphs.GraphedForward(torch.nn.Identity(), lambda x, step: step)
        assert [per_step(None, step) for step in range(40)] == list(range(40))  # same results throughout
    assert per_step.disabled and len(captured) == graphs.MAX_GRAPHS
