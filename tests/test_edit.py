"""Edit: each edit family equal to plain diffusers (the pipeline AutoPipelineForImage2Image gives its twin) in tiny and
hub mode, with one image and with references; a sequence of edits (Use as input) whose last recipe and script replay
every edit from the first image; bad input named; the endpoint through gradio_client."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoPipelineForImage2Image
from gradio_client import handle_file
from PIL import Image
from readers import sd_parsers_read
from scripts import replay
from skimage import data

from engine.models.catalog import get_spec, models_for
from engine.recipes.recipe import save_png
from engine.workflows.chain import ChainRequest
from engine.workflows.edit import KIND, EditRequest
from engine.workflows.registry import read_recipe, reads_files, script_for
from engine.workflows.sweep import SweepRequest

EDIT_MODELS = models_for(KIND)
# references an equality test gives a model: as many as it reads, but one for Qwen-Image-Edit, whose VAE encodes each
# at about a megapixel (slow on a CPU; FLUX.2 [klein] shows several)
FEWER_REFERENCES = {"qwen-image-edit-2511": 1}
KONTEXT = "flux-kontext-dev"


def references_for(model: str) -> tuple[Image.Image, ...]:
    """As many reference photos as the model reads besides the image (none for FLUX.1 Kontext), at small sizes of
    their own (FLUX.2 takes none under 64 pixels a side)."""
    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    most = get_spec(model).adapter.max_references - 1
    return tuple(Image.fromarray(photo).resize((80, 64)) for photo in photos[:most])


def plain_edit(twin, plan, seeds: list[int]) -> list[np.ndarray]:
    """What plain diffusers makes of a plan: the twin loaded by AutoPipelineForImage2Image (the edit pipeline it maps
    the repository to), the images, the size and the guidance the family's pipeline reads."""
    pipe = AutoPipelineForImage2Image.from_pretrained(str(twin), dtype=torch.float32)
    adapter = plan.spec.adapter
    images = [plan.image.image, *plan.references]
    width, height = plan.image.size
    call = {
        "image": images[0] if adapter.max_references == 1 else images,
        "prompt": plan.prompt,
        "num_inference_steps": plan.num_inference_steps,
        adapter.guidance_argument: plan.guidance_scale,
        "height": height,
        "width": width,
    }
    if adapter.edit_area:  # FLUX.1 Kontext: the output's area, the image not snapped to its trained sizes
        call.update(max_area=width * height, _auto_resize=False)
    if plan.negative_prompt or adapter.default_negative:  # Qwen-Image-Edit: " " when none, as its model card
        call["negative_prompt"] = plan.negative_prompt or adapter.default_negative
    generator = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    output = pipe(**call, generator=generator, num_images_per_prompt=len(seeds))
    return [np.asarray(image) for image in output.images]


@pytest.mark.parametrize("model", EDIT_MODELS)
def test_each_edit_family_equals_plain_diffusers_with_its_references(engine, twins, photo, model):
    spec = get_spec(model)
    negative = "blurry" if spec.adapter.negative_prompt else ""
    request = EditRequest(
        image=photo,
        prompt="make it a snowy night",
        model=model,
        references=references_for(model)[: FEWER_REFERENCES.get(model)],
        negative_prompt=negative,
        num_inference_steps=2,
        seed=5,
        num_images=2,
    )
    plan = engine.plan(request)
    assert plan.image.size == (128, 96)  # the image's 136x96, rounded to the model's multiple of 16
    (result,) = engine.run(plan)
    pipe = engine.cache.peek(model, KIND)
    assert type(pipe).__name__ == result.recipe.pipeline and result.recipe.pipeline.endswith("Pipeline")
    expected = plain_edit(twins / model, plan, [5, 6])
    for ours, theirs in zip(result.images, expected, strict=True):
        assert np.array_equal(np.asarray(ours), theirs)
    assert [ref["size"] for ref in result.recipe.extra["references"]] == [[80, 64]] * len(plan.references)
    assert len(plan.references) == len(references_for(model)[: FEWER_REFERENCES.get(model)])
    assert "strength" not in result.recipe.parameters


def test_a_sequence_of_edits_replays_from_the_first_image(engine, photo, tmp_path):
    """Use as input, twice (the second time at a size of its own): the third result's recipe records both edits
    before it, and its script, given the first image, makes the third result pixel for pixel."""
    first = engine.plan(EditRequest(image=photo, prompt="make it night", num_inference_steps=2, seed=5, num_images=2))
    (one,) = engine.run(first)
    second = EditRequest(
        image=one.images[1], prompt="add snow", num_inference_steps=2, seed=7, previous=one.previous(1)
    )
    (two,) = engine.run(engine.plan(second))
    assert two.plan.earlier[0]["index"] == 1 and two.init_image.tobytes() == first.image.image.tobytes()
    third = EditRequest(
        image=two.images[0],
        prompt="add a red scarf",
        num_inference_steps=3,
        seed=8,
        previous=two.previous(0),
        output_size="Resize to",
        width=96,
        height=96,
        resize_mode="Crop and resize",
    )
    (three,) = engine.run(engine.plan(third))
    recipe = three.recipe.for_image(0)
    png = save_png(three.images[0], recipe, tmp_path / "result.png")
    read = read_recipe(png)
    assert read == recipe
    assert [edit["call"]["prompt"] for edit in read.extra["edits"]] == ["make it night", "add snow"]
    assert read.size == (96, 96) and read.extra["resize_mode"] == "Crop and resize"
    assert reads_files(read) == ()
    (tmp_path / "recipe.py").write_text(script_for(read))
    three.init_image.save(tmp_path / "init.png")
    replay(tmp_path / "recipe.py", "replayed.png", "init.png", fresh=True)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "replayed.png")), np.asarray(three.images[0]))
    # the sequence is checked: an image that is not the result `previous` names is refused, not recorded wrongly
    with pytest.raises(ValueError, match="image is not the result that previous names"):
        engine.plan(EditRequest(image=one.images[0], prompt="add a hat", previous=two.previous(0)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strength": 0.6}, "strength 0.6 cannot be used with FLUX.1 Kontext [dev]: an instruction edit makes"),
        ({"references": ("x",)}, "references: FLUX.1 Kontext [dev] reads at most 1 image (the image to edit, no"),
        ({"negative_prompt": "blurry"}, "negative_prompt 'blurry' cannot be used with FLUX.1 Kontext [dev]"),
        ({"model": "sd15"}, "Stable Diffusion 1.5 has no edit pipeline, it serves img2img, text2img, inpaint only"),
        ({"prompt": ""}, "prompt is empty"),
        ({"num_inference_steps": 0}, "num_inference_steps must be"),
        (
            {"model": "qwen-image-edit-2511", "num_inference_steps": 1},
            "num_inference_steps must be at least 2 for Qwen",
        ),
        (
            {"model": "flux2-klein-4b", "references": ("x",) * 4},
            "FLUX.2 [klein] 4B reads at most 4 images (the image to edit and 3",
        ),
        ({"guidance_scale": -1}, "guidance_scale must be"),
        ({"image": b"not an image"}, "image"),
        ({"model": "flux2-klein-4b", "references": (b"not an image",)}, "reference_2 is not an image"),
        ({"output_size": "Resize to", "width": 8}, "width must be"),
    ],
)
def test_bad_input_is_refused_by_name(engine, photo, change, message):
    request = EditRequest(
        **{"image": photo, "prompt": "make it night", "model": KONTEXT, "num_inference_steps": 2, **change}
    )
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[").replace("]", r"\]")):
        engine.plan(request)


def test_an_edit_model_is_refused_by_basic_naming_what_it_serves(engine, photo):
    from engine.workflows.basic import Img2ImgRequest

    with pytest.raises(ValueError, match=r"FLUX.1 Kontext \[dev\] has no img2img pipeline, it serves edit only"):
        engine.plan(Img2ImgRequest(image=photo, prompt="night", model=KONTEXT))


@pytest.mark.parametrize("model", EDIT_MODELS)
def test_hub_mode_loads_each_edit_model_by_repo_id_and_equals_tiny_mode(hub_engine, engine, photo, model):
    request = EditRequest(
        image=photo, prompt="make it night", model=model, references=references_for(model)[:1], num_inference_steps=2
    )
    request = EditRequest(**{**request.__dict__, "seed": 9})
    (hub,) = hub_engine.run(request)
    (tiny,) = engine.run(request)
    assert hub.recipe.model_id == get_spec(model).hub_id
    assert np.array_equal(np.asarray(hub.images[0]), np.asarray(tiny.images[0]))


def test_the_endpoint_edits_twice_and_the_downloads_replay_the_sequence(client, cat_png, tmp_path):
    """Through gradio_client as the docs show it: the second call names the first result as `previous`; the script in
    its downloads, given its init.png, makes its result."""
    results, _, summary, _, _ = client.predict(
        image=handle_file(cat_png), prompt="make it night", num_inference_steps=2, seed=3, api_name="/edit"
    )
    first = results[0]["image"]
    results, _, summary, _, downloads = client.predict(
        image=handle_file(first),
        prompt="add snow",
        num_inference_steps=2,
        seed=4,
        previous=Path(first).stem,
        api_name="/edit",
    )
    assert "Edit 2 of a sequence" in summary
    names = {Path(path).name: path for path in downloads}
    assert {"recipe.py", "recipe.json", "init.png"} <= set(names)
    for name in ("recipe.py", "init.png"):
        (tmp_path / name).write_bytes(Path(names[name]).read_bytes())
    replay(tmp_path / "recipe.py", "replayed.png", "init.png")
    made = np.asarray(Image.open(results[0]["image"]))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "replayed.png")), made)
    # the PNG read back: by the Recipe tab (the script of both edits) and by a web UI infotext reader
    _, read_script, _ = client.predict(handle_file(results[0]["image"]), "", api_name="/recipe")
    assert read_script.startswith('"""a sequence of 2 edits') and "'make it night'" in read_script
    read = sd_parsers_read(results[0]["image"])
    (sampler,) = read.samplers
    assert (sampler.parameters["steps"], sampler.parameters["seed"]) == ("2", "4")
    assert sampler.prompts[0].value == "add snow"
    assert (sampler.model.name, read.metadata["Workflow"]) == ("flux2-klein-4b", "edit")
    with pytest.raises(Exception, match="previous must be the id of a result this server still keeps"):
        client.predict(image=handle_file(first), prompt="x", previous="f" * 32, api_name="/edit")


@pytest.mark.parametrize("model", ["flux2-klein-4b", KONTEXT])
def test_a_chain_edits_what_its_previous_stage_made_as_plain_diffusers_and_its_script_replays_it(
    engine, twins, photo, tmp_path, model
):
    """img2img -> edit: the edit stage receives the restyled image (decoded, at its model's multiple) and edits it as
    plain diffusers does on the twin; the chain's script, given its init, reproduces the final image."""
    stages = [
        {"model": "sd15", "num_inference_steps": 3, "strength": 0.6},
        {"model": model, "prompt": "make it a snowy night", "num_inference_steps": 2},
    ]
    *_, last = engine.chain(ChainRequest(image=photo, preset="", stages=stages, seed=9))
    assert last.finished and [(s.kind, s.receives) for s in last.plan.stages] == [("img2img", None), ("edit", "image")]
    restyled, edited = (result.image for result in last.results)
    stage = last.plan.stages[1]
    assert restyled.size == (136, 96) and edited.size == stage.input_size == (128, 96)
    pipe = AutoPipelineForImage2Image.from_pretrained(str(twins / model), dtype=torch.float32)
    given = restyled.resize((128, 96), Image.Resampling.LANCZOS)
    adapter = get_spec(model).adapter
    call = {"image": given if adapter.max_references == 1 else [given], "prompt": "make it a snowy night"}
    call |= {"num_inference_steps": 2, "guidance_scale": stage.guidance_scale, "height": 96, "width": 128}
    if adapter.edit_area:
        call |= {"max_area": 128 * 96, "_auto_resize": False}
    plain = pipe(**call, generator=[torch.Generator("cpu").manual_seed(9)]).images[0]
    assert np.array_equal(np.asarray(edited), np.asarray(plain))
    png = save_png(edited, last.results[-1].recipe, tmp_path / "final.png")
    (tmp_path / "recipe.py").write_text(script_for(read_recipe(png)))
    last.plan.init.image.save(tmp_path / "init.png")
    replay(tmp_path / "recipe.py", "replayed.png", "init.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "replayed.png")), np.asarray(edited))


def test_the_edit_presets_run_and_an_edit_stage_refuses_a_strength(engine, photo):
    *_, last = engine.chain(ChainRequest(image=photo, preset="edit-image", prompt="a snowy night", seed=2))
    assert last.finished and [stage.kind for stage in last.plan.stages] == ["edit", "img2img"]
    assert last.plan.stages[0].prompt == "Turn the image into this: a snowy night"
    stages = [{"model": "flux2-klein-4b", "strength": 0.5}]
    with pytest.raises(ValueError, match=r"stage 1 \(flux2-klein-4b\): strength 0.5 cannot be used with an edit"):
        engine.plan(ChainRequest(image=photo, preset="", stages=stages, seed=1))


def test_an_edit_sweep_makes_each_cell_as_plain_diffusers_and_its_script_replays_it(engine, twins, photo, tmp_path):
    """A sweep over an edit model and instructions: every cell an edit of its own with the Edit workflow's recipe,
    equal to plain diffusers on its twin; models of two edit families meet on one grid; a cell's script replays it."""
    base = EditRequest(image=photo, prompt="make it night", num_inference_steps=2, seed=3)
    models, prompts = f"flux2-klein-4b\n{KONTEXT}", "make it night\nadd snow"
    sweep = SweepRequest(base=base, x_axis="model", x_values=models, y_axis="prompt", y_values=prompts)
    *_, last = engine.run(sweep)
    assert last.finished and [recipe.workflow for recipe in last.recipes] == ["edit"] * 4
    for cell in last.plan.cells:
        (theirs,) = plain_edit(twins / cell.plan.spec.key, cell.plan, [3])
        assert np.array_equal(np.asarray(last.images[cell.index]), theirs), cell.caption
    png = save_png(last.images[3], last.recipes[3], tmp_path / "cell.png")
    (tmp_path / "recipe.py").write_text(script_for(read_recipe(png)))
    photo.save(tmp_path / "init.png")
    replay(tmp_path / "recipe.py", "replayed.png", "init.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "replayed.png")), np.asarray(last.images[3]))
    with pytest.raises(ValueError, match="x_axis 'strength' does not apply to an edit sweep"):
        engine.plan(SweepRequest(base=base, x_axis="strength", x_values="0.5, 0.8"))
    with pytest.raises(ValueError, match="x_values for axis 'model': model must be one of"):
        engine.plan(SweepRequest(base=base, x_axis="model", x_values="flux2-klein-4b\nsd15"))


def test_the_sweep_endpoint_with_an_edit_model_edits_each_cell(client, cat_png):
    _, summary, cells, _ = client.predict(
        image=handle_file(cat_png),
        prompt="make it night",
        model="flux2-klein-4b",
        num_inference_steps=2,
        seed=5,
        x_axis="seed",
        x_values="1, 2",
        api_name="/sweep",
    )
    assert summary.startswith("Done: 2/2 cells") and len(cells) == 2
    assert {read_recipe(cell["image"]).workflow for cell in cells} == {"edit"}
    with pytest.raises(Exception, match="scheduler does not apply to an edit sweep"):
        client.predict(
            image=handle_file(cat_png), prompt="x", model="flux2-klein-4b", scheduler="Euler", api_name="/sweep"
        )


def test_the_sweep_tabs_model_axis_example_follows_an_edit_model():
    from ui.sweep import axis_example

    assert axis_example("model", "flux2-klein-4b").splitlines() == EDIT_MODELS  # values a sweep over it takes
    assert axis_example("model", "sd15").splitlines()[0] == "sd15"
