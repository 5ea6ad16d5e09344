"""Hub mode, end to end, offline: the real loading code (repo ids, revisions, weight formats, fp16 variants,
the safety checker) on the twins served from a Hugging Face cache under the real repo ids.

The cache's weights equal the tiny-mode twins' (same seeds), so every hub-mode image must equal the tiny-mode
image of the same request, pixel for pixel: that proves the hub path loaded exactly what it should.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import constants
from PIL import Image
from workflow_cases import middle_mask

from engine.base.settings import Settings
from engine.core import Engine
from engine.models import catalog
from engine.models.catalog import get_spec, models_for
from engine.models.repos import repo_facts
from engine.models.tiny import cache_repo_folder
from engine.pipelines.cache import PipelineCache
from engine.pipelines.device import DevicePolicy
from engine.pipelines.loading import ModelUnavailable, load_options
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.chain import PRESETS, ChainRequest, stages_json
from engine.workflows.depth import DepthRequest
from engine.workflows.registry import script_for
from engine.workflows.sweep import SweepRequest

ROOT = Path(__file__).resolve().parents[1]


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("model", models_for("img2img"))
def test_every_img2img_model_loads_from_its_repo_id_and_equals_its_twin(hub_engine, engine, photo, model):
    request = Img2ImgRequest(
        image=photo, prompt="a cat wizard", model=model, num_inference_steps=4, strength=0.6, seed=5
    )
    hub = hub_engine.img2img(request)
    tiny = engine.img2img(request)
    assert hub.recipe.model_id == get_spec(model).hub_id
    assert [same_pixels(a, b) for a, b in zip(hub.images, tiny.images, strict=True)] == [True]
    hub_engine.cache.evict(model)  # one model at a time keeps the module's memory small


def test_a_sweep_over_the_sd15_family_runs_in_hub_mode_and_equals_tiny_mode(hub_engine, engine, photo):
    base = Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=3, seed=2)
    keys = ("sd15", "comic-diffusion", "pixel-art-style", "elden-ring")
    sweep_request = SweepRequest(base=base, x_axis="model", x_values=", ".join(keys))
    *_, hub = hub_engine.sweep(sweep_request)
    *_, tiny = engine.sweep(sweep_request)
    assert hub.finished and hub.stopped is None
    assert [r.model_id for r in hub.recipes] == [get_spec(k).hub_id for k in keys]
    assert all(same_pixels(a, b) for a, b in zip(hub.images, tiny.images, strict=True))
    hub_engine.cache.clear()


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_chain_runs_in_hub_mode_and_equals_tiny_mode(hub_engine, engine, photo, preset):
    rows = json.loads(stages_json(preset))
    for row in rows:
        row["num_inference_steps"] = 4
        if "strength" in row:  # at least two denoising steps per stage (an edit stage takes none)
            row["strength"] = max(row["strength"], 0.5)
    image = None if preset.startswith("text") else photo.resize((64, 64))
    mask = middle_mask(image) if any(row.get("kind") == "inpaint" for row in rows) else None
    request = ChainRequest(image=image, preset="", stages=json.dumps(rows), seed=3, width=64, height=64, mask=mask)
    *_, hub = hub_engine.chain(request)
    *_, tiny = engine.chain(request)
    assert hub.finished and tiny.finished
    assert [r.recipe.model_id for r in hub.results] == [get_spec(row["model"]).hub_id for row in rows]
    assert all(same_pixels(a.image, b.image) for a, b in zip(hub.results, tiny.results, strict=True))
    hub_engine.cache.clear()


@pytest.mark.parametrize("estimator", ["midas", "depth-anything-v2-small"])
def test_depth_with_each_offline_estimator_and_the_restyle(hub_engine, engine, photo, estimator):
    request = DepthRequest(image=photo, depth_estimator=estimator, num_inference_steps=3, seed=9)
    *_, hub = hub_engine.depth(request)
    *_, tiny = engine.depth(request)
    assert hub.finished and tiny.finished and hub.plan.restyle is not None
    assert hub.controlnet_recipe.extra["controlnet_id"] == get_spec("controlnet-depth").hub_id
    assert hub.restyle_result.recipe.model_id == get_spec(hub.plan.restyle.model).hub_id
    assert same_pixels(hub.depth, tiny.depth)
    assert same_pixels(hub.controlnet, tiny.controlnet)
    assert same_pixels(hub.restyled, tiny.restyled)
    hub_engine.cache.clear()


def test_the_exported_script_loads_by_repo_id_and_reproduces_the_image(hub_engine, photo, tmp_path):
    result = hub_engine.img2img(
        Img2ImgRequest(image=photo, prompt="a cat", model="pixel-art-style", num_inference_steps=3, seed=11)
    )
    recipe = result.recipe.for_image(0)
    script = script_for(recipe)
    assert "from_pretrained('kohbanye/pixel-art-style', dtype=DTYPE, use_safetensors=None)" in script
    (tmp_path / "recipe.py").write_text(script)
    result.plan.image.image.save(tmp_path / "init.png")
    env = dict(os.environ, HF_HUB_CACHE=str(constants.HF_HUB_CACHE), HF_HUB_OFFLINE="1")
    out = tmp_path / "out.png"
    run = [sys.executable, "recipe.py", str(out), "init.png"]
    subprocess.run(run, cwd=tmp_path, env=env, check=True, timeout=600, capture_output=True)
    assert same_pixels(Image.open(out), result.images[0])


def test_the_sd15_family_loads_the_safety_checker_unless_the_owner_turns_it_off(hub_engine, tmp_path):
    assert hub_engine.cache.get("sd15").safety_checker is not None
    off = Engine(Settings.from_env({"STUDIO_SAFETY_CHECKER": "false"}, models="hub", data_dir=tmp_path))
    assert off.cache.get("sd15").safety_checker is None
    assert "safety checker is off" in off.banner


def test_hub_mode_on_a_cache_of_twins_says_so(hub_engine, tmp_path):
    """The offline demo's header said 'real checkpoints from the Hugging Face Hub' while the cache held twins."""
    assert "the Hugging Face cache holds tiny twins of" in hub_engine.banner
    assert "real checkpoints" not in hub_engine.banner
    from huggingface_hub import constants

    with pytest.MonkeyPatch.context() as patch:  # an empty cache: real checkpoints are what it will download
        patch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
        assert "real checkpoints from the Hugging Face Hub" in hub_engine.banner


def test_a_flagged_image_is_reported_not_shown(hub_engine, photo):
    checker = hub_engine.cache.get("sd15").safety_checker
    with torch.no_grad():
        saved = checker.concept_embeds_weights.clone()
        checker.concept_embeds_weights.fill_(-1.0)  # every image scores above its threshold
    try:
        result = hub_engine.img2img(Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=2, num_images=2))
    finally:
        with torch.no_grad():
            checker.concept_embeds_weights.copy_(saved)
    assert result.nsfw == (True, True) and result.shown == []


def _copy_repo(cache: Path, hub_id: str, into: Path) -> Path:
    """One repository of the twin cache copied into another cache root (links kept relative)."""
    target = cache_repo_folder(into, hub_id)
    shutil.copytree(cache_repo_folder(cache, hub_id), target, symlinks=True)
    return target / "snapshots" / repo_facts(hub_id).commit


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_bin_that_carries_code_is_refused_unread(hub_cache, tmp_path, monkeypatch):
    hub_id = get_spec("pixel-art-style").hub_id
    snapshot = _copy_repo(hub_cache, hub_id, tmp_path / "cache")
    marker = tmp_path / "pwned"
    payload = _RunsCode()
    payload.marker = marker
    weights = snapshot / "unet" / "diffusion_pytorch_model.bin"
    weights.unlink()
    with weights.open("wb") as f:
        pickle.dump({"conv_in.weight": payload}, f)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    cache = PipelineCache(lambda spec: spec.hub_id, DevicePolicy(), budget_bytes=10**9)
    with pytest.raises(ModelUnavailable) as caught:
        cache.get("pixel-art-style")
    message = str(caught.value)
    assert "pixel-art-style" in message and "pickle" in message and "refused unread" in message
    assert not marker.exists()


def test_the_fp16_variant_is_what_a_float16_device_loads(hub_cache, tmp_path, monkeypatch):
    spec = get_spec("controlnet-depth")
    snapshot = _copy_repo(hub_cache, spec.hub_id, tmp_path / "cache")
    (snapshot / "diffusion_pytorch_model.safetensors").unlink()  # only the fp16 safetensors remain
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    half = DevicePolicy(dtype=torch.float16)
    assert load_options(spec, half, hub=True)["variant"] == "fp16"
    cache = PipelineCache(lambda s: s.hub_id, half, 10**9, lambda s: load_options(s, half, hub=True))
    assert cache.get("controlnet-depth", "controlnet").dtype == torch.float16
    full = PipelineCache(lambda s: s.hub_id, DevicePolicy(), budget_bytes=10**9)
    with pytest.raises(ModelUnavailable, match="controlnet-depth"):
        full.get("controlnet-depth", "controlnet")


def test_a_pinned_revision_reaches_the_loader(hub_cache, tmp_path, monkeypatch):
    key = "controlnet-depth"
    pinned = replace(get_spec(key), revision=repo_facts(get_spec(key).hub_id).commit)
    monkeypatch.setitem(catalog.CATALOG, key, pinned)
    engine = Engine(Settings.from_env({}, models="hub", data_dir=tmp_path))
    assert engine.cache.get(key, "controlnet") is not None
    monkeypatch.setitem(catalog.CATALOG, key, replace(pinned, revision="0" * 40))
    engine.cache.clear()
    with pytest.raises(ModelUnavailable, match=r"revision '0{40}'"):
        engine.cache.get(key, "controlnet")


def test_hub_mode_on_a_twin_cache_offline_logs_nothing_alarming(hub_cache, tmp_path):
    """As a person runs the offline demo (HF_HUB_OFFLINE=1, the twins in the cache): loading and running the app's
    own example says nothing of Hub connections it was told not to make, deprecated arguments it never passed, or
    CLIP cutting a prompt (the twins' byte-level tokenizers do; the real ones would not)."""
    from ui.basic import EXAMPLE_PROMPTS

    code = (
        "import sys; from pathlib import Path; from PIL import Image\n"
        "from engine.base.settings import Settings; from engine.core import Engine\n"
        "from engine.workflows.basic import Img2ImgRequest\n"
        "engine = Engine(Settings.from_env({}, models='hub', data_dir=Path(sys.argv[1])))\n"
        "request = Img2ImgRequest(image=Image.new('RGB', (64, 64)), prompt=sys.argv[2], num_inference_steps=2)\n"
        "engine.img2img(request)\n"
        "print('done')\n"
    )
    env = dict(os.environ, HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), EXAMPLE_PROMPTS["chelsea the cat"]],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0 and "done" in done.stdout, done.stderr[-2000:]
    for alarming in (
        "truncated because CLIP",
        "Token indices sequence length",
        "Couldn't connect to the Hub",
        "Could not reach the Hub",
        "local_dir_use_symlinks",
    ):
        assert alarming not in done.stderr, (alarming, done.stderr[-3000:])


def test_the_truncation_warnings_stay_where_a_real_repository_is_cached(hub_cache_dir, tmp_path):
    """Only a cache of twins alone quiets CLIP's truncation warnings: one real repository beside them (no twin
    marker) and a real tokenizer's warning must be seen."""
    from engine.models.tiny import HUB_TWIN_MARKER, hub_cache_holds_only_twins

    assert hub_cache_holds_only_twins(hub_cache_dir)
    mixed = tmp_path / "cache"
    shutil.copytree(hub_cache_dir, mixed, symlinks=True)
    (cache_repo_folder(mixed, get_spec("sd15").hub_id) / HUB_TWIN_MARKER).unlink()  # as if really downloaded
    assert not hub_cache_holds_only_twins(mixed)
    assert not hub_cache_holds_only_twins(tmp_path / "empty")
