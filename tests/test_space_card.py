"""The Space card: the README's front matter carries the catalog's models and the files hub mode loads, and
those files alone are enough: every model loads from a Hugging Face cache holding nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from engine.base.settings import Settings
from engine.core import Engine
from engine.models import space_card
from engine.models.catalog import DEFAULT_MODEL, get_spec
from engine.models.tiny import cache_repo_folder
from engine.pipelines.device import DevicePolicy

ROOT = Path(__file__).resolve().parents[1]
# The twins' tokenizers are one tokenizer.json where the real repositories publish these three.
TWIN_TOKENIZER_STAND_INS = ("vocab.json", "merges.txt", "special_tokens_map.json")


def front_matter() -> dict:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_the_readme_front_matter_carries_the_catalogs_models_and_preloads():
    card = front_matter()
    assert card["models"] == space_card.linked_models()
    assert card["preload_from_hub"] == space_card.preload_from_hub()
    assert card["suggested_hardware"] == space_card.SUGGESTED_HARDWARE
    assert set(space_card.TAGS) <= set(card["tags"])
    assert card["sdk"] == "gradio" and card["app_file"] == "app.py"
    assert card["python_version"] in ("3.10", "3.11", "3.12")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python -m engine.models.space_card" in (ROOT / "docs" / "deploying.md").read_text(encoding="utf-8")
    missing = [row for row in space_card.licence_rows() if row not in readme]
    assert not missing, f"the README's models-and-licences table lacks: {missing}"


def test_the_quick_start_is_the_first_thing_after_the_front_matter():
    """GitHub shows the front matter as a table, then the body: the title, one sentence, then how to start."""
    body = (ROOT / "README.md").read_text(encoding="utf-8").split("---\n", 2)[2]
    headings = [line for line in body.splitlines() if line.startswith("#")]
    assert headings[:2] == ["# Img2Img Studio", "## Quick start"]
    quick_start = body[body.index("## Quick start") :].split("\n## ", 1)[0]
    assert "pip install -r requirements.txt && python app.py" in quick_start
    assert "pip install -r requirements-dev.txt && python -m pytest" in quick_start
    assert "--models tiny" in quick_start and "--models hub" in quick_start
    for page in ("running", "models", "api", "deploying", "testing"):
        assert f"(docs/{page}.md)" in quick_start, f"the quick start does not link docs/{page}.md"


def test_preloads_are_only_what_hub_mode_reads():
    entries = dict(entry.split(" ", 1) for entry in space_card.preload_from_hub())
    sd15 = entries[get_spec("sd15").hub_id].split(",")
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in sd15
    # never the single-file checkpoints, the full-precision twins of fp16 files, or pickles beside safetensors
    assert not [name for name in sd15 if name.endswith(".ckpt") or ("/" not in name and name != "model_index.json")]
    assert "unet/diffusion_pytorch_model.safetensors" not in sd15 and not any(n.endswith(".bin") for n in sd15)
    assert "text_encoder/pytorch_model.bin" in entries["kohbanye/pixel-art-style"]  # .bin only there
    assert entries["lllyasviel/Annotators"] == "dpt_hybrid-midas-501f0c75.pt"  # not ZoeDepth's 1.44 GB
    no_checker = space_card.repo_files("sd15", safety_checker=False)
    assert not [name for name in no_checker if name.startswith(("safety_checker/", "feature_extractor/"))]


@pytest.fixture(scope="module")
def preload_only_cache(hub_cache_dir, tmp_path_factory):
    """A Hugging Face cache holding, of the twin cache, only the preload files (and the twins' tokenizer.json)."""
    root = tmp_path_factory.mktemp("preloaded")
    missing = []
    for entry in space_card.preload_from_hub():
        hub_id, names = entry.split(" ", 1)
        source = cache_repo_folder(hub_cache_dir, hub_id)
        commit = (source / "refs" / "main").read_text().strip()
        snapshot = source / "snapshots" / commit
        target = cache_repo_folder(root, hub_id)
        (target / "refs").mkdir(parents=True)
        (target / "refs" / "main").write_text(commit)
        wanted = set(names.split(","))
        wanted |= {str(p.relative_to(snapshot)) for p in snapshot.rglob("tokenizer.json")}
        for name in sorted(wanted):
            if not (snapshot / name).is_file():
                if Path(name).name not in TWIN_TOKENIZER_STAND_INS:
                    missing.append(f"{hub_id}: {name}")
                continue
            (target / "snapshots" / commit / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(snapshot / name, target / "snapshots" / commit / name)
    assert not missing, f"preloads the twins (which mirror the repositories) do not have: {missing}"
    return root


def test_every_model_loads_on_a_gpu_policy_from_the_preloaded_files_alone(preload_only_cache, tmp_path):
    from huggingface_hub import constants

    engine = Engine(
        Settings.from_env({}, models="hub", data_dir=tmp_path),
        policy=DevicePolicy(dtype=torch.float16),  # what a GPU loads: the fp16 files, on the CPU here
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_CACHE", str(preload_only_cache))
        patch.setattr(constants, "HF_HUB_OFFLINE", True)
        for key in space_card.preloaded_keys():
            spec = get_spec(key)
            if "prior" in spec.kinds:
                continue  # read with its decoder: Kandinsky 2.2's img2img pipeline loads both
            if "controlnet" in spec.kinds:
                engine.cache.get_controlnet(DEFAULT_MODEL, key)
            else:
                kind = next(kind for kind in ("img2img", "upscale", "depth") if kind in spec.kinds)
                engine.cache.get(key, kind)
            engine.cache.evict(key)
