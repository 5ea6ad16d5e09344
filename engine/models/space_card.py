"""The Hugging Face Space card's model lists, from the catalog: `models:` and `preload_from_hub:`.

`models` links the Space to every checkpoint it can load (the Hub shows the Space on each model's page).
`preload_from_hub` has the Space download, when it is built, exactly the files hub mode loads on a GPU,
so the first visitor does not wait for a download inside the queue: per repository, its
`model_index.json`, per component the config and the one weight file diffusers or transformers reads
(the `fp16` variant where the repository has one, safetensors, or `.bin` where it has nothing else), and
the model card where it names a connected prior (Kandinsky 2.2's decoder). Never a repository's
single-file `.ckpt`/`.safetensors` checkpoints (several GB each, never read by the app), sample images
or other READMEs.

`python -m engine.models.space_card` prints the README's front-matter lines and its models-and-licences rows;
tests/test_space_card.py checks that the README carries them and that hub mode loads every model from
those files alone.
"""

from __future__ import annotations

from engine.models.catalog import CATALOG, get_spec, models_for
from engine.models.repos import RepoFacts, repo_facts

TOKENIZER_FILES = ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json")
T5_TOKENIZER_FILES = ("special_tokens_map.json", "spiece.model", "tokenizer.json", "tokenizer_config.json")
PRELOADED_ESTIMATORS = ("midas", "depth-anything-v2-small")  # the default and the small one; ZoeDepth and
# LeReS (2.3 GB together) download when first chosen
SUGGESTED_HARDWARE = "l4x1"  # 24 GB: every model resident in fp16 (the largest, the refiner at 1024: 15 GB)
TAGS = ("image-to-image", "diffusers", "stable-diffusion", "controlnet", "img2img")


def _variant(facts: RepoFacts, fp16: bool) -> str:
    """The weight files' infix: `.fp16` on a GPU where the repository publishes that variant."""
    return ".fp16" if fp16 and "fp16" in facts.variants else ""


def component_files(name: str, library: str, class_name: str, *, facts: RepoFacts, fp16: bool) -> list[str]:
    """The files `from_pretrained` reads for one component of a pipeline repository."""
    variant = _variant(facts, fp16)
    if class_name.endswith("Scheduler"):
        return [f"{name}/scheduler_config.json"]
    if class_name.endswith("Tokenizer"):
        return [f"{name}/{file}" for file in TOKENIZER_FILES]
    if class_name.endswith("TokenizerFast"):  # T5's: a SentencePiece model and its fast tokenizer
        return [f"{name}/{file}" for file in T5_TOKENIZER_FILES]
    if class_name.endswith(("ImageProcessor", "FeatureExtractor")):
        return [f"{name}/preprocessor_config.json"]
    if library == "diffusers":
        stem = "diffusion_pytorch_model"
    else:
        stem = "model" if facts.has_safetensors else "pytorch_model"
    suffix = "safetensors" if facts.has_safetensors else "bin"
    return [f"{name}/config.json", f"{name}/{stem}{variant}.{suffix}"]


def repo_files(key: str, *, fp16: bool = True, safety_checker: bool = True) -> list[str]:
    """What hub mode reads from a catalog entry's repository (on a GPU: `fp16`), sorted."""
    spec = get_spec(key)
    facts = repo_facts(spec.hub_id)
    if "depth" in spec.kinds:  # a depth estimator: its weight file and the configs recorded for it
        return sorted({*facts.recorded(), spec.weights})
    index = facts.model_index()
    if index is None:  # a single model: the ControlNet (.bin where the repository publishes no safetensors)
        suffix = "safetensors" if facts.has_safetensors else "bin"
        return ["config.json", f"diffusion_pytorch_model{_variant(facts, fp16)}.{suffix}"]
    files = ["model_index.json"]
    if spec.prior:  # diffusers finds a connected pipeline's prior in the model card's `prior:` metadata
        files.append("README.md")
    for name, value in index.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        if not safety_checker and name in ("safety_checker", "feature_extractor"):
            continue
        files += component_files(name, value[0], value[1], facts=facts, fp16=fp16)
    return sorted(files)


def preloaded_keys() -> list[str]:
    """The catalog entries a Space preloads: every image model of the guide, its ControlNet, and two estimators.
    Not the current families (SDXL base and its ControlNet, SD3.5, FLUX.1: 70 GB more, two of them gated): they
    download when first chosen, into the Space's persistent storage where it has one."""
    keys = [key for key, spec in CATALOG.items() if "depth" not in spec.kinds and spec.preloaded]
    return keys + [key for key in PRELOADED_ESTIMATORS if key in models_for("depth")]


def preload_from_hub(*, fp16: bool = True, safety_checker: bool = True) -> list[str]:
    """`preload_from_hub` entries: "repo_id file,file,..." per repository, files merged for a shared repo."""
    files: dict[str, set[str]] = {}
    for key in preloaded_keys():
        files.setdefault(get_spec(key).hub_id, set()).update(repo_files(key, fp16=fp16, safety_checker=safety_checker))
    return [f"{hub_id} {','.join(sorted(names))}" for hub_id, names in files.items()]


def linked_models() -> list[str]:
    """`models`: every Hub repository the catalog names, once, in catalog order."""
    return list(dict.fromkeys(spec.hub_id for spec in CATALOG.values()))


ROLES = {
    "img2img": "image-to-image",
    "text2img": "text-to-image (Chain)",
    "inpaint": "inpainting and outpainting (Inpaint)",
    "upscale": "upscaling (Chain)",
    "controlnet": "ControlNet conditioning (Depth)",
    "depth": "depth maps (Depth)",
    "prior": "image embeddings for Kandinsky 2.2",
    "edit": "instruction editing (Edit)",
}


def licence_rows() -> list[str]:
    """The README's models-and-licences table rows, one per catalog entry."""
    rows = []
    for key, spec in CATALOG.items():
        roles = ", ".join(ROLES[kind] for kind in spec.kinds)
        link = f"[{spec.hub_id}](https://huggingface.co/{spec.hub_id})"
        rows.append(f"| {spec.label} (`{key}`) | {roles} | {link} | {spec.license} |")
    return rows


def front_matter() -> str:
    """The README front matter's model lines (YAML), as the README carries them."""
    lines = [f"suggested_hardware: {SUGGESTED_HARDWARE}", "tags:"]
    lines += [f"  - {tag}" for tag in TAGS]
    lines.append("models:")
    lines += [f"  - {hub_id}" for hub_id in linked_models()]
    lines.append("preload_from_hub:")
    lines += [f"  - {entry}" for entry in preload_from_hub()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(front_matter())
    print()
    print("\n".join(licence_rows()))
