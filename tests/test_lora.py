"""LoRA from STUDIO_LORA_DIR: applied per run with weights through diffusers' PEFT integration, equal to raw
diffusers; disabled after the run without reloading the base; a sweep axis; recipes, scripts and web UI
infotexts; refused when not offered. The LoRAs are written from the SD 1.5 twin's own modules
(engine.models.tiny.write_lora), in the file layout diffusers' `save_lora_weights` writes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from test_recipe import rerun

from engine.base.settings import Settings
from engine.core import Engine
from engine.models import catalog
from engine.models.loras import MAX_LORAS
from engine.models.tiny import build_twin, write_owner_examples
from engine.pipelines.lora import LoraUnavailable, unload
from engine.recipes.webui import basic_fields
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.registry import recipe_from_json, script_for
from engine.workflows.sweep import SweepRequest

BASE = {"prompt": "a cat wizard", "num_inference_steps": 4, "seed": 5}


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image)


@pytest.fixture(scope="module")
def owner_dirs(tmp_path_factory, twins):
    return write_owner_examples(tmp_path_factory.mktemp("owner"), twins)


@pytest.fixture(scope="module")
def lora_engine(owner_dirs, tmp_path_factory, engine):
    models, loras = owner_dirs
    previous = catalog.owner_models()
    settings = Settings.from_env(
        {"STUDIO_MODELS_DIR": str(models), "STUDIO_LORA_DIR": str(loras)},
        models="tiny",
        data_dir=tmp_path_factory.mktemp("lora-data"),
    )
    made = Engine(settings)
    yield made
    made.cache.clear()
    catalog.install_owner_models(previous)


def raw_run(twin, plan, loras: list[tuple[str, float]], seeds=(5,)):
    """The run in raw diffusers: the twin, its LoRAs loaded by path and weighted with set_adapters."""
    from diffusers import AutoPipelineForImage2Image

    pipe = AutoPipelineForImage2Image.from_pretrained(twin, use_safetensors=True)
    for number, (path, _) in enumerate(loras):
        pipe.load_lora_weights(path, adapter_name=f"a{number}")
    if loras:
        pipe.set_adapters([f"a{n}" for n in range(len(loras))], adapter_weights=[w for _, w in loras])
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    return pipe(
        image=plan.image.image,
        prompt=plan.prompt,
        strength=plan.strength,
        guidance_scale=plan.guidance_scale,
        num_inference_steps=plan.num_inference_steps,
        generator=generators,
    ).images


def test_the_folder_offers_each_lora_by_its_file_name(lora_engine, owner_dirs):
    _, folder = owner_dirs
    assert {name: lora.source for name, lora in catalog.owner_models().loras.items()} == {
        "ink-wash": str(folder / "ink-wash.safetensors"),
        "paper-cut": str(folder / "paper-cut.safetensors"),
    }


def test_one_and_two_loras_with_weights_equal_raw_diffusers(lora_engine, photo, owner_dirs, twins):
    _, folder = owner_dirs
    twin = str(build_twin("sd15", twins))
    plain = lora_engine.img2img(Img2ImgRequest(image=photo, **BASE))
    one = lora_engine.img2img(Img2ImgRequest(image=photo, **BASE, loras="paper-cut:0.8"))
    two = lora_engine.img2img(Img2ImgRequest(image=photo, **BASE, loras=[["paper-cut", 0.8], ["ink-wash", -0.5]]))
    assert not np.array_equal(pixels(plain.images[0]), pixels(one.images[0]))  # the LoRA changes the image
    assert not np.array_equal(pixels(one.images[0]), pixels(two.images[0]))
    (expected_one,) = raw_run(twin, one.plan, [(str(folder / "paper-cut.safetensors"), 0.8)])
    (expected_two,) = raw_run(
        twin, two.plan, [(str(folder / "paper-cut.safetensors"), 0.8), (str(folder / "ink-wash.safetensors"), -0.5)]
    )
    assert np.array_equal(pixels(one.images[0]), pixels(expected_one))
    assert np.array_equal(pixels(two.images[0]), pixels(expected_two))
    assert one.recipe.extra["loras"] == [{"name": "paper-cut", "weight": 0.8}]


def test_after_a_lora_run_the_base_model_runs_exactly_as_before_without_reloading(lora_engine, photo):
    before = lora_engine.img2img(Img2ImgRequest(image=photo, **BASE))
    loads = lora_engine.cache.loads
    lora_engine.img2img(Img2ImgRequest(image=photo, **BASE, loras="ink-wash:1.5"))
    after = lora_engine.img2img(Img2ImgRequest(image=photo, **BASE))
    assert np.array_equal(pixels(before.images[0]), pixels(after.images[0]))
    pipe = lora_engine.cache.get("sd15")
    assert "unet" in pipe.get_list_adapters()  # kept loaded for the next run that names it
    assert sorted(unload(pipe)) and pipe.get_list_adapters() == {}
    unloaded = lora_engine.img2img(Img2ImgRequest(image=photo, **BASE))
    assert np.array_equal(pixels(before.images[0]), pixels(unloaded.images[0]))
    assert lora_engine.cache.loads == loads  # the base model was never loaded again
    assert "loras" not in after.recipe.extra


def test_past_the_loaded_limit_the_least_recent_lora_is_deleted_and_loads_again_the_same(
    lora_engine, photo, monkeypatch
):
    import engine.pipelines.lora

    monkeypatch.setattr(engine.pipelines.lora, "MAX_LOADED", 1)
    unload(lora_engine.cache.get("sd15"))
    first = lora_engine.img2img(Img2ImgRequest(image=photo, **BASE, loras="paper-cut:0.8"))
    lora_engine.img2img(Img2ImgRequest(image=photo, **BASE, loras="ink-wash:0.8"))
    adapters = lora_engine.cache.get("sd15").get_list_adapters()
    assert [len(names) for names in adapters.values()] == [1, 1]  # paper-cut's adapter was deleted for ink-wash's
    again = lora_engine.img2img(Img2ImgRequest(image=photo, **BASE, loras="paper-cut:0.8"))
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))


def test_a_lora_applies_to_the_owners_checkpoint_file_too(lora_engine, photo):
    on_file = lora_engine.img2img(
        Img2ImgRequest(image=photo, **BASE, model="file:my-sd15.safetensors", loras="paper-cut:0.8")
    )
    on_twin = lora_engine.img2img(Img2ImgRequest(image=photo, **BASE, loras="paper-cut:0.8"))
    assert np.array_equal(pixels(on_file.images[0]), pixels(on_twin.images[0]))  # the same weights


def test_a_sweep_over_lora_weight_equals_basic_runs(lora_engine, photo):
    base = Img2ImgRequest(image=photo, **BASE, loras="paper-cut:1, ink-wash:0.3")
    by_seed = lora_engine.plan(
        SweepRequest(base=base, x_axis="lora_weight", x_values="0, 0.6", y_axis="seed", y_values="5, 6")
    )
    assert by_seed.calls == ((0, 2), (1, 3))  # one batched call per weight: the seeds of a weight share it
    # one cell per call, so each equals its Basic run pixel for pixel (a batch of two differs by float rounding)
    plan = lora_engine.plan(SweepRequest(base=base, x_axis="lora_weight", x_values="0, 0.6"))
    (*_, last) = lora_engine.sweep(plan)
    for cell in plan.cells:
        weight = cell.values["lora_weight"]
        single = lora_engine.img2img(Img2ImgRequest(image=photo, **BASE, loras=f"paper-cut:{weight}, ink-wash:0.3"))
        assert np.array_equal(pixels(last.images[cell.index]), pixels(single.images[0])), cell.values
    expected = [{"name": "paper-cut", "weight": 0.6}, {"name": "ink-wash", "weight": 0.3}]
    assert last.recipes[1].extra["loras"] == expected
    with pytest.raises(ValueError, match="the lora_weight axis varies the weight of the first LoRA"):
        lora_engine.plan(SweepRequest(base=Img2ImgRequest(image=photo, **BASE), x_axis="lora_weight", x_values="0, 1"))


def test_the_recipe_and_scripts_of_lora_runs_reproduce_them(lora_engine, owner_dirs, photo, tmp_path):
    result = lora_engine.img2img(Img2ImgRequest(image=photo, **BASE, loras="paper-cut:0.8, ink-wash:0.4"))
    recipe = result.recipe.for_image(0)
    assert recipe_from_json(recipe.to_json()) == recipe
    script = script_for(recipe)
    assert "pipe.load_lora_weights(os.path.join(LORA_DIR, 'paper-cut.safetensors')" in script
    assert "adapter_weights=[0.8, 0.4]" in script
    _, loras = owner_dirs
    assert str(loras) not in script + recipe.to_json() + recipe.infotext()  # named, never located
    env = {"STUDIO_LORA_DIR": str(loras)}
    basic = rerun(tmp_path / "basic", recipe, result.plan.image.image, env=env)
    assert np.array_equal(basic, pixels(result.images[0]))
    sweep = SweepRequest(
        base=Img2ImgRequest(image=photo, **BASE, loras="paper-cut:1"), x_axis="lora_weight", x_values="0.5, 1"
    )
    (*_, last) = lora_engine.sweep(sweep)
    cell = last.recipes[1]
    swept = rerun(tmp_path / "sweep", cell, last.plan.cells[1].plan.image.image, env=env)
    assert np.array_equal(swept, pixels(last.images[1]))


@pytest.mark.parametrize(
    ("loras", "message"),
    [
        ("nope:1", r"loras: 'nope' is not an offered LoRA; offered: ink-wash, paper-cut"),
        ("../loras/paper-cut:1", r"loras: '\.\./loras/paper-cut' is not an offered LoRA"),
        ([["paper-cut", float("nan")]], r"the weight of 'paper-cut' must be a finite number, got nan"),
        ("paper-cut:5", r"the weight of 'paper-cut' must be in \[-4, 4\], got 5$"),
        ("paper-cut:-4.0000001", r"must be in \[-4, 4\], got -4\.0000001$"),  # every digit, not rounded to -4
        ("paper-cut:1, paper-cut:0.5", "names 'paper-cut' twice"),
        (",".join(["paper-cut:1"] * (MAX_LORAS + 1)), f"at most {MAX_LORAS} apply to one run"),
        (3, "loras must be text like 'my-style:0.8, other:0.5' or a list of"),
    ],
)
def test_loras_that_are_not_offered_or_out_of_range_are_refused_by_name(lora_engine, photo, loras, message):
    with pytest.raises(ValueError, match=message):
        lora_engine.plan(Img2ImgRequest(image=photo, **BASE, loras=loras))


def test_a_model_whose_pipeline_takes_no_lora_refuses_them(lora_engine, photo):
    with pytest.raises(ValueError, match=r"loras cannot be used with Kandinsky 2\.2: its pipeline takes no LoRA"):
        lora_engine.plan(Img2ImgRequest(image=photo, **BASE, model="kandinsky22", loras="paper-cut:1"))


def test_a_lora_made_for_another_family_is_refused_and_the_model_keeps_serving(lora_engine, photo):
    request = Img2ImgRequest(image=photo, prompt="a cat", model="sdxl-refiner", num_inference_steps=3, seed=1)
    before = lora_engine.img2img(request)
    with pytest.raises(LoraUnavailable, match=r"LoRA 'paper-cut' .*(could not be applied to|has no weights for) SDXL"):
        lora_engine.img2img(Img2ImgRequest(**{**request.__dict__, "loras": "paper-cut:1"}))
    assert not any(lora_engine.cache.get("sdxl-refiner", "img2img").get_list_adapters().values())
    after = lora_engine.img2img(request)
    assert np.array_equal(pixels(before.images[0]), pixels(after.images[0]))


def test_a_web_ui_lora_tag_maps_to_the_offered_lora_of_that_name(lora_engine):
    fields = basic_fields(
        "a cat <lora:paper-cut:0.7>, <lora:someone-else:1>, ink\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 3"
    )
    assert fields.values["prompt"] == "a cat, ink"
    assert fields.values["loras"] == "paper-cut:0.7"
    assert any("<lora:someone-else:1> removed: no LoRA of that name is offered here" in note for note in fields.notes)


def test_the_basic_endpoint_takes_loras_through_gradio_client(lora_engine, photo, tmp_path, launch):
    from gradio_client import Client, handle_file

    photo.save(tmp_path / "cat.png")
    app = launch(lora_engine)
    try:
        client = Client(app.studio_url, verbose=False, download_files=str(tmp_path))
        gallery, _, summary, *_ = client.predict(
            image=handle_file(str(tmp_path / "cat.png")),
            prompt="a cat wizard",
            num_inference_steps=4,
            seed=5,
            loras="paper-cut:0.8",
            api_name="/img2img",
        )
        assert "LoRAs paper-cut:0.8" in summary
        with pytest.raises(Exception, match="'nope' is not an offered LoRA"):
            client.predict(
                image=handle_file(str(tmp_path / "cat.png")), prompt="a cat", loras="nope:1", api_name="/img2img"
            )
    finally:
        app.close()
    expected = lora_engine.img2img(Img2ImgRequest(image=tmp_path / "cat.png", **BASE, loras="paper-cut:0.8"))
    assert np.array_equal(pixels(Image.open(gallery[0]["image"]).convert("RGB")), pixels(expected.images[0]))


def test_a_lora_runs_infotext_names_its_loras_as_the_web_ui_writes_them(lora_engine, photo):
    """Other readers, and the app reading its own infotext, lost a run's LoRAs: the prompt line carries the tags."""
    two = lora_engine.img2img(Img2ImgRequest(image=photo, **BASE, loras=[["paper-cut", 0.8], ["ink-wash", -0.5]]))
    text = two.recipe.infotext()
    assert text.splitlines()[0] == f"{BASE['prompt']} <lora:paper-cut:0.8> <lora:ink-wash:-0.5>"
    fields = basic_fields(text)
    assert fields.values["prompt"] == BASE["prompt"] and fields.values["loras"] == "paper-cut:0.8, ink-wash:-0.5"
