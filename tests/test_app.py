"""The app as a client sees it: launched in tiny mode on 127.0.0.1, called through gradio_client."""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageFilter
from workflow_cases import CASES, middle_mask

from engine.recipes.recipe import read_png_text
from engine.workflows.registry import read_recipe, script_for

# Every generating endpoint starts with Basic's eight parameters, in this order (the API table in docs/api.md).
BASIC_PARAMETERS = [
    "image",
    "prompt",
    "negative_prompt",
    "model",
    "strength",
    "guidance_scale",
    "num_inference_steps",
    "seed",
]
# The Basic values both /sweep calls below share.
SWEEP_BASICS = dict(
    prompt="a cat",
    negative_prompt="",
    model="sd15",
    strength=0.5,
    guidance_scale=7.5,
    num_inference_steps=4,
    seed=3,
    api_name="/sweep",
)


def test_api_parameters_are_named_as_documented(client):
    info = client.view_api(return_format="dict", print_info=False)
    endpoint = info["named_endpoints"]["/img2img"]
    names = [p["parameter_name"] for p in endpoint["parameters"]]
    assert names[:8] == BASIC_PARAMETERS
    assert all(p["parameter_has_default"] for p in endpoint["parameters"][2:])


def test_img2img_returns_pngs_of_the_rounded_size(client, cat_png):
    gallery, grid, summary, script, downloads = client.predict(
        image=handle_file(str(cat_png)),
        prompt="cat wizard",
        negative_prompt="",
        model="sd15",
        strength=0.5,
        guidance_scale=7.5,
        num_inference_steps=6,
        seed=42,
        num_images=2,
        api_name="/img2img",
    )
    assert len(gallery) == 2
    for item in gallery:
        with Image.open(item["image"]) as image:
            assert (image.format, image.size) == ("PNG", (200, 136))
    with Image.open(grid) as image:
        assert image.size == (600, 136)
    assert "Seed 42–43" in summary and "4 denoising steps" in summary and "**" not in summary
    # The PNG carries its recipe; the script the API returns reproduces it pixel for pixel.
    recipe = read_recipe(gallery[0]["image"])
    assert (recipe.seed, recipe.model, recipe.parameters["strength"]) == (42, "sd15", 0.5)
    assert "Seed: 42" in read_png_text(gallery[0]["image"])["parameters"]
    names = {Path(f).name: f for f in downloads}
    assert set(names) == {"recipe.py", "init.png", "recipe.json"}
    assert Path(names["recipe.py"]).read_text().rstrip() == script.rstrip()
    out = Path(names["recipe.py"]).parent / "rerun.png"
    subprocess.run([sys.executable, names["recipe.py"], str(out), names["init.png"]], check=True, timeout=300)
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(gallery[0]["image"])))


def test_kandinsky_through_the_api_keeps_the_input_size(client, cat_png):
    gallery, _, summary, _, _ = client.predict(
        handle_file(str(cat_png)), "a cat", model="kandinsky22", num_inference_steps=4, seed=1, api_name="/img2img"
    )
    with Image.open(gallery[0]["image"]) as image:
        assert image.size == (192, 128)
    assert "Kandinsky 2.2" in summary


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strength": 0.05, "num_inference_steps": 10}, "int(10 x 0.05) = 0"),
        ({"model": "../../etc"}, "model must be one of sd15"),
        ({"seed": 2**40}, "seed must be in [0, 4294967296)"),
        ({"prompt": ""}, "prompt is empty"),
        ({"strength": 1.5}, "strength must be in (0, 1], got 1.5"),
        ({"num_inference_steps": 10**6}, "num_inference_steps must be in [1, 150], got 1000000"),
        ({"guidance_scale": "abc"}, "guidance_scale must be a number, got 'abc'"),
    ],
)
def test_bad_values_return_the_validation_message_and_the_app_keeps_serving(client, cat_png, changes, message):
    args = dict(prompt="a cat", model="sd15", strength=0.5, num_inference_steps=4, seed=1)
    args.update(changes)
    with pytest.raises(AppError) as error:
        client.predict(handle_file(str(cat_png)), api_name="/img2img", **args)
    assert message in str(error.value)
    gallery, *_ = client.predict(
        handle_file(str(cat_png)), "a cat", num_inference_steps=2, strength=1.0, seed=1, api_name="/img2img"
    )
    assert len(gallery) == 1


def test_page_header_says_which_models_are_live(server):
    page = httpx.get(server, timeout=30).text
    assert "Model mode:" in page and "tiny" in page and "noise from random weights" in page


def test_every_slider_spans_what_the_engine_accepts(server, engine, cat_png):
    """The page's sliders end where the engine's checks do: a value the engine takes is never out of reach."""
    from dataclasses import replace

    from engine.workflows.basic import Img2ImgRequest
    from engine.workflows.chain import ChainRequest

    config = httpx.get(server + "config", timeout=30).json()
    sliders = [c["props"] for c in config["components"] if c["type"] == "slider"]
    guidance = [s for s in sliders if "guidance scale" in s["label"].lower() and "control" not in s["label"].lower()]
    assert len(guidance) >= 4  # Basic, Sweep, Depth and its restyle
    request = Img2ImgRequest(image=str(cat_png), prompt="x")
    for slider in guidance:
        replace(request, guidance_scale=slider["maximum"]).validate(engine.settings)
        with pytest.raises(ValueError, match="guidance_scale"):
            replace(request, guidance_scale=slider["maximum"] + 0.5).validate(engine.settings)
    (width,) = [s for s in sliders if s["label"].startswith("Width (text-to-image")]
    chain = ChainRequest(image=None, preset="text-image-image", width=width["maximum"], height=512)
    engine.plan(chain)
    with pytest.raises(ValueError, match="width"):
        engine.plan(replace(chain, width=width["maximum"] + 8))
    assert width["minimum"] == engine.settings.min_side


def test_sweep_endpoint_returns_grid_cells_and_downloads(client, cat_png):
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/sweep"]
    assert [p["parameter_name"] for p in info["parameters"]][:12] == [
        *BASIC_PARAMETERS,
        "x_axis",
        "x_values",
        "y_axis",
        "y_values",
    ]
    grid, summary, cells, files = client.predict(
        image=handle_file(str(cat_png)),
        x_axis="guidance_scale",
        x_values="1.5, 7.5",
        y_axis="seed",
        y_values="1-2",
        **SWEEP_BASICS,
    )
    assert "Done:" in summary and "4/4 cells" in summary
    assert read_recipe(cells[3]["image"]).extra["position"] == 3
    assert [c["caption"] for c in cells] == [
        "guidance_scale=1.5, seed=1",
        "guidance_scale=7.5, seed=1",
        "guidance_scale=1.5, seed=2",
        "guidance_scale=7.5, seed=2",
    ]
    with Image.open(grid) as image:
        assert image.format == "PNG" and image.width > 2 * 200 and image.height > 2 * 136
    names = sorted(Path(f).name for f in files)
    assert names == ["sweep-cells.csv", "sweep-cells.json", "sweep-grid.png"]
    rows = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text())
    assert [(r["guidance_scale"], r["seed"]) for r in rows] == [(1.5, 1), (7.5, 1), (1.5, 2), (7.5, 2)]


def test_sweep_over_the_limit_is_refused_with_the_reason(client, cat_png):
    with pytest.raises(AppError, match="the sweep has 10 x 10 = 100 cells; the limit is 64"):
        client.predict(
            image=handle_file(str(cat_png)),
            x_axis="strength",
            x_values="0.1-1.0 [10]",
            y_axis="seed",
            y_values="1-10",
            **SWEEP_BASICS,
        )


def test_chain_endpoint_runs_stages_and_names_the_handover(client, cat_png):
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/chain"]
    assert [p["parameter_name"] for p in info["parameters"]][:5] == ["image", "preset", "prompt", "seed", "stages"]
    stages = json.dumps(
        [{"model": "sd15", "num_inference_steps": 4}, {"model": "elden-ring", "num_inference_steps": 4}]
    )
    gallery, final, comparison, summary, script, downloads = client.predict(
        image=handle_file(str(cat_png)), preset="", prompt="a cat", seed=5, stages=stages, api_name="/chain"
    )
    assert read_recipe(final).parameters["stages"][1]["receives"] == "latent"
    assert "comic" not in script and "elden-ring" in script and "recipe.py" in {Path(f).name for f in downloads}
    assert [item["caption"].split(" · ")[0] for item in gallery] == [
        "1. Stable Diffusion 1.5 (img2img) → latent",
        "2. Elden Ring Diffusion (img2img) (final)",
    ]
    with Image.open(final) as image:
        assert image.size == (200, 136)
    with Image.open(comparison) as image:
        assert image.size == (400, 136)
    assert "received latent" in summary and "Done: seed 5" in summary
    with pytest.raises(AppError, match="preset must be one of"):
        client.predict(image=handle_file(str(cat_png)), preset="nope", prompt="a cat", seed=5, api_name="/chain")


def test_recipe_endpoint_reads_a_png_from_the_app(client, cat_png):
    gallery, *_ = client.predict(
        image=handle_file(str(cat_png)),
        prompt="a cat",
        negative_prompt="blurry",
        model="sd15",
        strength=0.5,
        guidance_scale=6.0,
        num_inference_steps=4,
        seed=77,
        api_name="/img2img",
    )
    fields, script, recipe_json = client.predict(handle_file(gallery[0]["image"]), "", api_name="/recipe")
    assert {"seed: 77", "negative_prompt: 'blurry'"} <= set(fields.splitlines())
    assert "AutoPipelineForImage2Image.from_pretrained" in script and json.loads(recipe_json)["seeds"] == [77]
    infotext = "a red fox\nNegative prompt: blurry\nSteps: 30, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512"
    fields, script, _ = client.predict(None, infotext, api_name="/recipe")
    assert {"prompt: 'a red fox'", "num_inference_steps: 30"} <= set(fields.splitlines()) and script == ""
    with pytest.raises(AppError, match="image carries neither an Img2Img Studio recipe nor a web UI parameters text"):
        client.predict(handle_file(str(cat_png)), "", api_name="/recipe")


def test_depth_endpoint_parameters_are_named_as_documented(client):
    info = client.view_api(return_format="dict", print_info=False)
    names = [p["parameter_name"] for p in info["named_endpoints"]["/depth"]["parameters"]]
    assert names[:11] == [
        "image",
        "depth_map",
        "depth_estimator",
        "prompt",
        "negative_prompt",
        "strength",
        "guidance_scale",
        "num_inference_steps",
        "seed",
        "controlnet_conditioning_scale",
        "restyle_model",
    ]
    estimate = info["named_endpoints"]["/estimate_depth"]["parameters"]
    assert [p["parameter_name"] for p in estimate][:2] == ["image", "depth_estimator"]


def test_depth_endpoint_returns_the_guides_grid_and_pngs_with_recipes(client, cat_png, tmp_path):
    depth = tmp_path / "depth.png"
    Image.fromarray(np.tile(np.linspace(0, 65535, 40), (25, 1)).astype(np.uint16)).save(depth)
    grid, gallery, used, summary, script, downloads = client.predict(
        image=handle_file(str(cat_png)),
        depth_map=handle_file(str(depth)),
        depth_estimator="midas",
        prompt="a clay cat",
        negative_prompt="",
        strength=0.8,
        guidance_scale=7.5,
        num_inference_steps=4,
        seed=11,
        controlnet_conditioning_scale=0.8,
        restyle_model="elden-ring",
        api_name="/depth",
    )
    assert Image.open(grid).size == (400, 272)  # 2x2 of the 200x136 init
    assert [item["caption"] for item in gallery] == ["init", "depth (uploaded)", "ControlNet", "restyled (elden-ring)"]
    assert Image.open(used).size == (200, 136)
    controlnet = read_recipe(gallery[2]["image"])
    assert controlnet.workflow == "depth" and controlnet.seeds == (11,)
    assert read_recipe(gallery[3]["image"]).model == "elden-ring"
    assert "Restyle: Elden Ring Diffusion" in summary
    # the panel shows the final image's script: the restyle, whose init is the ControlNet result
    assert "elden-ring" in script and "controlnet" not in script.lower()
    init = next(path for path in downloads if Path(path).name == "init.png")
    assert np.array_equal(np.asarray(Image.open(init)), np.asarray(Image.open(gallery[2]["image"])))


def test_estimate_depth_endpoint_returns_a_map_of_the_image_size(client, cat_png):
    path = client.predict(handle_file(str(cat_png)), "depth-anything-v2-small", api_name="/estimate_depth")
    depth = Image.open(path)
    assert depth.size == (200, 136)
    assert len(set(depth.convert("L").getdata())) > 1


@pytest.mark.parametrize(
    ("estimator", "message"),
    [("zoe", "Upload a depth map instead"), ("<script>x</script>", "depth_estimator must be one of")],
)
def test_depth_errors_reach_the_client_and_the_app_keeps_serving(client, cat_png, estimator, message):
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(cat_png)), estimator, api_name="/estimate_depth")
    assert Image.open(client.predict(handle_file(str(cat_png)), "depth-anything-v2-small", api_name="/estimate_depth"))


def test_mcp_flag_serves_every_endpoint_as_a_described_tool(mcp_server):
    """--mcp: each tool says what it is for, and each parameter its meaning and the live limits."""
    tools = {t["name"]: t for t in httpx.get(f"{mcp_server}gradio_api/mcp/schema", timeout=30).json()}
    assert {*CASES, "estimate_depth", "recipe"} <= set(tools)
    assert tools["img2img"]["description"].startswith("Image-to-image (the Basic tab)")
    params = tools["img2img"]["inputSchema"]["properties"]
    assert "1 to 150" in params["num_inference_steps"]["description"]
    assert "in (0, 1]" in params["strength"]["description"]
    sweep = tools["sweep"]
    assert "At most 64 cells" in sweep["description"]
    assert all(p.get("description") for name, p in sweep["inputSchema"]["properties"].items()), sweep["inputSchema"]
    assert "at most 5 stages" in tools["chain"]["inputSchema"]["properties"]["stages"]["description"]
    assert "controlnet_conditioning_scale" in tools["depth"]["inputSchema"]["properties"]


def test_the_preprocess_patch_changes_only_the_components_it_marks(tmp_path):
    """ui/components.py patches Gradio's preprocess process-wide; an unmarked component keeps Gradio's own."""
    import gradio as gr
    from gradio.data_classes import FileData

    from ui.components import engine_checked, image_input, install_preprocess_hooks

    install_preprocess_hooks()
    plain, checked = gr.Slider(minimum=0, maximum=1), engine_checked(gr.Slider(minimum=0, maximum=1))
    with pytest.raises(Exception, match="greater than maximum value"):
        plain.preprocess(1.5)
    assert checked.preprocess(1.5) == 1.5  # the engine's check answers, naming the parameter
    Image.new("RGB", (8, 8), "red").save(tmp_path / "red.png")
    payload = FileData(path=str(tmp_path / "red.png"))
    assert image_input().preprocess(payload) == str(tmp_path / "red.png")  # unopened
    opened = gr.Image(type="pil").preprocess(payload)
    assert isinstance(opened, Image.Image) and opened.size == (8, 8)  # Gradio's own: opened


@pytest.mark.parametrize(("strength", "steps"), [(5, 20), (0.5, 99999), (-1, 20), (0.01, 10), (float("nan"), 20)])
def test_the_basic_plan_line_says_the_error_the_run_would(engine, photo, strength, steps):
    """Strength 5 was planned as 'int(10 x 5) = 10' (the browser then clamped it) and 99,999 steps as 80,000."""
    from engine.workflows.basic import Img2ImgRequest
    from ui import basic

    with pytest.raises(ValueError) as raised:
        engine.plan(Img2ImgRequest(image=photo, prompt="a cat", strength=strength, num_inference_steps=steps))
    assert basic.plan_text(engine, None, "sd15", strength, steps) == f"⚠️ {raised.value}"


def test_sweep_endpoint_inpaints_each_cell_when_given_a_mask(client, cat_png, tmp_path):
    """/sweep with a mask: each cell is an inpaint run over the mask_blur axis; the original is kept outside the
    blurred mask, the cells carry Inpaint recipes, and refused axes and fields are named."""
    with Image.open(cat_png) as cat:
        mask = middle_mask(cat)
    layer = Image.new("RGBA", mask.size, (0, 0, 0, 0))  # as a painting tool saves a brush layer
    layer.paste((255, 0, 0, 255), mask=mask)
    layer.save(tmp_path / "mask.png")
    _, summary, cells, files = client.predict(
        image=handle_file(str(cat_png)),
        mask=handle_file(str(tmp_path / "mask.png")),
        x_axis="mask_blur",
        x_values="0, 12",
        **SWEEP_BASICS,
    )
    assert "Done:" in summary and "2/2 cells" in summary
    recipes = [read_recipe(cell["image"]) for cell in cells]
    assert [(r.workflow, r.extra["mask_blur"]) for r in recipes] == [("inpaint", 0), ("inpaint", 12)]
    rows = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text())
    assert [(row["mask_blur"], row["inpaint_area"]) for row in rows] == [(0, "Whole picture"), (12, "Whole picture")]
    # the mask as the run read it comes with the downloads: a cell's script given the photo and it replays the cell
    downloaded = next(f for f in files if Path(f).name == "mask.png")
    script = tmp_path / "recipe.py"
    script.write_text(script_for(recipes[1]))
    out = tmp_path / "replayed.png"
    subprocess.run([sys.executable, str(script), str(out), str(cat_png), downloaded], check=True, timeout=300)
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(cells[1]["image"])))
    with Image.open(cells[0]["image"]) as sharp, Image.open(cells[1]["image"]) as blurred:
        # far from the mask (past the blur's reach) both keep the original pixels; inside, each painted its own
        far = np.asarray(mask.resize(sharp.size).filter(ImageFilter.MaxFilter(91))) == 0
        assert far.any() and np.array_equal(np.asarray(sharp)[far], np.asarray(blurred)[far])
        assert not np.array_equal(np.asarray(sharp), np.asarray(blurred))
    with pytest.raises(AppError, match="scheduler does not apply to an inpainting sweep"):
        client.predict(
            image=handle_file(str(cat_png)),
            mask=handle_file(str(tmp_path / "mask.png")),
            x_axis="seed",
            x_values="1-2",
            scheduler="Euler",
            **SWEEP_BASICS,
        )


def test_chain_endpoint_inpaints_with_a_mask_and_its_downloads_carry_it(client, cat_png, tmp_path):
    """/chain with the inpaint-upscale preset and a mask: the inpaint stage hands an image to the x4 upscaler, the
    downloads hold mask.png beside init.png, and the script given them reproduces the final image."""
    small = tmp_path / "small.png"
    with Image.open(cat_png) as cat:
        cat.resize((96, 64)).save(small)
        middle_mask(cat).save(tmp_path / "mask.png")
    stages = json.dumps(
        [
            {"model": "sd15", "kind": "inpaint", "num_inference_steps": 3},
            {"model": "sd-x4-upscaler", "num_inference_steps": 3},
        ]
    )
    _, final, _, summary, _, downloads = client.predict(
        image=handle_file(str(small)),
        preset="",
        prompt="a dog",
        seed=6,
        stages=stages,
        mask=handle_file(str(tmp_path / "mask.png")),
        api_name="/chain",
    )
    assert "Done: seed 6, final 384×256" in summary
    names = {Path(f).name: f for f in downloads}
    assert set(names) == {"recipe.py", "init.png", "recipe.json", "mask.png"}
    with Image.open(names["mask.png"]) as mask:
        assert mask.size == (96, 64)  # the chain's mask at its first stage's size
    out = Path(names["recipe.py"]).parent / "rerun.png"
    command = [sys.executable, names["recipe.py"], str(out), names["init.png"], names["mask.png"]]
    subprocess.run(command, check=True, timeout=300)
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(final)))
    with pytest.raises(AppError, match="stage 1 inpaints and needs a mask"):
        client.predict(
            image=handle_file(str(small)), preset="", prompt="a dog", seed=6, stages=stages, api_name="/chain"
        )
