import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from engine.models.tiny import build_tokenizer, build_twin, main


def test_twins_are_deterministic_and_on_disk(tmp_path):
    first = build_twin("sd15", tmp_path / "a")
    second = build_twin("sd15", tmp_path / "b")
    assert (first / "model_index.json").is_file()
    a = load_file(first / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(second / "unet" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the real repo's files: safetensors and pickles, each with its fp16 variant
    assert {p.name for p in (first / "unet").iterdir()} == {
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.fp16.safetensors",
        "diffusion_pytorch_model.bin",
        "diffusion_pytorch_model.fp16.bin",
    }


def test_style_finetunes_are_distinct_models(twins, engine):
    engine.model_source(engine_spec("comic-diffusion"))
    engine.model_source(engine_spec("sd15"))
    a = load_file(twins / "sd15" / "unet" / "diffusion_pytorch_model.safetensors")
    # Comic-Diffusion publishes pickled .bin weights only, as its twin does
    b = torch.load(twins / "comic-diffusion" / "unet" / "diffusion_pytorch_model.bin", weights_only=True)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def engine_spec(key):
    from engine.models.catalog import get_spec

    return get_spec(key)


def test_twins_keep_the_real_latent_geometry(twins, engine):
    for key, scaling in [("sd15", 0.18215), ("sdxl-refiner", 0.13025)]:
        folder = build_twin(key, twins)
        vae = json.loads((folder / "vae" / "config.json").read_text())
        assert 2 ** (len(vae["block_out_channels"]) - 1) == 8
        assert (vae["latent_channels"], vae["scaling_factor"]) == (4, scaling)
    movq = json.loads((build_twin("kandinsky22", twins) / "movq" / "config.json").read_text())
    assert 2 ** (len(movq["block_out_channels"]) - 1) == 8 and movq["latent_channels"] == 4


def test_kandinsky_decoder_links_its_prior_like_the_hub(twins):
    folder = build_twin("kandinsky22", twins)
    card = (folder / "README.md").read_text()
    assert f"prior:\n- {twins.resolve() / 'kandinsky22-prior'}" in card
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "KandinskyV22Pipeline"


def test_local_tokenizer_tokenizes_anything_at_clip_length():
    tokenizer = build_tokenizer()
    ids = tokenizer("a cat wizard, 8k — ünïcødé 🐱", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77 and ids[0] == tokenizer.bos_token_id
    assert tokenizer.unk_token_id not in ids[1 : ids.index(tokenizer.eos_token_id)]


def test_cli_writes_one_folder_per_key(twins, capsys):
    from engine.models.catalog import CATALOG
    from engine.models.tiny import has_twin

    # the session's twin folder: twins already built are kept, so the 0.5 GB MiDaS twin is written once
    main(["--out", str(twins)])
    printed = [Path(line) for line in capsys.readouterr().out.splitlines()]
    assert [path.name for path in printed] == [key for key in CATALOG if has_twin(key)]  # one line per twin
    assert all(path.parent == twins.resolve() and any(path.iterdir()) for path in printed)
    written = {p.name for p in twins.iterdir() if (p / "model_index.json").is_file()}
    assert {"sd15", "sdxl-refiner", "kandinsky22", "kandinsky22-prior", "comic-diffusion"} <= written
