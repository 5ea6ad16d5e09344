"""The owner's own models: single-file checkpoints from STUDIO_MODELS_DIR and Hub repos STUDIO_ALLOW_HUB_MODELS
allows, loaded by the real code paths on twins: a checkpoint file written from the SD 1.5 twin's own weights in
the original (LDM) layout, and the SD 1.5 twin published in the twin Hub cache under a repo id of the owner's.
"""

from __future__ import annotations

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
from safetensors.torch import save_file
from scripts import ScriptFailed, replay
from test_recipe import rerun

from engine.base.settings import Settings
from engine.core import Engine
from engine.models import catalog
from engine.models.catalog import get_spec, models_for
from engine.models.ldm import write_single_file
from engine.models.owner import Refused, detect, family_of_index, hub_allowed, hub_patterns, tensor_shapes
from engine.models.repos import repo_facts
from engine.models.tiny import build_twin, cache_repo_folder
from engine.pipelines.loading import ModelUnavailable
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.depth import DepthRequest
from engine.workflows.registry import recipe_from_json, script_for
from engine.workflows.sweep import SweepRequest


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, twins):
    folder = tmp_path_factory.mktemp("owner-models")
    twin = build_twin("sd15", twins)
    write_single_file(twin, folder / "my-sd15.safetensors")
    write_single_file(twin, folder / "old-style.ckpt")  # a plain-tensor pickle, as older model sites share
    marker = folder.parent / "pwned"
    with (folder / "evil.ckpt").open("wb") as handle:
        pickle.dump({"state_dict": {"weight": _RunsCode(marker)}}, handle)
    (folder / "notes.txt").write_text("not a checkpoint")
    return folder


@pytest.fixture(scope="module")
def owner_engine(models_dir, tmp_path_factory, engine):
    previous = catalog.owner_models()
    owner = Engine(
        Settings.from_env(
            {"STUDIO_MODELS_DIR": str(models_dir)}, models="tiny", data_dir=tmp_path_factory.mktemp("owner-data")
        )
    )
    yield owner
    owner.cache.clear()
    catalog.install_owner_models(previous)


def test_the_folder_offers_its_checkpoints_by_name_and_refuses_a_pickle_that_carries_code(owner_engine, models_dir):
    offered = [key for key in models_for("img2img") if key.startswith("file:")]
    assert offered == ["file:my-sd15.safetensors", "file:old-style.ckpt"]
    spec = get_spec("file:my-sd15.safetensors")
    assert (spec.family, spec.base, spec.origin, spec.file) == (
        "sd15",
        "sd15",
        "file",
        str(models_dir / "my-sd15.safetensors"),
    )
    assert "file:evil.ckpt" not in models_for("img2img")
    assert not (models_dir.parent / "pwned").exists()  # scanning it ran nothing
    with pytest.raises(Refused, match=r"evil\.ckpt is a pickle that does not hold plain tensors only.*refused unread"):
        tensor_shapes(models_dir / "evil.ckpt")
    assert not (models_dir.parent / "pwned").exists()


def test_the_pickers_name_an_owners_model_once_with_one_pair_of_brackets(owner_engine):
    from ui.components import model_label

    assert model_label("file:my-sd15.safetensors") == (
        "my-sd15: your Stable Diffusion 1.5 checkpoint (file:my-sd15.safetensors)"
    )
    assert model_label("sd15") == "Stable Diffusion 1.5 (sd15)"


@pytest.mark.parametrize("key", ["file:my-sd15.safetensors", "file:old-style.ckpt"])
def test_a_checkpoint_file_runs_equal_to_raw_diffusers_from_single_file(owner_engine, engine, photo, key, twins):
    from diffusers import AutoPipelineForImage2Image, StableDiffusionPipeline

    request = Img2ImgRequest(
        image=photo, prompt="a cat wizard", model=key, num_inference_steps=4, seed=7, num_images=2
    )
    result = owner_engine.img2img(request)
    assert type(owner_engine.cache.get(key)).__name__ == "StableDiffusionImg2ImgPipeline"
    assert result.recipe.model == key and result.recipe.model_id == Path(get_spec(key).file).name

    twin = str(build_twin("sd15", twins))
    raw = StableDiffusionPipeline.from_single_file(get_spec(key).file, config=twin, local_files_only=True)
    raw = AutoPipelineForImage2Image.from_pipe(raw)
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in (7, 8)]
    expected = raw(
        image=result.plan.image.image,
        prompt="a cat wizard",
        strength=result.plan.strength,
        guidance_scale=7.5,
        num_inference_steps=4,
        generator=generators,
        num_images_per_prompt=2,
    ).images
    assert all(same(a, b) for a, b in zip(result.images, expected, strict=True))
    # the file holds the SD 1.5 twin's weights in the original layout: the same image as the twin itself
    twin_result = engine.img2img(Img2ImgRequest(**{**request.__dict__, "model": "sd15"}))
    assert same(result.images[0], twin_result.images[0])


def test_the_recipe_and_script_of_a_checkpoint_file_reproduce_it(owner_engine, photo, tmp_path, models_dir):
    result = owner_engine.img2img(
        Img2ImgRequest(image=photo, prompt="a fox", model="file:my-sd15.safetensors", num_inference_steps=3, seed=4)
    )
    recipe = result.recipe.for_image(0)
    assert recipe_from_json(recipe.to_json()) == recipe  # the schema takes the owner's key and file
    script = script_for(recipe)
    assert "single_file_pipeline(os.path.join(MODELS_DIR, 'my-sd15.safetensors')" in script
    # the server's folders are in neither the PNG's text nor the script: the file is named, not located
    assert recipe.model_id == "my-sd15.safetensors"
    assert str(models_dir) not in recipe.to_json() + recipe.infotext() + script
    init = result.plan.image.image
    missing = r"no checkpoint file models/my-sd15\.safetensors .*STUDIO_MODELS_DIR"  # unset: ./models, as it says
    with pytest.raises(ScriptFailed, match=missing):
        rerun(tmp_path / "unset", recipe, init)
    replayed = rerun(tmp_path / "set", recipe, init, env={"STUDIO_MODELS_DIR": str(models_dir)})
    assert np.array_equal(replayed, np.asarray(result.images[0]))


def test_depth_on_a_checkpoint_file_equals_its_twin_and_its_script_replays_it(
    owner_engine, engine, photo, tmp_path, models_dir
):
    """The owner's file under ControlNet depth, no restyle: the script once failed after the images were made
    (KeyError 'use_safetensors': the from_pretrained options of a file)."""
    fields = dict(image=photo, prompt="a cat", num_inference_steps=3, seed=5, restyle_model="none")
    *_, state = owner_engine.depth(DepthRequest(model="file:my-sd15.safetensors", **fields))
    *_, twin = engine.depth(DepthRequest(model="sd15", **fields))
    assert state.finished and same(state.controlnet, twin.controlnet)  # the file holds the twin's weights
    recipe = state.controlnet_recipe
    assert recipe.model == "file:my-sd15.safetensors" and recipe_from_json(recipe.to_json()) == recipe
    script = tmp_path / "recipe.py"
    script.write_text(script_for(recipe))
    assert "single_file_pipeline(" in script.read_text()
    state.plan.image.image.save(tmp_path / "init.png")
    state.depth.save(tmp_path / "control.png")
    replay(script, "out.png", "init.png", "control.png", cwd=tmp_path, env={"STUDIO_MODELS_DIR": str(models_dir)})
    assert same(Image.open(tmp_path / "out.png"), state.controlnet)


def test_a_sweep_over_checkpoint_and_catalog_models_of_one_family(owner_engine, engine, photo):
    request = SweepRequest(
        base=Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=3, seed=2),
        x_axis="model",
        x_values="sd15\nfile:my-sd15.safetensors",
    )
    (*_, last) = owner_engine.sweep(request)
    first, second = last.images
    assert same(first, second)  # the same weights: batched side by side in one call


@pytest.mark.parametrize(
    "model",
    [
        "/etc/passwd",
        "../my-sd15.safetensors",
        "my-sd15.safetensors",
        "file:../owner-models/my-sd15.safetensors",
        "file:evil.ckpt",
        "file:notes.txt",
        "someone/some-model",
    ],
)
def test_a_visitor_picks_only_what_the_owner_offers(owner_engine, photo, model):
    with pytest.raises(ValueError, match=r"^model must be one of .*file:my-sd15\.safetensors.*; got "):
        owner_engine.plan(Img2ImgRequest(image=photo, prompt="a cat", model=model))


def _header(tmp_path: Path, names: dict[str, tuple[int, ...]]) -> Path:
    path = tmp_path / "probe.safetensors"
    save_file({name: torch.zeros(shape) for name, shape in names.items()}, path)
    return path


SD_UNET = {"model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3)}


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ({**SD_UNET, "cond_stage_model.transformer.text_model.final_layer_norm.weight": (4,)}, ("sd15", "pipeline")),
        (
            {
                **SD_UNET,
                "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": (4,),
                "conditioner.embedders.1.model.ln_final.weight": (4,),
            },
            ("sdxl-base", "pipeline"),
        ),
        ({**SD_UNET, "conditioner.embedders.0.model.ln_final.weight": (4,)}, ("sdxl-refiner", "pipeline")),
        (
            {
                "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (6, 2),
                "model.diffusion_model.joint_blocks.0.x_block.attn2.qkv.weight": (6, 2),
            },
            ("sd35-medium", "transformer"),
        ),
        (
            {"double_blocks.0.img_attn.qkv.weight": (6, 2), "single_blocks.0.linear1.weight": (4, 2)},
            ("flux-schnell", "transformer"),
        ),
        (
            {
                "double_blocks.0.img_attn.qkv.weight": (6, 2),
                "single_blocks.0.linear1.weight": (4, 2),
                "guidance_in.in_layer.weight": (4, 2),
            },
            ("flux-dev", "transformer"),
        ),
    ],
)
def test_the_family_is_read_from_the_tensors_names_and_shapes(tmp_path, names, expected):
    assert detect(tensor_shapes(_header(tmp_path, names))) == expected


@pytest.mark.parametrize(
    ("names", "why"),
    [
        ({"model.diffusion_model.input_blocks.0.0.weight": (8, 9, 3, 3)}, "9 input channels .*inpainting"),
        ({**SD_UNET, "cond_stage_model.model.ln_final.weight": (4,)}, "Stable Diffusion 2.x"),
        ({"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": (6, 2)}, "3.5 Large"),
        ({"lora_unet_down.weight": (2, 2)}, "no Stable Diffusion UNet"),
    ],
)
def test_a_checkpoint_of_no_catalog_family_is_refused_with_what_it_looks_like(tmp_path, names, why):
    with pytest.raises(Refused, match=why):
        detect(tensor_shapes(_header(tmp_path, names)))


def test_files_that_once_stopped_the_start_are_skipped_with_a_line_each(tmp_path, twins, photo, caplog):
    """Integer tensor names crashed the start (TypeError), a state_dict holding itself hung it; a file without a
    text encoder's weights was offered, then failed as an internal error. Each passes the weights-only check."""
    folder = tmp_path / "models"
    folder.mkdir()
    torch.save({0: torch.zeros(2), 1: torch.zeros(3)}, folder / "numbered.ckpt")
    looped: dict = {"weight": torch.zeros(1)}
    looped["state_dict"] = looped
    torch.save(looped, folder / "looped.ckpt")
    unet_only = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)}
    save_file(
        {**unet_only, "cond_stage_model.transformer.text_model.x": torch.zeros(0)}, folder / "hollow.safetensors"
    )
    write_single_file(build_twin("sd15", twins), folder / "good.safetensors")
    previous = catalog.owner_models()
    try:
        owner = Engine(Settings.from_env({"STUDIO_MODELS_DIR": str(folder)}, models="tiny", data_dir=tmp_path / "d"))
        assert [key for key in models_for("img2img") if key.startswith("file:")] == [
            "file:good.safetensors",
            "file:hollow.safetensors",
        ]
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("STUDIO_MODELS_DIR")]
        assert any(
            "numbered.ckpt is not offered: numbered.ckpt names its tensors with something other" in m for m in lines
        )
        assert any("looped.ckpt is not offered: no Stable Diffusion UNet" in m for m in lines)
        request = Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=2, seed=1)
        with pytest.raises(
            ModelUnavailable, match=r"'file:hollow.safetensors' \(hollow.safetensors\) could not be loa"
        ):
            owner.img2img(replace(request, model="file:hollow.safetensors"))
        assert owner.img2img(replace(request, model="file:good.safetensors")).images  # and it keeps serving
    finally:
        catalog.install_owner_models(previous)


def test_a_models_dir_that_is_not_a_folder_stops_the_start_naming_the_setting(tmp_path, engine):
    previous = catalog.owner_models()
    try:
        with pytest.raises(ValueError, match="STUDIO_MODELS_DIR must be a folder"):
            Engine(Settings.from_env({"STUDIO_MODELS_DIR": str(tmp_path / "nope")}, models="tiny", data_dir=tmp_path))
    finally:
        catalog.install_owner_models(previous)


# -- Hub repos the owner allows --------------------------------------------------------------------------


def test_allowed_patterns_match_well_formed_repo_ids_only():
    patterns = hub_patterns("studio-owner/*, friend/one-model")
    assert hub_allowed("studio-owner/my-sd15", patterns) and hub_allowed("friend/one-model", patterns)
    for refused in ("friend/other", "studio-owner/../x", "studio-owner/a/b", "/studio-owner/x", "studio-owner/", 3):
        assert not hub_allowed(refused, patterns)
    with pytest.raises(ValueError, match=r"STUDIO_ALLOW_HUB_MODELS must list Hub repo ids or patterns.*'\.\./x'"):
        hub_patterns("me/ok, ../x")


def test_the_family_of_a_hub_repo_comes_from_its_model_index():
    assert family_of_index({"_class_name": "StableDiffusionPipeline"}) == "sd15"
    refiner = {"_class_name": "StableDiffusionXLImg2ImgPipeline", "text_encoder": [None, None]}
    assert family_of_index(refiner) == "sdxl-refiner"
    base = {"_class_name": "StableDiffusionXLPipeline", "text_encoder": ["transformers", "CLIPTextModel"]}
    assert family_of_index(base) == "sdxl-base"
    assert family_of_index({"_class_name": "FluxPipeline"}, {"guidance_embeds": True}) == "flux-dev"
    assert family_of_index({"_class_name": "FluxPipeline"}, {"guidance_embeds": False}) == "flux-schnell"
    with pytest.raises(Refused, match="KandinskyV22Pipeline"):
        family_of_index({"_class_name": "KandinskyV22Pipeline"})


OWNER_REPO = "studio-owner/my-sd15"


@pytest.fixture(scope="module")
def owner_hub(hub_cache, tmp_path_factory, models_dir):
    """The SD 1.5 twin's repository published again as the owner's repo in the twin cache; a hub-mode engine
    that allows `studio-owner/*` and reads the checkpoint folder."""
    source = cache_repo_folder(hub_cache, get_spec("sd15").hub_id)
    target = cache_repo_folder(hub_cache, OWNER_REPO)
    if not target.exists():
        shutil.copytree(source, target, symlinks=True)
    previous = catalog.owner_models()
    settings = Settings.from_env(
        {"STUDIO_ALLOW_HUB_MODELS": "studio-owner/*", "STUDIO_MODELS_DIR": str(models_dir)},
        models="hub",
        data_dir=tmp_path_factory.mktemp("owner-hub-data"),
    )
    hub = Engine(settings)
    yield hub
    hub.cache.clear()
    catalog.install_owner_models(previous)


def test_an_allowed_hub_repo_runs_as_its_family_equal_to_the_catalog_model(owner_hub, photo):
    request = Img2ImgRequest(image=photo, prompt="a cat", model=OWNER_REPO, num_inference_steps=3, seed=9)
    owned = owner_hub.img2img(request)
    spec = get_spec(OWNER_REPO)
    assert (spec.origin, spec.family, owned.recipe.model_id) == ("hub", "sd15", OWNER_REPO)
    from ui.components import model_label

    assert model_label(OWNER_REPO) == f"{OWNER_REPO}, run as Stable Diffusion 1.5"  # its id once, no brackets
    catalog_run = owner_hub.img2img(Img2ImgRequest(**{**request.__dict__, "model": "sd15"}))
    assert same(owned.images[0], catalog_run.images[0])
    assert recipe_from_json(owned.recipe.to_json()) == owned.recipe


@pytest.mark.parametrize("model", ["other-owner/my-sd15", "studio-owner/../my-sd15", "studio-owner/a/b"])
def test_a_repo_the_owner_did_not_allow_is_never_looked_up(owner_hub, photo, model):
    with pytest.raises(ValueError, match=r"^model must be one of"):
        owner_hub.plan(Img2ImgRequest(image=photo, prompt="a cat", model=model))


def test_an_allowed_repo_that_is_not_there_says_so_and_the_app_keeps_serving(owner_hub, photo):
    with pytest.raises(ValueError, match="model 'studio-owner/missing': the Hub repo studio-owner/missing could not"):
        owner_hub.plan(Img2ImgRequest(image=photo, prompt="a cat", model="studio-owner/missing"))
    assert owner_hub.plan(Img2ImgRequest(image=photo, prompt="a cat", model=OWNER_REPO)).spec.key == OWNER_REPO


def test_in_hub_mode_a_checkpoint_file_reads_its_base_configs_from_the_cache(
    owner_hub, engine, photo, tmp_path, models_dir
):
    request = Img2ImgRequest(
        image=photo, prompt="a cat", model="file:my-sd15.safetensors", num_inference_steps=3, seed=1
    )
    result = owner_hub.img2img(request)
    tiny = engine.img2img(Img2ImgRequest(**{**request.__dict__, "model": "sd15"}))
    assert same(result.images[0], tiny.images[0])
    recipe = result.recipe.for_image(0)
    script = script_for(recipe)
    assert "'stable-diffusion-v1-5/stable-diffusion-v1-5', AutoPipelineForImage2Image, DTYPE)" in script
    (tmp_path / "recipe.py").write_text(script)
    result.plan.image.image.save(tmp_path / "init.png")
    env = dict(
        os.environ, HF_HUB_CACHE=str(constants.HF_HUB_CACHE), HF_HUB_OFFLINE="1", STUDIO_MODELS_DIR=str(models_dir)
    )
    run = [sys.executable, "recipe.py", "out.png", "init.png"]
    subprocess.run(run, cwd=tmp_path, env=env, check=True, timeout=600)
    assert same(Image.open(tmp_path / "out.png"), result.images[0])


def test_in_hub_mode_a_checkpoint_file_whose_base_is_not_cached_is_refused_without_the_network(
    owner_hub, photo, tmp_path, monkeypatch
):
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    owner_hub.cache.evict("file:old-style.ckpt")
    with pytest.raises(ModelUnavailable) as caught:
        owner_hub.img2img(
            Img2ImgRequest(image=photo, prompt="a cat", model="file:old-style.ckpt", num_inference_steps=2, seed=1)
        )
    message = str(caught.value)
    assert "file:old-style.ckpt" in message and "stable-diffusion-v1-5/stable-diffusion-v1-5" in message
    assert "never downloaded" in message


def test_tiny_mode_says_the_owners_hub_repos_need_hub_mode(tmp_path, photo, engine):
    previous = catalog.owner_models()
    try:
        settings = Settings.from_env({"STUDIO_ALLOW_HUB_MODELS": "studio-owner/*"}, models="tiny", data_dir=tmp_path)
        tiny = Engine(settings)
        with pytest.raises(ValueError, match="model 'studio-owner/my-sd15': the owner's Hub models run in hub mode"):
            tiny.plan(Img2ImgRequest(image=photo, prompt="a cat", model=OWNER_REPO))
        with pytest.raises(ValueError, match="loras: the owner's Hub LoRAs apply in hub mode only"):
            tiny.plan(Img2ImgRequest(image=photo, prompt="a cat", loras="studio-owner/paper-cut-lora:1"))
    finally:
        catalog.install_owner_models(previous)


def test_repo_facts_are_not_asked_of_the_owners_models(owner_engine):
    spec = get_spec("file:my-sd15.safetensors")
    assert not spec.pickle_weights and not spec.fp16_variant
    with pytest.raises(ValueError, match="no recorded facts"):
        repo_facts(spec.hub_id)


LORA_REPO = "studio-owner/paper-cut-lora"


def test_an_allowed_hub_repo_applies_as_a_lora_equal_to_raw_diffusers(owner_hub, hub_cache, photo, twins):
    """The twin LoRA published in the twin cache as the owner's LoRA repo (diffusers' file name), named by id."""
    from diffusers import AutoPipelineForImage2Image

    from engine.models.tiny import write_lora

    snapshot = cache_repo_folder(hub_cache, LORA_REPO) / "snapshots" / ("0" * 40)
    if not snapshot.exists():
        write_lora(build_twin("sd15", twins), snapshot / "pytorch_lora_weights.safetensors", seed=3)
        (snapshot.parents[1] / "refs").mkdir()
        (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    request = Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=3, seed=2, loras=f"{LORA_REPO}:0.9")
    result = owner_hub.img2img(request)
    assert result.recipe.extra["loras"] == [{"name": LORA_REPO, "weight": 0.9}]
    raw = AutoPipelineForImage2Image.from_pretrained(get_spec("sd15").hub_id, use_safetensors=True)
    raw.load_lora_weights(str(snapshot / "pytorch_lora_weights.safetensors"), adapter_name="owner")
    raw.set_adapters(["owner"], adapter_weights=[0.9])
    plan = result.plan
    (expected,) = raw(
        image=plan.image.image,
        prompt="a cat",
        strength=plan.strength,
        guidance_scale=plan.guidance_scale,
        num_inference_steps=3,
        generator=[torch.Generator("cpu").manual_seed(2)],
    ).images
    assert same(result.images[0], expected)
    for refused, why in (
        ("other-owner/lora:1", "is not an offered LoRA"),
        ("studio-owner/gone:1", "could not be read as a LoRA"),
    ):
        with pytest.raises(ValueError, match=why):
            owner_hub.plan(Img2ImgRequest(image=photo, prompt="a cat", loras=refused))


def test_in_tiny_mode_a_full_size_checkpoint_is_refused_with_why(tmp_path, photo, twins, engine):
    """A real checkpoint's tensors against the twin's configs: said in words, not as a state-dict dump."""
    from safetensors.torch import load_file

    folder = tmp_path / "models"
    folder.mkdir()
    write_single_file(build_twin("sd15", twins), tmp_path / "twin.safetensors")
    state = load_file(tmp_path / "twin.safetensors")
    conv_in = "model.diffusion_model.input_blocks.0.0.weight"
    state[conv_in] = torch.zeros((320, *state[conv_in].shape[1:]))  # SD 1.5's real width, 4 input channels
    save_file(state, folder / "real-size.safetensors")
    previous = catalog.owner_models()
    try:
        tiny = Engine(Settings.from_env({"STUDIO_MODELS_DIR": str(folder)}, models="tiny", data_dir=tmp_path / "d"))
        with pytest.raises(
            ModelUnavailable, match="only a twin-sized file fits there; start the app with --models hub"
        ):
            tiny.img2img(Img2ImgRequest(image=photo, prompt="a cat", model="file:real-size.safetensors", seed=1))
        assert tiny.img2img(Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=2, seed=1)).images
    finally:
        catalog.install_owner_models(previous)
