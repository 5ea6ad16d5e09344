"""What the catalog's Hugging Face repositories publish: configs, components, weight formats, sizes.

The configs under `engine/models/hub_repos/<org>__<name>/` are the repositories' own files. Those listed in a
repository's `published` were copied verbatim from the Hub's pages (each folder's `SOURCE.md` names the
page of every file). The others could not be read from any stored page and were reconstructed from what
users' re-saved copies of the repository, diffusers' conversion scripts and pipeline tests show;
`engine/models/hub_repos/README.md` gives the basis of each.

The tiny twins are built from these configs with only size fields shrunk (engine.models.tiny), and a test
checks every twin's configs against them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

HUB_REPOS_DIR = Path(__file__).resolve().parent / "hub_repos"

SAFETENSORS = "safetensors"
PICKLE = "bin"  # torch.save files: pytorch_model.bin, diffusion_pytorch_model.bin, .pt/.pth
UNREAD = "0" * 40  # the snapshot of a repository no stored page showed a commit of (the twin cache's refs/main)


@dataclass(frozen=True)
class RepoFacts:
    """One Hub repository as published.

    Args:
        hub_id: the repository id.
        commit: the snapshot the facts were read at (40 hex digits; the twin cache's `refs/main` points to it).
        formats: weight formats every model folder publishes.
        variants: weight variants published next to the full-precision files (`fp16`).
        published: config files copied verbatim from the Hub; other recorded configs are reconstructed.
        download_gb: what hub mode downloads for it, full precision / fp16 variant (GB, from the listings).
    """

    hub_id: str
    commit: str
    formats: tuple[str, ...]
    variants: tuple[str, ...] = ()
    published: tuple[str, ...] = ()
    download_gb: tuple[float, float | None] = (0.0, None)

    @property
    def folder(self) -> Path:
        return HUB_REPOS_DIR / self.hub_id.replace("/", "__")

    @property
    def has_safetensors(self) -> bool:
        return SAFETENSORS in self.formats

    def recorded(self) -> list[str]:
        """Paths of every recorded config of this repository, sorted."""
        return sorted(str(p.relative_to(self.folder)) for p in self.folder.rglob("*.json"))

    def config(self, path: str) -> dict | None:
        """A recorded config of this repository (a fresh copy), or None when none is recorded."""
        return _read_config(self.folder / path)

    def model_index(self) -> dict | None:
        return self.config("model_index.json")

    def required(self, path: str) -> dict:
        """A recorded config that must exist (a twin is built from it).

        Raises:
            ValueError: it was not recorded.
        """
        config = self.config(path)
        if config is None:
            raise ValueError(f"{self.hub_id} has no recorded {path}")
        return config


@cache
def _read_json(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def _read_config(path: Path) -> dict | None:
    text = _read_json(path)
    return None if text is None else json.loads(text)


_SD15_PUBLISHED = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/special_tokens_map.json",
    "feature_extractor/preprocessor_config.json",
)

REPOS: dict[str, RepoFacts] = {
    facts.hub_id: facts
    for facts in (
        RepoFacts(
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            # the full hash of main ("Initial commit" f03de32) was not visible: its prefix, padded with zeros
            commit="f03de32" + "0" * 33,
            formats=(SAFETENSORS, PICKLE),
            variants=("fp16",),
            published=_SD15_PUBLISHED,
            download_gb=(5.5, 2.75),
        ),
        # SD 1.5's dedicated inpainting checkpoint (9-channel UNet): no stored page showed its files, so every
        # config is reconstructed (SOURCE.md: SD 1.5's published files, in_channels 9, DDIM, 0.6.0.dev0, from
        # public copies); the snapshot is the one users' cache paths show. Its formats, from users' logs at that
        # snapshot: diffusers found no diffusion_pytorch_model.safetensors in unet/ or vae/ and fell back to the
        # .bin files (a 3.44 GB unet .bin in a cache listing; 16 files, 5.48 GB in all). So not every folder has
        # safetensors: .bin as recorded, read weights-only, safetensors where a folder has them; no fp16 variant
        # was seen, none is asked for.
        RepoFacts(
            "stable-diffusion-v1-5/stable-diffusion-inpainting",
            commit="8a4288a76071f7280aedbdb3253bdb9e9d5d84bb",
            formats=(PICKLE,),
            download_gb=(5.5, None),
        ),
        RepoFacts(
            "stabilityai/stable-diffusion-xl-refiner-1.0",
            commit="5d4cfe854c9a9a87939ff3653551c2b3c99a4356",
            formats=(SAFETENSORS,),
            variants=("fp16",),
            published=("model_index.json", "text_encoder_2/config.json"),
            download_gb=(12.2, 6.1),
        ),
        RepoFacts(
            "kandinsky-community/kandinsky-2-2-decoder",
            commit="d44c9d68c2f00918a802d8ccefc6d252a51b6b91",
            formats=(SAFETENSORS, PICKLE),
            download_gb=(5.3, None),
        ),
        RepoFacts(
            "kandinsky-community/kandinsky-2-2-prior",
            commit="40cd65123bb828e5641b118b77b38be1aee69891",
            formats=(SAFETENSORS, PICKLE),
            published=("prior/config.json", "scheduler/scheduler_config.json"),
            download_gb=(10.6, None),
        ),
        # the style fine-tunes: diffusers conversions of SD 1.x checkpoints, pickled .bin weights only
        *(
            RepoFacts(hub_id, commit=commit, formats=(PICKLE,), download_gb=(5.5, None))
            for hub_id, commit in (
                ("ogkalu/Comic-Diffusion", "27cdfe1dc9b4fc818a31ebd5a2a1c3a5ce2a5677"),
                ("kohbanye/pixel-art-style", "6231a110c002a2dbcb845fcc0b69f075aa2cd381"),
                ("nitrosocke/elden-ring-diffusion", "fd09bb6c67da9cd9402f12808aef8c7163f5af27"),
            )
        ),
        RepoFacts(
            "stabilityai/sd-x2-latent-upscaler",
            commit="f27ea459c891bad50945871ef58226c2123c2e5d",
            formats=(PICKLE,),
            published=("model_index.json", "scheduler/scheduler_config.json"),
            download_gb=(2.3, None),
        ),
        RepoFacts(
            "stabilityai/stable-diffusion-x4-upscaler",
            commit="91ecd5236872fb9f0f40e9977b166b9d915b8440",
            formats=(SAFETENSORS, PICKLE),
            published=(
                "model_index.json",
                "scheduler/scheduler_config.json",
                "low_res_scheduler/scheduler_config.json",
                "vae/config.json",
            ),
            download_gb=(3.5, None),
        ),
        RepoFacts(
            "lllyasviel/control_v11f1p_sd15_depth",
            commit="539f99181d33db39cf1af2e517cd8056785f0a87",
            formats=(SAFETENSORS, PICKLE),
            variants=("fp16",),
            download_gb=(1.45, 0.72),
        ),
        # Read from its Hub tree page (main: 7 commits, head 115a470 "Update README.md"; the full hash was not
        # visible: its prefix, padded with zeros): .bin and .fp16.bin, .fp16.safetensors, config.json of 996 B. The
        # config's text was not on any stored page: reconstructed as the depth ControlNet's (SOURCE.md).
        RepoFacts(
            "lllyasviel/control_v11p_sd15_canny",
            commit="115a470" + "0" * 33,
            formats=(SAFETENSORS, PICKLE),
            variants=("fp16",),
            download_gb=(1.45, 0.72),
        ),
        # Read from its Hub tree page (main: 6 commits, head 3564ec7 "Update README.md"; the full hash was not
        # visible: its prefix, padded with zeros): .bin, .fp16.bin and (tagged Safetensors) .fp16.safetensors, a
        # config.json of 999 B. The config's text was on no stored page: reconstructed as the depth ControlNet's.
        RepoFacts(
            "lllyasviel/control_v11p_sd15_scribble",
            commit="3564ec7" + "0" * 33,
            formats=(SAFETENSORS, PICKLE),
            variants=("fp16",),
            download_gb=(1.45, 0.72),
        ),
        # Read from the tree page of its refs/pr/4 (4 commits: main's 3 and the PR's 7e26078 "Adding `safetensors`
        # variant of this model"): main publishes diffusion_pytorch_model.bin (1.45 GB) alone, no fp16 variant, and
        # a config.json of 955 B. main's head was on no stored page (UNREAD); the config is reconstructed as the
        # depth ControlNet's (SOURCE.md).
        RepoFacts(
            "lllyasviel/control_v11f1e_sd15_tile",
            commit=UNREAD,
            formats=(PICKLE,),
            download_gb=(1.45, None),
        ),
        # The current families: no stored page showed their files, so their configs were reconstructed
        # (engine/models/hub_repos/README.md), their snapshot is unread and their sizes are parameter counts times
        # bytes per parameter; the large components are published in shards, which the twins write whole.
        RepoFacts(
            "stabilityai/stable-diffusion-xl-base-1.0",
            commit=UNREAD,
            formats=(SAFETENSORS,),
            variants=("fp16",),
            download_gb=(13.9, 6.9),
        ),
        RepoFacts(
            "diffusers/controlnet-depth-sdxl-1.0",
            commit=UNREAD,
            formats=(SAFETENSORS,),
            variants=("fp16",),
            download_gb=(5.0, 2.5),
        ),
        RepoFacts(
            "stabilityai/stable-diffusion-3.5-medium",
            commit=UNREAD,
            formats=(SAFETENSORS,),
            download_gb=(16.3, None),
        ),
        RepoFacts(
            "black-forest-labs/FLUX.1-schnell",
            commit=UNREAD,
            formats=(SAFETENSORS,),
            download_gb=(33.7, None),
        ),
        RepoFacts(
            "black-forest-labs/FLUX.1-dev",
            commit=UNREAD,
            formats=(SAFETENSORS,),
            download_gb=(33.7, None),
        ),
        # No page showed its files: every config is FLUX.1 [dev]'s with FluxKontextPipeline as the class (SOURCE.md)
        RepoFacts(
            "black-forest-labs/FLUX.1-Kontext-dev",
            commit=UNREAD,
            formats=(SAFETENSORS,),
            download_gb=(33.7, None),  # FLUX.1 [dev]'s components: a 12B transformer, T5-XXL, CLIP ViT-L, the VAE
        ),
        # Its configs are reconstructed (SOURCE.md): no stored page showed one whole. The snapshot is the one a
        # user's re-saved VAE config names (`_name_or_path` .../models--black-forest-labs--FLUX.2-klein-4B/snapshots/
        # e7b7dc2...), pinned by several public ports too; whether it is main's head was not visible.
        RepoFacts(
            "black-forest-labs/FLUX.2-klein-4B",
            commit="e7b7dc27f91deacad38e78976d1f2b499d76a294",
            formats=(SAFETENSORS,),
            # the diffusers folders: text_encoder/ 8.05 GB (its tree page); transformer/ ~7.75 GB, the size of the
            # repository's single-file transformer (flux-2-klein-4b.safetensors, 4B parameters in bf16); vae/ ~0.17 GB
            # (84M parameters in bf16). An estimate from those: the transformer folder's own listing was not seen
            download_gb=(16.0, None),
        ),
        # Read from its Hub tree page (main: 3 commits, head 6f3ccc0 "Update README.md", 57.7 GB in all); the full hash
        # is the snapshot users' cache paths show (models--Qwen--Qwen-Image-Edit-2511/snapshots/6f3ccc0b...). No page
        # showed a config's text: all are reconstructed (SOURCE.md). The size is the tree page's 57.7 GB (a 20B
        # transformer in bf16, 40.9 GB; Qwen2.5-VL-7B, 16.6 GB; the VAE); no fp16 variant.
        RepoFacts(
            "Qwen/Qwen-Image-Edit-2511",
            commit="6f3ccc0b56e431dc6a0c2b2039706d7d26f22cb9",
            formats=(SAFETENSORS,),
            download_gb=(57.7, None),
        ),
        RepoFacts(
            "depth-anything/Depth-Anything-V2-Small-hf",
            commit="5426e4f0f36572d16453bbda7a8389317b1bef99",
            formats=(SAFETENSORS,),
            published=("config.json", "preprocessor_config.json"),
            download_gb=(0.1, None),
        ),
        RepoFacts(
            "lllyasviel/Annotators",
            commit="83cbccd4a3be9fa9f2fd9fe96f30288c9762e65b",
            formats=(PICKLE,),
            download_gb=(0.49, None),  # MiDaS; ZoeDepth adds 1.44 GB, LeReS 0.85 GB
        ),
    )
}


def repo_facts(hub_id: str) -> RepoFacts:
    """The recorded facts of a catalog repository.

    Raises:
        ValueError: a repository the catalog does not name.
    """
    facts = REPOS.get(hub_id)
    if facts is None:
        raise ValueError(f"no recorded facts for the Hub repository {hub_id!r}")
    return facts
