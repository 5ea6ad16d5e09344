"""The corpus: real files of other tools (tests/data/sd-metadata/, from enslo/sd-metadata's samples), each read onto
Basic's fields with the values it holds, or refused with the reason its README names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from readers import sd_parsers_read

from engine.recipes.recipe import read_image_text
from ui.recipe import read_source

CORPUS = Path(__file__).parent / "data" / "sd-metadata"
SEED_END = 2**32
NEITHER = "image carries neither an Img2Img Studio recipe nor a web UI parameters text"
NO_SAMPLER = "image's ComfyUI graph has no KSampler node this app can read"

# file, prompt start, steps, CFG, seed as written, Basic's scheduler: read from each file's own metadata text (its
# infotext, JSON or the sampler node of its ComfyUI graph); a seed past [0, 2^32) is written, Basic keeps its own.
READ = [
    ("civitai-hires.jpg", "general, masterpiece, be", 25, 5.0, 1311178179, "Euler a"),
    ("civitai.jpeg", "general, masterpiece, be", 25, 5.0, 1311178179, "Euler a"),
    ("comfyui-anima.png", "general, masterpiece, be", 24, 5.0, 662066908990052, "Euler"),  # SamplerCustomAdvanced
    ("comfyui-animated-webp.webp", "general, masterpiece, be", 20, 5.0, 270932924124066, None),
    ("comfyui-comfy-image-saver.jpeg", "unknown", 20, 8.0, 0, "Euler"),
    ("comfyui-comfy-image-saver.png", "unknown", 20, 8.0, 0, "Euler"),
    ("comfyui-comfy-image-saver.webp", "unknown", 20, 8.0, 0, "Euler"),
    ("comfyui-comfyroll.png", "general, masterpiece, be", 30, 6.0, 942975376742792, "Euler a"),
    ("comfyui-group-nodes.png", "general, masterpiece, be", 20, 5.0, 1038684211150939, None),
    ("comfyui-hires.png", "general, masterpiece, be", 20, 5.0, 1116526567339338, None),
    ("comfyui-low-denoise.png", "general, masterpiece, be", 40, 5.0, 667022537790957, None),
    ("comfyui-rgthree.png", "general, masterpiece, be", 20, 5.0, 963381484256655, None),
    ("comfyui-save-image-extended.jpeg", "general, masterpiece, be", 20, 5.0, 813617545434765, None),
    ("comfyui-save-image-extended.png", "general, masterpiece, be", 20, 5.0, 779742380066441, None),
    ("comfyui-save-image-extended.webp", "general, masterpiece, be", 20, 5.0, 602057552457611, None),
    ("comfyui-saveimage-plus.jpg", "general, masterpiece, be", 20, 5.0, 577723948579568, None),
    ("comfyui-saveimage-plus.png", "general, masterpiece, be", 20, 5.0, 434067965194649, None),
    ("comfyui-saveimage-plus.webp", "general, masterpiece, be", 20, 5.0, 453851843419278, None),
    ("comfyui-saveimagewithmetadata.jpeg", "general, masterpiece, be", 20, 5.0, 347382230306562, None),
    ("comfyui-saveimagewithmetadata.png", "general, masterpiece, be", 20, 5.0, 38802053347333, None),
    ("comfyui-saveimagewithmetadata.webp", "general, masterpiece, be", 20, 5.0, 827555711811618, "Euler a"),
    ("comfyui-upscale.png", "general, masterpiece, be", 20, 5.0, 511796159331902, None),
    ("comfyui.png", "general, masterpiece, be", 20, 5.0, 422847914351919, None),
    ("easy-reforge.png", "1girl, solo, hatsune mik", 4, 1.0, 2582194946, None),
    ("forge-classic-adetailer.png", "general, masterpiece, be", 24, 4.0, 4179307297, "Euler a"),
    ("forge-classic-en.png", "general, masterpiece, be", 20, 6.0, 1239240392, "DPM++ 2M Karras"),
    ("forge-classic-hires.jpeg", "general, masterpiece, be", 20, 6.0, 3452054396, "DPM++ 2M Karras"),
    ("forge-classic-hires.png", "general, masterpiece, be", 20, 6.0, 2301589892, "DPM++ 2M Karras"),
    ("forge-classic-hires.webp", "general, masterpiece, be", 20, 6.0, 2991931972, "DPM++ 2M Karras"),
    ("forge-classic.jpeg", "general, masterpiece, be", 20, 6.0, 2547514258, "DPM++ 2M Karras"),
    ("forge-classic.png", "general, masterpiece, be", 20, 6.0, 1239240392, "DPM++ 2M Karras"),
    ("forge-classic.webp", "general, masterpiece, be", 20, 6.0, 2630661657, "DPM++ 2M Karras"),
    ("forge-neo-adetailer.png", "general, masterpiece, be", 24, 4.0, 4179307297, "Euler a"),
    ("forge-neo-hires.png", "general, masterpiece, be", 24, 6.0, 449383496, "Euler a"),
    ("forge-neo.jpeg", "general, masterpiece, be", 24, 6.0, 2417156106, "Euler a"),
    ("forge-neo.png", "general, masterpiece, be", 24, 6.0, 4179307297, "Euler a"),
    ("forge-neo.webp", "general, masterpiece, be", 24, 6.0, 2056443400, "Euler a"),
    ("forge.png", "general, masterpiece, be", 25, 5.0, 747066619, "Euler"),
    ("huggingface-space-upscale.png", "general, masterpiece, be", 20, 5.5, 1971450810, "DPM++ 2M Karras"),
    ("huggingface-space.png", "general, masterpiece, be", 24, 5.5, 443800072, "DPM++ 2M Karras"),
    ("invokeai-en.png", "general, masterpiece, be", 24, 6.0, 1860920704, "Euler a"),
    ("invokeai.png", "general, masterpiece, be", 24, 6.0, 3951921344, "Euler a"),
    ("krea2.png", "", 8, 1.0, 371644226245214, "Euler"),
    ("novelai-curated.png", "1girl, solo, hatsune mik", 23, 5.0, 2156638429, "Euler a"),
    ("novelai-curated.webp", "1girl, solo, hatsune mik", 23, 5.0, 880673757, "Euler a"),
    ("novelai-full-3char.png", "2girls, 1boy, dancing, #", 28, 5.0, 1702945580, "Euler a"),
    ("novelai-full-3char.webp", "2girls, 1boy, dancing, #", 28, 5.0, 447042893, "Euler a"),
    ("novelai-full.png", "1girl, solo, hatsune mik", 28, 5.0, 2043807047, "Euler a"),
    ("novelai-ref.png", "1girl, solo, dancing, , ", 28, 5.0, 949223552, "Euler a"),
    ("reforge-hires.jpeg", "general, masterpiece, be", 20, 6.0, 3494396176, "DPM++ 2M Karras"),
    ("reforge-hires.png", "general, masterpiece, be", 20, 6.0, 879759072, "DPM++ 2M Karras"),
    ("reforge-hires.webp", "general, masterpiece, be", 20, 6.0, 1010990389, "DPM++ 2M Karras"),
    ("reforge.jpeg", "general, masterpiece, be", 20, 6.0, 584157617, "DPM++ 2M Karras"),
    ("reforge.png", "general, masterpiece, be", 20, 6.0, 270740395, "DPM++ 2M Karras"),
    ("ruined-fooocus.png", "general, masterpiece, be", 30, 8.0, 2020047614, "DPM++ 2M SDE Karras"),
    ("sd-next-en.png", "general, masterpiece, be", 20, 6.0, 2251068289, None),
    ("sd-next-hires.jpg", "general, masterpiece, be", 20, 6.0, 3970581939, "DDIM"),
    ("sd-next-hires.png", "general, masterpiece, be", 20, 6.0, 1968293115, "DDIM"),
    ("sd-next-hires.webp", "general, masterpiece, be", 20, 6.0, 1755251313, "Euler a"),
    ("sd-next.jpg", "general, masterpiece, be", 20, 6.0, 899700607, "Euler a"),
    ("sd-next.png", "general, masterpiece, be", 20, 6.0, 2427651458, "DDIM"),
    ("sd-next.webp", "general, masterpiece, be", 20, 6.0, 3014033436, "DDIM"),
    ("sd-webui-hires.png", "general, masterpiece, be", 20, 5.5, 3888671826, "DPM++ 2M Karras"),
    ("sd-webui.jpg", "general, masterpiece, be", 20, 5.5, 3623174757, "DPM++ 2M Karras"),
    ("sd-webui.png", "general, masterpiece, be", 20, 7.0, 3782896554, "DPM++ 2M Karras"),
    ("sd-webui.webp", "general, masterpiece, be", 20, 5.5, 1028435836, "DPM++ 2M Karras"),
    ("stability-matrix-hires.png", "general, masterpiece, be", 20, 5.0, 2073041550, None),
    ("stability-matrix-upscale.png", "general, masterpiece, be", 20, 5.0, 963022979, None),
    ("stability-matrix.png", "general, masterpiece, be", 20, 5.0, 395309383, None),
    ("swarmui-hires.png", "general, masterpiece, be", 20, 7.0, 733776228, None),
    ("swarmui-upscale.png", "general, masterpiece, be", 20, 7.0, 1741309074, None),
    ("swarmui.jpg", "general, masterpiece, be", 20, 7.0, 697543491, None),
    ("swarmui.png", "general, masterpiece, be", 20, 7.0, 2083100758, None),
    ("swarmui.webp", "general, masterpiece, be", 20, 7.0, 830680752, None),
    ("tensorart.png", "general, masterpiece, be", 25, 7.0, 3036459311, None),
]
REFUSED = [
    ("civitai-upscale.jpg", NO_SAMPLER),
    ("empty.jpg", NEITHER),
    ("empty.png", NEITHER),
    ("empty.webp", NEITHER),
    ("gimp-en.png", NEITHER),
    (
        "gimp.jpg",
        "image's text 'GIMPで再保存しただけ' is no web UI parameters text: it has no Steps, Seed or CFG scale",
    ),
    ("gimp.png", NEITHER),
    ("gimp.webp", NEITHER),
]


def test_the_corpus_is_every_file_of_the_folder_and_its_readme():
    files = {path.name for path in CORPUS.iterdir() if path.suffix != ".md"}
    assert files == {row[0] for row in READ} | {row[0] for row in REFUSED}
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    assert [name for name in sorted(files) if f"`{name}`" not in readme] == []


@pytest.mark.parametrize(("name", "prompt", "steps", "cfg", "seed", "scheduler"), READ, ids=[r[0] for r in READ])
def test_each_file_is_read_with_the_values_it_holds(name, prompt, steps, cfg, seed, scheduler):
    recipe, fields = read_source(str(CORPUS / name), "")
    values = fields.values
    assert recipe is None
    assert values["prompt"].startswith(prompt)
    assert (values["num_inference_steps"], values["guidance_scale"], values.get("scheduler")) == (
        steps,
        cfg,
        scheduler,
    )
    if seed < SEED_END:
        assert values["seed"] == seed
    else:
        assert values["seed"] is None
        assert f"Seed {seed} is outside the app's seeds [0, 2^32): Basic's seed is kept." in fields.notes


def test_the_expected_values_agree_with_a_reader_nobody_here_wrote():
    """The READ table against sd-parsers' reading of the same files (tests/readers.py: each image kept alive, or
    sd-parsers may answer with an earlier file's values), wherever it reads a file and a value."""
    compared = 0
    for name, prompt, steps, cfg, seed, _scheduler in READ:
        read = sd_parsers_read(CORPUS / name)
        if read is None or not read.samplers:
            continue
        sampler = read.samplers[0]
        theirs = {key: sampler.parameters.get(key) for key in ("steps", "cfg_scale", "seed")}
        ours = {"steps": steps, "cfg_scale": cfg, "seed": seed}
        assert {key: float(value) for key, value in theirs.items() if value is not None} == {
            key: float(ours[key]) for key, value in theirs.items() if value is not None
        }, name
        if sampler.prompts and prompt:
            assert sampler.prompts[0].value.startswith(prompt), name
        compared += 1
    assert compared >= 50


def test_a_prompt_a_language_model_wrote_at_run_time_is_said_not_read():
    """krea2.png's prompt is written by a TextGenerate node when the graph runs: not in the file, and said so
    with the request it was written from (the user's text, through a switch, a preview and a concatenation)."""
    _, fields = read_source(str(CORPUS / "krea2.png"), "")
    assert fields.values["prompt"] == ""
    (said,) = [note for note in fields.notes if "TextGenerate" in note]
    assert said.startswith("Node 30:16 (TextGenerate) has a language model write the prompt at run time")
    assert "初音ミクのポートレート。美麗な2Dアニメイラスト。白背景。" in said


@pytest.mark.parametrize(("name", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
def test_each_other_file_is_refused_with_a_named_reason(name, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        read_source(str(CORPUS / name), "")


@pytest.mark.parametrize("name", ["empty.png", "empty.jpg", "empty.webp"])
def test_a_file_without_metadata_has_no_text(name):
    assert read_image_text(CORPUS / name) == {}


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("sd-webui.webp", "num_inference_steps: 20"),
        ("comfyui-save-image-extended.webp", "guidance_scale: 5.0"),
        ("novelai-curated.webp", "seed: 880673757"),
    ],
)
def test_the_recipe_endpoint_reads_corpus_files(client, name, line):
    from gradio_client import handle_file

    summary, script, recipe = client.predict(handle_file(str(CORPUS / name)), "", api_name="/recipe")
    assert line in summary.splitlines() and (script, recipe) == ("", ""), summary
