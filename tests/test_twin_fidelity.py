"""Every twin mirrors its repository: the recorded (published) configs with only size fields changed, the
components of its model_index.json, the weight files the repository publishes; the catalog agrees."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from engine.models.catalog import CATALOG, get_spec
from engine.models.repos import HUB_REPOS_DIR, PICKLE, REPOS, SAFETENSORS, repo_facts
from engine.models.tiny import DEPTH_KEYS, SIZE_KEYS, build_twin, has_twin

TWINNED = [key for key in CATALOG if has_twin(key) and key != "midas"]  # MiDaS is controlnet-aux's fixed net
# Written by whichever library version saves the file, not part of the model.
BOOKKEEPING = {"_diffusers_version", "_name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash"}


def _class_of(config: dict, path: str) -> str:
    if "_class_name" in config:
        return config["_class_name"]
    if config.get("architectures"):
        return config["architectures"][0]
    return Path(path).parent.name


def _in_order_selection(twin: list, real: list) -> bool:
    it = iter(real)
    return all(any(item == candidate for candidate in it) for item in twin)


def with_defaults(recorded: dict, class_name: str) -> dict:
    """A diffusers config as the library loads it: the class's defaults for every key the file leaves out
    (SD 1.5's VAE config has no force_upcast: it loads as True, so a twin saying False would differ)."""
    import diffusers

    cls = getattr(diffusers, class_name, None)
    if cls is None or "_class_name" not in recorded:
        return recorded
    defaults = {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty and name not in ("self", "kwargs")
    }
    defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}
    return {**defaults, **recorded}


def mismatches(recorded: dict, saved: dict, class_name: str) -> list[str]:
    """Keys where the twin's saved config departs from the recorded one beyond what a size change allows."""
    sizes = SIZE_KEYS.get(class_name, set())
    found = []
    for key, value in with_defaults(recorded, class_name).items():
        if key in BOOKKEEPING or key.startswith("_valid"):
            continue
        if key not in saved:
            if key in recorded:  # a default the twin's file leaves out is loaded as the same default
                found.append(f"{key}: missing")
        elif key in DEPTH_KEYS and isinstance(value, list):
            if not _in_order_selection(saved[key], value):
                found.append(f"{key}: {saved[key]} is not a selection of {value}")
        elif key in sizes:
            continue
        elif saved[key] != value:
            found.append(f"{key}: {saved[key]!r} != published {value!r}")
    return found


@pytest.mark.parametrize("key", TWINNED)
def test_twin_configs_equal_the_recorded_configs_but_for_sizes(twins, key):
    facts = repo_facts(get_spec(key).hub_id)
    folder = build_twin(key, twins)
    problems = {}
    for path in facts.recorded():
        twin_path = folder / path
        if path.endswith("special_tokens_map.json"):
            continue  # checked through the tokenizer below
        assert twin_path.is_file(), f"{key}: the twin has no {path}"
        recorded = facts.config(path)
        saved = json.loads(twin_path.read_text())
        if path.endswith("tokenizer_config.json"):
            recorded = {k: recorded[k] for k in ("model_max_length",)}
        found = mismatches(recorded, saved, _class_of(recorded, path))
        if found:
            problems[path] = found
    assert not problems, f"{key} departs from {facts.hub_id}: {problems}"


@pytest.mark.parametrize("key", [k for k in TWINNED if repo_facts(get_spec(k).hub_id).model_index()])
def test_twin_has_the_components_and_weight_files_of_its_repo(twins, key):
    facts = repo_facts(get_spec(key).hub_id)
    folder = build_twin(key, twins)
    index = facts.model_index()
    assert json.loads((folder / "model_index.json").read_text()) == index
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or entry[0] is None:
            continue
        weights = {p.name for p in (folder / name).iterdir() if p.suffix in (".safetensors", ".bin")}
        if entry[1].endswith(("Scheduler", "Tokenizer", "TokenizerFast", "Processor")):
            assert not weights
            continue
        stem = "diffusion_pytorch_model" if entry[0] == "diffusers" else "model"
        expected = set()
        if SAFETENSORS in facts.formats:
            expected |= {f"{stem}.safetensors"} | {f"{stem}.{v}.safetensors" for v in facts.variants}
        if PICKLE in facts.formats:
            pickled = "pytorch_model" if stem == "model" else stem
            expected |= {f"{pickled}.bin"} | {f"{pickled}.{v}.bin" for v in facts.variants}
        assert weights == expected, f"{key}/{name}"


def test_tokenizers_keep_the_repos_special_tokens(twins):
    from transformers import CLIPTokenizer

    for key in ("sd15", "sdxl-refiner", "sd-x4-upscaler"):
        facts = repo_facts(get_spec(key).hub_id)
        name = "tokenizer_2" if key == "sdxl-refiner" else "tokenizer"
        special = facts.config(f"{name}/special_tokens_map.json")
        tokenizer = CLIPTokenizer.from_pretrained(build_twin(key, twins) / name)
        for role in ("bos_token", "eos_token", "pad_token", "unk_token"):
            value = special[role]
            assert str(getattr(tokenizer, role)) == (value if isinstance(value, str) else value["content"]), role
        # CLIP's end token has the highest id, which the text encoders' legacy pooling (eos_token_id 2) relies on
        assert tokenizer.eos_token_id == len(tokenizer) - 1


def test_the_catalog_agrees_with_what_each_repo_publishes():
    for key, spec in CATALOG.items():
        facts = repo_facts(spec.hub_id)
        assert spec.pickle_weights == (not facts.has_safetensors) or "depth" in spec.kinds, key
        assert spec.fp16_variant == ("fp16" in facts.variants), key
        index = facts.model_index()
        if index and "scheduler" in index:
            assert spec.scheduler == index["scheduler"][1], key


def test_published_configs_are_recorded_verbatim_and_listed():
    """Every file said to be published exists; everything recorded parses."""
    for facts in REPOS.values():
        recorded = set(facts.recorded())
        assert set(facts.published) <= recorded, facts.hub_id
    assert all(json.loads(p.read_text()) is not None for p in HUB_REPOS_DIR.rglob("*.json"))


def test_the_fidelity_check_catches_a_changed_key():
    """The check above must fail on a twin that changes a non-size key (here the x4 upscaler's schedule)."""
    recorded = repo_facts("stabilityai/stable-diffusion-x4-upscaler").config("scheduler/scheduler_config.json")
    changed = {**recorded, "beta_start": 0.00085}
    assert mismatches(recorded, changed, "DDIMScheduler") == ["beta_start: 0.00085 != published 0.0001"]
    unet = repo_facts("stable-diffusion-v1-5/stable-diffusion-v1-5").config("unet/config.json")
    reordered = {**unet, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"]}
    assert mismatches(unet, reordered, "UNet2DConditionModel")
