"""Recipes: PNG chunks round-trip, web UI infotext parses, exported scripts reproduce the app's pixels."""

import json

import numpy as np
import pytest
from scripts import replay

from engine.recipes.recipe import parse_infotext, png_bytes, read_png_text
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.chain import ChainRequest, stages_json
from engine.workflows.registry import read_recipe, recipe_from_json, script_for
from engine.workflows.sweep import SweepRequest


def rerun(tmp_path, recipe, init, *, fresh: bool = False, env: dict | None = None):
    """Run the exported script as `python recipe.py result.png init.png` does (tests/scripts.py: in the shared
    worker interpreter, or a fresh one); its image."""
    from PIL import Image

    tmp_path.mkdir(parents=True, exist_ok=True)
    script = tmp_path / "recipe.py"
    script.write_text(script_for(recipe))
    if init is not None:
        init.save(tmp_path / "init.png")
    replay(script, "result.png", "init.png", fresh=fresh, env=env)
    return np.asarray(Image.open(tmp_path / "result.png"))


def test_png_chunks_round_trip_losslessly(engine, photo):
    result = engine.img2img(Img2ImgRequest(image=photo, prompt='a cat, "quoted"', num_inference_steps=3, seed=8))
    recipe = result.recipe.for_image(0)
    data = png_bytes(result.images[0], recipe)
    assert read_recipe(data) == recipe
    assert recipe_from_json(recipe.to_json()) == recipe
    text = read_png_text(data)["parameters"]
    assert text.startswith('a cat, "quoted"\nSteps: 3, Sampler: PLMS, CFG scale: 7.5, Seed: 8, Size: 136x96')
    assert parse_infotext(text)["seed"] == 8


def test_metadata_off_leaves_the_png_bare(photo):
    data = png_bytes(photo, None)
    assert "parameters" not in read_png_text(data)
    with pytest.raises(ValueError, match="carries no Img2Img Studio recipe"):
        read_recipe(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a cat\nNegative prompt: blurry, ugly\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, "
            "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.6, "
            "Version: v1.9.4",
            {
                "prompt": "a cat",
                "negative_prompt": "blurry, ugly",
                "num_inference_steps": 20,
                "guidance_scale": 7.0,
                "seed": 42,
                "width": 512,
                "height": 768,
                "strength": 0.6,
                "model": "v1-5-pruned-emaonly",
                "Model hash": "6ce0161689",
                "Version": "v1.9.4",
            },
        ),
        (
            "two lines\nof prompt\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 5.5, Seed: 1, Size: 512x512, "
            'Lora hashes: "a: 1, b: 2"',
            {
                "prompt": "two lines\nof prompt",
                "negative_prompt": "",
                "num_inference_steps": 30,
                "seed": 1,
                "Lora hashes": "a: 1, b: 2",
                "sampler": "DPM++ 2M Karras",
            },
        ),
        ("just a prompt", {"prompt": "just a prompt", "negative_prompt": ""}),
    ],
)
def test_web_ui_infotext_parses_into_the_shared_fields(text, expected):
    parsed = parse_infotext(text)
    assert {k: parsed[k] for k in expected} == expected


def test_bad_infotext_field_names_it():
    with pytest.raises(ValueError, match="infotext field 'Steps' is not a int: 'many'"):
        parse_infotext("a cat\nSteps: many, Sampler: Euler, CFG scale: 7, Seed: 1")


@pytest.mark.parametrize(
    ("model", "weighted", "scheduler"),
    [
        ("sd15", True, None),
        ("kandinsky22", False, None),
        ("sd15", False, "DPM++ 2M SDE Karras"),
        ("sdxl-refiner", True, None),
        ("sdxl-refiner", False, "Euler a"),
    ],
)
def test_basic_script_reproduces_the_image(engine, photo, tmp_path, model, weighted, scheduler):
    result = engine.img2img(
        Img2ImgRequest(
            image=photo.resize((200, 96)),
            prompt="a (cat)1.3",
            model=model,
            negative_prompt="blurry",
            num_inference_steps=4,
            seed=21,
            num_images=2,
            weighted_prompt=weighted,
            scheduler=scheduler,
        )
    )
    ours = np.asarray(result.images[1])
    assert np.array_equal(rerun(tmp_path, result.recipe.for_image(1), result.plan.image.image), ours)


@pytest.mark.parametrize(
    ("model", "weighted", "fresh"),  # one in a fresh interpreter, as a user runs it (tests/scripts.py)
    [("sd15", False, True), ("sd15", True, False), ("sdxl-refiner", False, False), ("sdxl-refiner", True, False)],
)
def test_sweep_cell_script_replays_its_batched_call(engine, photo, tmp_path, model, weighted, fresh):
    base = Img2ImgRequest(
        image=photo,
        prompt="a (cat)1.2",
        negative_prompt="blurry",
        strength=0.6,
        num_inference_steps=4,
        seed=5,
        model=model,
        weighted_prompt=weighted,
    )
    plan = engine.plan(
        SweepRequest(base=base, x_axis="guidance_scale", x_values="1, 4, 9", y_axis="seed", y_values="5, 6")
    )
    *_, final = engine.sweep(plan)
    cell = plan.cells[4]
    recipe = final.recipes[cell.index]
    assert recipe.workflow == "sweep" and recipe.weighted_prompt == weighted
    assert recipe.extra["position"] == 4 and len(recipe.extra["batch"]) == 6
    replayed = rerun(tmp_path, recipe, cell.plan.image.image, fresh=fresh)
    assert np.array_equal(replayed, np.asarray(final.images[cell.index]))


def test_a_kandinsky_sweep_cell_exports_its_own_call(engine, photo, tmp_path):
    """Kandinsky 2.2 runs a sweep cell by cell (engine/models/families/kandinsky22.py): its script is a Basic one."""
    base = Img2ImgRequest(image=photo, prompt="a cat", model="kandinsky22", num_inference_steps=4, seed=5)
    plan = engine.plan(SweepRequest(base=base, x_axis="guidance_scale", x_values="2, 6"))
    *_, final = engine.sweep(plan)
    recipe = final.recipes[1]
    assert recipe.workflow == "img2img"
    assert np.array_equal(rerun(tmp_path, recipe, plan.cells[1].plan.image.image), np.asarray(final.images[1]))


@pytest.mark.parametrize("preset", ["image-image-image", "text-image-image", "image-upscale-superres"])
def test_chain_script_reproduces_each_preset(engine, photo, tmp_path, preset):
    stages = json.loads(stages_json(preset))
    for stage in stages:
        stage["num_inference_steps"] = 4
    image = None if preset.startswith("text") else photo.resize((64, 64))
    *_, last = engine.chain(
        ChainRequest(image=image, preset="", stages=json.dumps(stages), seed=12, width=64, height=64)
    )
    assert last.finished
    final = last.results[-1]
    assert [s["receives"] for s in final.recipe.parameters["stages"]] == [s.receives for s in last.plan.stages]
    init = last.plan.init.image if last.plan.init is not None else None
    assert np.array_equal(rerun(tmp_path, final.recipe, init), np.asarray(final.image))


def test_text_then_img2img_on_one_model_shares_weights_in_the_script(engine, tmp_path):
    stages = [{"model": "sd15", "num_inference_steps": 4}, {"model": "sd15", "num_inference_steps": 4}]
    *_, last = engine.chain(
        ChainRequest(image=None, preset="", stages=json.dumps(stages), seed=3, width=64, height=64)
    )
    script = script_for(last.results[-1].recipe)
    assert "AutoPipelineForImage2Image.from_pipe(pipe, dtype=DTYPE)" in script
    replayed = rerun(tmp_path, last.results[-1].recipe, None, fresh=True)  # a chain's, in a fresh interpreter
    assert np.array_equal(replayed, np.asarray(last.final))


def test_send_to_basic_fields_from_a_recipe_or_an_infotext(engine, photo, tmp_path):
    from engine.recipes.recipe import save_png
    from ui.recipe import read_source

    result = engine.img2img(
        Img2ImgRequest(
            image=photo, prompt="a cat", model="elden-ring", num_inference_steps=3, seed=4, scheduler="Euler"
        )
    )
    path = save_png(result.images[0], result.recipe, tmp_path / "app.png")
    found, fields = read_source(str(path), "")
    assert found == result.recipe
    assert fields.values == {
        "prompt": "a cat",
        "negative_prompt": "",
        "strength": 0.45,
        "guidance_scale": 10.5,
        "num_inference_steps": 3,
        "seed": 4,
        "model": "elden-ring",
        "weighted_prompt": False,
        "loras": "",  # a recipe without LoRAs clears Basic's field
        "output_size": "Follow input",  # what it asked; the other size controls are left as they are
        "resize_mode": None,
        "scale_by": None,
        "scheduler": "Euler",
    }
    _, from_webui = read_source(None, "a fox\nNegative prompt: dark\nSteps: 9, Sampler: Euler, CFG scale: 6, Seed: 2")
    assert from_webui.values["prompt"] == "a fox" and from_webui.values["seed"] == 2
    assert from_webui.values["model"] is None and from_webui.values["scheduler"] == "Euler"
    assert "output_size" not in from_webui.values  # no Size: the output size is left as it is
    _, sized = read_source(None, "a fox\nSteps: 9, Sampler: Euler, CFG scale: 6, Seed: 2, Size: 512x768")
    assert (sized.values["output_size"], sized.values["width"], sized.values["height"]) == ("Resize to", 512, 768)
    assert any(note.startswith("Size 512x768: Output size is set to Resize to 512x768") for note in sized.notes)
    resized = engine.img2img(
        Img2ImgRequest(
            image=photo,
            prompt="a cat",
            num_inference_steps=2,
            seed=4,
            output_size="Resize to",
            width=96,
            height=64,
            resize_mode="Crop and resize",
        )
    )
    _, fields = read_source(str(save_png(resized.images[0], resized.recipe, tmp_path / "sized.png")), "")
    asked = {name: fields.values.get(name) for name in ("output_size", "width", "height", "resize_mode")}
    assert asked == {"output_size": "Resize to", "width": 96, "height": 64, "resize_mode": "Crop and resize"}


def test_the_script_worker_runs_each_script_alone_and_names_a_failure(tmp_path):
    """tests/scripts.py's shared interpreter: a script gets its own argv, working folder and namespace (a name
    an earlier script defined is not there), what it prints stays out of the answers, and a script that raises
    is reported with its traceback while the worker goes on."""
    from scripts import ScriptFailed

    (tmp_path / "first.py").write_text(
        "import sys\nLEFT_BEHIND = 1\nprint('noise')\nopen(sys.argv[1], 'w').write(sys.argv[2])\n"
    )
    (tmp_path / "second.py").write_text("print(LEFT_BEHIND)\n")
    (tmp_path / "broken.py").write_text("raise ValueError('the script broke')\n")
    replay(tmp_path / "first.py", "out.txt", "hello")
    assert (tmp_path / "out.txt").read_text() == "hello"
    with pytest.raises(ScriptFailed, match="NameError: name 'LEFT_BEHIND' is not defined"):
        replay(tmp_path / "second.py")
    with pytest.raises(ScriptFailed, match="ValueError: the script broke"):
        replay(tmp_path / "broken.py")
    with pytest.raises(ScriptFailed, match="ValueError: the script broke"):
        replay(tmp_path / "broken.py", fresh=True)
    replay(tmp_path / "first.py", "again.txt", "still serving")
    assert (tmp_path / "again.txt").read_text() == "still serving"
