"""Web UI metadata both ways, checked with readers nobody here wrote (sd-parsers, sd-prompt-reader, sd-geninfo,
pngmeta): sampler names from class and config, web UI PNGs and infotexts mapped onto Basic's fields."""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoPipelineForImage2Image, DPMSolverMultistepScheduler
from PIL import Image, PngImagePlugin
from readers import sd_parsers_read

from engine.pipelines.schedulers import SCHEDULERS, check_scheduler, sampler_name, schedulers_for
from engine.recipes.recipe import png_bytes, save_png
from engine.recipes.webui import basic_fields, model_key, to_compel
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.registry import read_recipe, recipe_from_json
from engine.workflows.sweep import SweepRequest

SWEPT = ["DPM++ 2M Karras", "DPM++ 2M SDE", "DPM++ 2M", "DEIS", "PLMS", "Euler a"]


@pytest.fixture(scope="module")
def sweep_pngs(engine, tmp_path_factory):
    """A sweep over schedulers, each cell saved as the app saves it."""
    from skimage import data

    photo = Image.fromarray(data.chelsea()).resize((136, 96))
    base = Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=4, strength=0.5, seed=3)
    sweep_request = SweepRequest(base=base, x_axis="scheduler", x_values="\n".join(SWEPT))
    *_, final = engine.sweep(engine.plan(sweep_request))
    folder = tmp_path_factory.mktemp("sweep-pngs")
    return [save_png(final.images[i], final.recipes[i], folder / f"{i}.png") for i in range(len(SWEPT))]


def test_sd_parsers_reads_each_cells_sampler_name(sweep_pngs):
    read = [sd_parsers_read(path).samplers[0].name for path in sweep_pngs]
    assert read == SWEPT


def test_sd_prompt_reader_reads_each_cells_sampler_name(sweep_pngs):
    if os.environ.get("STUDIO_INTEROP") == "required":  # .ci/run: fail, never skip
        import sd_prompt_reader.image_data_reader as reader
    else:
        reader = pytest.importorskip(
            "sd_prompt_reader.image_data_reader",
            reason="sd-prompt-reader pins Pillow 10.3: install it with `pip install --no-deps sd-prompt-reader==1.3.5`"
            " (.ci/run does)",
        )
    read = [reader.ImageDataReader(str(path)).parameter["sampler"] for path in sweep_pngs]
    assert read == SWEPT


@pytest.fixture(scope="module")
def app_png(engine, tmp_path_factory):
    """One Basic result saved as the app saves it: a negative prompt, a Karras sampler, text past Latin-1."""
    from skimage import data

    photo = Image.fromarray(data.chelsea()).resize((136, 96))
    request = Img2ImgRequest(
        image=photo,
        prompt=APP_PNG["prompt"],
        negative_prompt=APP_PNG["negative"],
        num_inference_steps=4,
        strength=0.5,
        guidance_scale=6.5,
        seed=7,
        scheduler="DPM++ 2M Karras",
    )
    *_, final = engine.run(engine.plan(request))
    return save_png(final.images[0], final.recipe, tmp_path_factory.mktemp("app-png") / "result.png")


APP_PNG = {
    "prompt": "a cat on a sofa, 猫",
    "negative": "blurry, low quality",
    "steps": "4",
    "sampler": "DPM++ 2M Karras",
    "cfg": "6.5",
    "seed": "7",
    "size": "136x96",
    "model": "sd15",
}


def read_with_sd_parsers(path: Path) -> dict:
    read = sd_parsers_read(path)
    (sampler,) = read.samplers
    return {
        "prompt": sampler.prompts[0].value,
        "negative": sampler.negative_prompts[0].value,
        "steps": sampler.parameters["steps"],
        "sampler": sampler.name,
        "cfg": sampler.parameters["cfg_scale"],
        "seed": sampler.parameters["seed"],
        "size": read.metadata["Size"],
        "model": sampler.model.name,
    }


def read_with_sd_prompt_reader(path: Path) -> dict:
    if os.environ.get("STUDIO_INTEROP") == "required":  # .ci/run: fail, never skip
        import sd_prompt_reader.image_data_reader as reader
    else:
        reader = pytest.importorskip("sd_prompt_reader.image_data_reader")
    read = reader.ImageDataReader(str(path))
    parameter = read.parameter
    return {
        "prompt": read.positive,
        "negative": read.negative,
        **{key: parameter[name] for key, name in [("steps", "steps"), ("sampler", "sampler"), ("cfg", "cfg")]},
        **{key: parameter[key] for key in ("seed", "size", "model")},
    }


def read_with_sd_geninfo(path: Path) -> dict:
    from sd_geninfo.sd_geninfo import parse_geninfo, read_geninfo, yaml_to_json

    text, _ = read_geninfo(Image.open(path))
    read = json.loads(yaml_to_json(parse_geninfo(text)))
    names = {"prompt": "Positive prompt", "negative": "Negative prompt", "steps": "Steps", "sampler": "Sampler"}
    names |= {"cfg": "CFG scale", "seed": "Seed", "size": "Size", "model": "Model"}
    return {key: str(read[name]) for key, name in names.items()}


def read_with_pngmeta(path: Path) -> dict:
    """pngmeta reads the text chunks alone; the infotext is then parsed as the web UI writes it."""
    from pngmeta import PngMeta

    fields = basic_fields(PngMeta(path)["parameters"])
    values = fields.values
    return {
        "prompt": values["prompt"],
        "negative": values["negative_prompt"],
        "steps": str(values["num_inference_steps"]),
        "sampler": values["scheduler"],
        "cfg": str(values["guidance_scale"]),
        "seed": str(values["seed"]),
        "size": "{}x{}".format(*values["size"]),
        "model": values["model"],
    }


@pytest.mark.parametrize(
    "read", [read_with_sd_parsers, read_with_sd_prompt_reader, read_with_sd_geninfo, read_with_pngmeta]
)
def test_the_apps_png_is_read_whole_by_readers_nobody_here_wrote(app_png, read):
    assert read(app_png) == APP_PNG


def test_a_png_a_metadata_tool_rewrote_still_carries_its_recipe(app_png, tmp_path):
    """pngmeta rewrites every text chunk on save (non-Latin-1 text as iTXt, a new key beside them)."""
    from pngmeta import PngMeta

    edited = PngMeta(app_png)
    edited["Comment"] = "rated 5 stars, 猫"
    edited.save(tmp_path / "rewritten.png")
    assert Image.open(tmp_path / "rewritten.png").tobytes() == Image.open(app_png).tobytes()
    assert read_recipe(tmp_path / "rewritten.png") == read_recipe(app_png)
    assert read_with_sd_parsers(tmp_path / "rewritten.png") == APP_PNG


def test_every_sampler_name_round_trips_through_class_and_config():
    """The name written for a scheduler that ran is the name that chose it, for every entry of the table."""
    import diffusers

    for name, (class_name, overrides) in SCHEDULERS.items():
        scheduler = getattr(diffusers, class_name)(**overrides)
        assert sampler_name(class_name, dict(scheduler.config)) == name
    assert sampler_name("TCDScheduler", {}) == "TCDScheduler"  # no web UI or other tool name: its class


def test_basic_with_a_scheduler_equals_raw_diffusers(engine, photo, twins):
    result = engine.img2img(
        Img2ImgRequest(
            image=photo, prompt="a cat", strength=0.6, num_inference_steps=6, seed=9, scheduler="DPM++ 2M Karras"
        )
    )
    pipe = AutoPipelineForImage2Image.from_pretrained(twins / "sd15", dtype=torch.float32)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        image=result.plan.image.image,
        prompt="a cat",
        strength=0.6,
        num_inference_steps=6,
        guidance_scale=7.5,
        generator=[torch.Generator("cpu").manual_seed(9)],
    ).images[0]
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(expected))
    assert result.recipe.scheduler_config["use_karras_sigmas"] is True
    assert "Sampler: DPM++ 2M Karras" in result.recipe.infotext()
    # its config holds lambda_min_clipped = -inf: the PNG's recipe still reads back (it was refused)
    assert read_recipe(png_bytes(result.images[0], result.recipe)) == result.recipe
    # the cached pipeline gets its own scheduler back
    assert type(engine.cache.get("sd15", "img2img").scheduler).__name__ == "PNDMScheduler"


@pytest.mark.parametrize(
    ("value", "message"),
    [("Foo", "scheduler 'Foo' does not fit model 'sd15'; choose from DDIM"), (3, "scheduler 3 does not fit")],
)
def test_an_unknown_scheduler_is_named_with_the_choices(value, message):
    with pytest.raises(ValueError, match=message):
        check_scheduler(value, "sd15")
    assert check_scheduler("dpm++ 2m karras", "sd15") == "DPM++ 2M Karras"
    assert check_scheduler("PNDM", "sd15") == "PLMS"  # diffusers' name for the same sampler
    assert "DDIM" in schedulers_for("kandinsky22")


@pytest.mark.parametrize(
    ("webui", "compel"),
    [
        ("a (red:1.3) cat", "a (red)1.3 cat"),
        ("((cute)) dog", "((cute)1.1)1.1 dog"),
        ("[blurry]", "(blurry)0.909"),
        (r"a \(literal\) bracket", r"a \(literal\) bracket"),
        ("(a (b:1.5) c)", "(a (b)1.5 c)1.1"),
        ("open (bracket", "open (bracket"),
    ],
)
def test_web_ui_weighting_becomes_compel(webui, compel):
    assert to_compel(webui) == compel


def test_translated_weighting_runs_through_compel(engine, photo):
    fields = basic_fields("a (cat:1.4), [dog]\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 1")
    values = fields.values
    assert values["weighted_prompt"] is True
    result = engine.img2img(
        Img2ImgRequest(image=photo, prompt=values["prompt"], num_inference_steps=4, seed=1, weighted_prompt=True)
    )
    assert result.images and result.recipe.weighted_prompt


def test_model_names_the_web_ui_writes_map_to_catalog_keys():
    assert model_key("v1-5-pruned-emaonly.safetensors [6ce0161689]") == "sd15"
    assert model_key("stable-diffusion-v1-5") == "sd15"  # what this app writes in Model:
    assert model_key("elden-ring-diffusion") == "elden-ring"
    assert model_key("stable-diffusion-xl-refiner-1.0") == "sdxl-refiner"
    assert model_key("sd-v1-5-inpainting.ckpt [c6bbc15e32]") == "sd15-inpainting"  # runwayml's file
    assert model_key("stable-diffusion-inpainting") == "sd15-inpainting"  # what this app writes in Model:
    assert model_key("dreamshaper_8") is None


WEBUI_INFOTEXT = (
    "masterpiece, a (red fox:1.2) in the snow <lora:add_detail:0.7>\n"
    "Negative prompt: [blurry], lowres\n"
    "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.55, Clip skip: 2, "
    "Version: v1.10.1"
)


def webui_png(path, text: str = WEBUI_INFOTEXT):
    """A PNG as the web UI saves it: the infotext in a tEXt chunk named parameters, nothing else."""
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    Image.new("RGB", (64, 96), (90, 120, 160)).save(path, pnginfo=info)
    return path


def test_a_web_ui_png_is_read_on_the_recipe_endpoint(client, tmp_path):
    from gradio_client import handle_file

    png = webui_png(tmp_path / "webui.png")
    fields, script, recipe_json = client.predict(handle_file(str(png)), api_name="/recipe")
    lines = fields.splitlines()
    expected = {
        "prompt: 'masterpiece, a (red fox)1.2 in the snow'",
        "negative_prompt: '(blurry)0.909, lowres'",
        "model: 'sd15'",
        "strength: 0.55",
        "guidance_scale: 6.5",
        "num_inference_steps: 28",
        "seed: 1234567",
        "weighted_prompt: True",
        "scheduler: 'DPM++ 2M Karras'",
    }
    assert expected <= set(lines), fields
    notes = "\n".join(line for line in lines if line.startswith("Note: "))
    for unmapped in (
        "<lora:add_detail:0.7>",
        "Clip skip: 2",
        "Model hash: 6ce0161689",
        "Version: v1.10.1",
        "Size 512x768",
    ):
        assert unmapped in notes
    assert (script, recipe_json) == ("", "")


def test_a_png_with_neither_recipe_nor_parameters_is_refused_by_name(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    Image.new("RGB", (64, 64)).save(tmp_path / "bare.png")
    with pytest.raises(AppError, match="carries neither an Img2Img Studio recipe nor a web UI parameters text"):
        client.predict(handle_file(str(tmp_path / "bare.png")), api_name="/recipe")


def strict_json(text: str):
    """JSON as every other reader parses it (Node's JSON.parse): no NaN, Infinity or -Infinity."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_recipes_are_standard_json_and_read_back_exactly(sweep_pngs):
    from engine.recipes.recipe import RECIPE_KEY, read_png_text

    dpm = [read_recipe(path) for path in sweep_pngs[:3]]  # the DPM++ samplers: lambda_min_clipped is -inf
    assert all(recipe.scheduler_config["lambda_min_clipped"] == -math.inf for recipe in dpm)
    for path, recipe in zip(sweep_pngs[:3], dpm, strict=True):
        written = strict_json(read_png_text(path)[RECIPE_KEY])  # what the PNG carries
        assert written["scheduler_config"]["lambda_min_clipped"] == "-Infinity"
        assert strict_json(recipe.to_json()) == written  # recipe.json, the download
        assert recipe_from_json(recipe.to_json()) == recipe  # read back as the number
    old = recipe.to_json().replace('"-Infinity"', "-Infinity")  # what recipes of earlier versions hold
    assert recipe_from_json(old) == recipe


def test_what_newer_web_uis_write_maps_and_what_cannot_map_is_said():
    """Forge and the web UI 1.9+ write the schedule apart from the sampler; other tools write "CFG Scale"; prompt
    editing has no counterpart in Compel and must not become something else silently."""
    fields = basic_fields(
        "a (cat:1.2) in a [garden:forest:0.5], [red|blue] hat\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG Scale: 6.5, Seed: 3, Size: 512x512"
    )
    assert fields.values["scheduler"] == "DPM++ 2M Karras"
    assert fields.values["guidance_scale"] == 6.5
    assert fields.values["prompt"] == "a (cat)1.2 in a [garden:forest:0.5], [red|blue] hat"
    assert (
        "Prompt editing and alternation ([from:to:when], [a|b]) have no counterpart here: '[garden:forest:0.5]', "
        "'[red|blue]' kept as typed, read as plain words." in fields.notes
    )
    assert not any("Schedule type" in note or "CFG Scale" in note for note in fields.notes)  # both were mapped
    other = basic_fields("a cat\nSteps: 20, Sampler: Euler, Schedule type: Exponential, CFG scale: 7, Seed: 3")
    assert other.values["scheduler"] == "Euler"
    assert "Schedule type 'Exponential' has no counterpart here; the sampler's own schedule is used." in other.notes


OTHER_TOOLS = Path(__file__).parent / "data" / "other-tools"  # real files other tools wrote (its README.md)
DUCK = "photo of a duck\nNegative prompt: monochrome\nSteps: 15, Sampler: UniPC, CFG scale: 5, Seed: 235284042"


@pytest.mark.parametrize("name", ["automatic1111_cropped.png", "automatic1111_cropped.jpg", "text_after_idat.png"])
def test_the_web_uis_own_files_are_read_wherever_it_put_the_text(name):
    """The web UI's PNG, its JPEG (EXIF UserComment, UTF-16) and its PNG rewritten with the text after the pixels."""
    from engine.recipes.recipe import read_image_text

    assert read_image_text(OTHER_TOOLS / name)["parameters"].startswith(DUCK)


def test_a_web_ui_jpeg_uploaded_as_a_blob_is_read_on_the_recipe_endpoint(client, tmp_path):
    """The JS client names an upload "blob": the file is told by its first bytes, not by its name."""
    from gradio_client import handle_file

    blob = tmp_path / "blob"
    blob.write_bytes((OTHER_TOOLS / "automatic1111_cropped.jpg").read_bytes())
    fields, script, _ = client.predict(handle_file(str(blob)), api_name="/recipe")
    assert {"prompt: 'photo of a duck'", "seed: 235284042", "scheduler: 'UniPC'"} <= set(fields.splitlines()), fields
    assert script == ""  # a web UI image: its fields, no recipe to replay


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_utf8_in_a_latin1_text_chunk_is_read_as_the_other_readers_read_it(tmp_path):
    """Stability Matrix and ComfyUI write UTF-8 into tEXt, whose spec says Latin-1: Japanese prompts came out
    garbled. A zTXt chunk that would inflate past the cap is refused, not inflated."""
    from engine.recipes.recipe import MAX_TEXT_CHUNK, read_image_text

    base = (OTHER_TOOLS / "automatic1111_cropped.png").read_bytes()
    end = base.rindex(b"IEND") - 4
    text = "猫の魔法使い, detailed\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5"
    png = tmp_path / "stability-matrix.png"
    png.write_bytes(
        base[:end].replace(b"parameters", b"parameterz")
        + _chunk(b"tEXt", b"parameters\0" + text.encode())
        + base[end:]
    )
    assert read_image_text(png)["parameters"] == text
    bomb = tmp_path / "bomb.png"
    inflating = zlib.compress(b"a" * (MAX_TEXT_CHUNK + 1))
    bomb.write_bytes(base[:end] + _chunk(b"zTXt", b"parameters\0\0" + inflating) + base[end:])
    with pytest.raises(ValueError, match=r"a text chunk inflates past 1,048,576 bytes"):
        read_image_text(bomb)


@pytest.mark.parametrize(
    ("name", "expected", "said"),
    [
        (
            "img2img_cropped.png",  # ComfyUI: KSampler <- CLIPTextEncode x2, CheckpointLoader
            {
                "prompt": "photograph of victorian woman with wings, sky clouds, meadow grass",
                "negative_prompt": "watermark, text",
                "num_inference_steps": 20,
                "guidance_scale": 8.0,
                "strength": 0.87,
                "model": "sd15",  # v1-5-pruned-emaonly.ckpt
                "scheduler": "DPM++ 2M",
                "seed": None,
            },
            "Seed 280823642470253 is outside the app's seeds [0, 2^32)",
        ),
        (
            "invokeai_imeta1.png",
            {"num_inference_steps": 35, "guidance_scale": 8.0, "seed": 3293022630, "scheduler": "Euler"},
            "Not mapped (no counterpart in Basic): ipAdapters, vae.",
        ),
        (
            "novelai1_cropped.png",
            {"prompt": "masterpiece, best quality,  cat, space, icon", "strength": 0.4, "scheduler": "Euler a"},
            "A NovelAI image",
        ),
        (
            "fooocus1_cropped.png",
            {"prompt": "a smiling goldfish", "guidance_scale": 4.0, "scheduler": "DPM++ 2M SDE Karras"},
            "Styles ['Fooocus V2', 'Fooocus Enhance', 'Fooocus Sharp'] are Fooocus's own: not applied.",
        ),
    ],
)
def test_other_tools_metadata_maps_onto_basic_and_says_what_does_not(name, expected, said):
    """Real files of ComfyUI, InvokeAI, NovelAI and Fooocus: refused, or read with the whole JSON as the prompt,
    before."""
    from ui.recipe import read_source

    recipe, fields = read_source(str(OTHER_TOOLS / name), "")
    assert recipe is None
    assert {key: fields.values.get(key) for key in expected} == expected
    assert any(said in note for note in fields.notes), fields.notes


def test_a_crafted_comfyui_graph_is_read_as_data(tmp_path):
    """Links that loop, nodes that are not objects and a sampler that names nothing: bounded, and said."""
    from ui.recipe import read_source

    def png(graph) -> str:
        info = PngImagePlugin.PngInfo()
        info.add_text("prompt", json.dumps(graph))
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.png"
        Image.new("RGB", (8, 8)).save(path, pnginfo=info)
        return str(path)

    looping = {
        "1": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "positive": ["9", 0], "steps": "many"}},
        "2": {"class_type": "LoraLoader", "inputs": {"model": ["3", 0], "lora_name": "a.safetensors"}},
        "3": {"class_type": "LoraLoader", "inputs": {"model": ["2", 0], "lora_name": "../../b.safetensors"}},
        "4": {"class_type": "SomeCustomNode", "inputs": {}},
    }
    _, fields = read_source(png(looping), "")
    assert fields.values["prompt"] == "" and fields.values["num_inference_steps"] is None  # no number
    assert any("Nodes not understood (their effect is not in Basic): SomeCustomNode." in n for n in fields.notes)
    assert any("<lora:a:1>" in note and "removed: no LoRA of that name is offered" in note for note in fields.notes)
    flux = {  # FLUX's graph: SamplerCustomAdvanced, its values in the nodes it links to
        "1": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {"noise": ["2", 0], "guider": ["3", 0], "sampler": ["4", 0], "sigmas": ["5", 0]},
        },
        "2": {"class_type": "RandomNoise", "inputs": {"noise_seed": 42}},
        "3": {"class_type": "BasicGuider", "inputs": {"conditioning": ["6", 0], "model": ["8", 0]}},
        "4": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "5": {"class_type": "BasicScheduler", "inputs": {"scheduler": "simple", "steps": 4, "model": ["8", 0]}},
        "6": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["7", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox"}},
        "8": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-schnell.safetensors"}},
    }
    _, fields = read_source(png(flux), "")
    read = {key: fields.values.get(key) for key in ("prompt", "seed", "num_inference_steps", "guidance_scale")}
    assert read == {"prompt": "a red fox", "seed": 42, "num_inference_steps": 4, "guidance_scale": 3.5}
    assert fields.values["model"] == "flux-schnell" and not any("not understood" in n for n in fields.notes)
    switched = {  # the prompt through a switch, a preview and a concatenation; the switch's two sides loop
        "1": {"class_type": "KSampler", "inputs": {"positive": ["2", 0], "negative": ["9", 0], "steps": 8}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": ["3", 0]}},
        "3": {
            "class_type": "ComfySwitchNode",
            "inputs": {"switch": ["4", 0], "on_true": ["5", 0], "on_false": ["3", 0]},
        },
        "4": {"class_type": "PrimitiveBoolean", "inputs": {"value": True}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["6", 0]}},
        "6": {
            "class_type": "StringConcatenate",
            "inputs": {"string_a": ["7", 0], "string_b": "ink", "delimiter": ", "},
        },
        "7": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "a red fox"}},
        "9": {"class_type": "CLIPTextEncode", "inputs": {"text": ["10", 0]}},
        "10": {
            "class_type": "ComfySwitchNode",
            "inputs": {"switch": ["11", 0], "on_true": ["7", 0], "on_false": ["10", 0]},
        },
        "11": {"class_type": "PrimitiveBoolean", "inputs": {"value": False}},
    }
    _, fields = read_source(png(switched), "")
    assert (fields.values["prompt"], fields.values["negative_prompt"]) == ("a red fox, ink", "")
    assert not any("not understood" in note and "Switch" in note for note in fields.notes), fields.notes
    with pytest.raises(ValueError, match="ComfyUI graph has no KSampler node"):
        read_source(png({"1": {"class_type": "SaveImage", "inputs": {}}}), "")
    with pytest.raises(ValueError, match="ComfyUI prompt text is not a graph of nodes"):
        read_source(png({"1": "not a node"}), "")


COMPEL_PROMPTS = [
    "a (cat)1.3 in the snow, (blurry)--",
    "portrait, (golden (hour)1.2 light)1.1, film++",
    "(a:b)1.2 [square] brackets",
]


@pytest.mark.parametrize("prompt", COMPEL_PROMPTS)
def test_a_weighted_runs_infotext_is_in_the_web_uis_syntax_and_reads_back_to_the_same_weights(prompt):
    """Compel syntax was written raw into the web UI field: read back, (cat)1.3 became (cat)1.11.3."""
    from compel.prompt_parser import PromptParser

    from engine.pipelines.prompts import webui_weighting
    from engine.recipes.recipe import Recipe

    def weights(text: str) -> list[tuple[str, float]]:
        fragments = PromptParser().parse_conjunction(text).prompts[0].children
        return [(fragment.text, round(fragment.weight, 4)) for fragment in fragments]

    recipe = Recipe(
        workflow="img2img",
        model="sd15",
        model_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
        pipeline="StableDiffusionImg2ImgPipeline",
        scheduler="PNDMScheduler",
        scheduler_config={},
        dtype="float32",
        generator_device="cpu",
        seeds=(3,),
        parameters={"prompt": prompt, "negative_prompt": "(ugly)1.4", "num_inference_steps": 20},
        size=(512, 512),
        weighted_prompt=True,
    )
    text = recipe.infotext()
    assert text.splitlines()[0] == webui_weighting(prompt) and "(ugly:1.4)" in text.splitlines()[1]
    fields = basic_fields(text)
    assert fields.values["weighted_prompt"] is True
    assert weights(fields.values["prompt"]) == weights(prompt)
    assert weights(fields.values["negative_prompt"]) == weights("(ugly)1.4")


def test_flow_matching_models_write_the_sampler_name_other_tools_use():
    from engine.pipelines.schedulers import sampler_name

    assert sampler_name("FlowMatchEulerDiscreteScheduler", {"shift": 3.0}) == "Euler"  # as Forge and ComfyUI write
    fields = basic_fields("a fox\nSteps: 4, Sampler: Euler, CFG scale: 0, Seed: 3, Model: FLUX.1-schnell")
    assert fields.values["model"] == "flux-schnell" and fields.values.get("scheduler") is None  # its own
    assert not any("Sampler" in note for note in fields.notes)
