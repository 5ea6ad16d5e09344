"""Files the app serves: result PNGs named by their id, download folders, pruned to their limits."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import uuid
from pathlib import Path

from PIL import Image

from engine.recipes.recipe import Recipe, save_png
from engine.workflows.registry import script_for

MAX_KEPT_OUTPUTS = 1000  # result PNGs kept on disk for the per-browser history; the oldest go first


MAX_KEPT_DOWNLOADS = 200  # download folders (script, recipe, init; sweep exports); the oldest go first


PRUNE_EVERY = 20  # writes between prunes: a sweep writes one PNG per cell, and pruning lists the folder


_writes = itertools.count(1)


def outputs_dir(settings) -> Path:
    """Where result PNGs are written: <data dir>/outputs, one `<32 hex>.png` per result."""
    return Path(settings.data_dir) / "outputs"


def downloads_dir(settings) -> Path:
    """Where download folders are written: <data dir>/downloads/<32 hex>/."""
    return Path(settings.data_dir) / "downloads"


def served_dirs(settings) -> list[str]:
    """The folders whose files the app hands to Gradio (outputs, downloads, examples), for allowed_paths:
    a data dir outside the working directory and the temp folder must work (a Space's /data)."""
    data = Path(settings.data_dir).resolve()
    return [str(data / "outputs"), str(data / "downloads"), str(data / "examples")]


def png_outputs(settings, items: list[tuple], ids: list[str] | None = None) -> list[tuple[str, str]]:
    """(image, recipe, caption) items as PNG files carrying their recipes (unless metadata is off).

    Returns (path, caption) pairs for a Gallery. Gradio keeps the files' bytes, so the recipe chunks
    reach the browser and the API as written. A result (an item with a recipe) is named by its id in
    engine.results (`ids`, one per item; "" or none: a random one), so the history and the Recipe tab
    can find its init image from the file name; inputs shown beside results (init, depth map) are not.
    """
    folder = outputs_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    outputs = []
    for index, (image, recipe, caption) in enumerate(items):
        known = ids[index] if ids is not None and index < len(ids) else ""
        name = (known or uuid.uuid4().hex) + (".png" if recipe is not None else "-input.png")
        path = save_png(image, recipe if settings.metadata else None, folder / name)
        outputs.append((str(path), caption))
        if next(_writes) % PRUNE_EVERY == 0:
            prune_disk(settings)
    return outputs


def download_folder(settings) -> Path:
    """A fresh folder for one result's downloads, under the data dir (bounded, see prune_disk)."""
    folder = downloads_dir(settings) / uuid.uuid4().hex
    folder.mkdir(parents=True)
    if next(_writes) % PRUNE_EVERY == 0:
        prune_disk(settings)
    return folder


def _size_of(path: Path) -> int:
    if path.is_dir():
        return sum(child.stat().st_size for child in path.iterdir() if child.is_file())
    return path.stat().st_size


def prune_disk(settings) -> None:
    """Delete the oldest result PNGs and download folders past their counts or the data dir's byte cap.

    Outputs keep at most MAX_KEPT_OUTPUTS files and downloads MAX_KEPT_DOWNLOADS folders; together
    they stay under STUDIO_MAX_OUTPUTS_MB (each kind gets half).
    """
    budget = settings.max_outputs_mb * 2**20 // 2
    for folder, limit in ((outputs_dir(settings), MAX_KEPT_OUTPUTS), (downloads_dir(settings), MAX_KEPT_DOWNLOADS)):
        if not folder.is_dir():
            continue
        entries = []
        for path in folder.iterdir():
            with contextlib.suppress(FileNotFoundError):  # another job's prune got there first
                entries.append((path.stat().st_mtime, path, _size_of(path)))
        entries.sort(key=lambda entry: entry[0], reverse=True)
        total = 0
        for kept, (_, path, size) in enumerate(entries):
            total += size
            if kept >= limit or total > budget:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


def recipe_files(
    settings, recipe: Recipe | None, init: Image.Image | None, inputs: dict[str, Image.Image] | None = None
) -> tuple[str, list[str] | None]:
    """The script text and its downloads for one result's recipe (`inputs`: more images it reads)."""
    if recipe is None:
        return "", None
    try:
        script = script_for(recipe)
    except ValueError as exc:
        return f"# {exc}", None
    folder = download_folder(settings)
    (folder / "recipe.py").write_text(script, encoding="utf-8")
    (folder / "recipe.json").write_text(recipe.to_json(), encoding="utf-8")
    paths = [str(folder / "recipe.py"), str(folder / "recipe.json")]
    if init is not None:
        init.save(folder / "init.png")
        paths.insert(1, str(folder / "init.png"))
    for name, image in (inputs or {}).items():
        image.save(folder / name)
        paths.append(str(folder / name))
    return script, paths


def seed_results(
    engine, result, inputs: dict[str, Image.Image] | None = None
) -> tuple[list, list[str], str, list | None]:
    """A one-call result with one image per seed (Basic, Inpaint), each image the safety checker let through kept
    in engine.results with its own recipe, its init and the `inputs` its script reads (a mask): the gallery's PNGs,
    their ids, and the first image's script and downloads."""
    per_image = [result.recipe.for_image(index) for index in result.shown]
    ids = [engine.results.put(recipe, result.init_image, inputs) for recipe in per_image]
    gallery = png_outputs(
        engine.settings,
        [(result.images[i], recipe, f"seed {recipe.seed}") for i, recipe in zip(result.shown, per_image, strict=True)],
        ids,
    )
    if not per_image:
        return gallery, ids, "", None
    script, downloads = recipe_files(engine.settings, per_image[0], result.init_image, inputs)
    return gallery, ids, script, downloads
