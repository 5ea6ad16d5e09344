"""History: the last results of this browser, kept across page reloads, each with its recipe.

The browser keeps only ids (gr.BrowserState, in its local storage); the PNGs stay in the server's
outputs folder and carry their recipes. What a browser sends back is checked: an id is 32 hex
digits naming a PNG this server wrote, so a crafted local storage cannot name any other file.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from engine.recipes.results import is_result_id
from engine.workflows.registry import read_recipe, reads_init
from ui.components import GenerationInputs, built, downloads, result_gallery
from ui.events import as_text
from ui.outputs import outputs_dir, recipe_files
from ui.recipe import basic_targets, send_to_basic

HISTORY_SIZE = 24
STORAGE_KEY = "img2img-studio-history"


def _entry_path(settings, entry: object) -> Path | None:
    """The PNG an entry names, or None for anything malformed or gone."""
    if not isinstance(entry, dict) or not is_result_id(entry.get("id")):
        return None
    path = outputs_dir(settings) / f"{entry['id']}.png"
    return path if path.is_file() else None


def _clean(settings, history: object) -> list[dict]:
    """The entries of a browser's history that name results this server still has."""
    entries = history if isinstance(history, list) else []
    kept = []
    for entry in entries[:HISTORY_SIZE]:
        if _entry_path(settings, entry) is not None:
            caption = entry.get("caption") if isinstance(entry.get("caption"), str) else ""
            tab = entry.get("tab") if isinstance(entry.get("tab"), str) else ""
            kept.append({"id": entry["id"], "tab": tab[:20], "caption": caption[:200]})
    return kept


def gallery_items(settings, history: list[dict]) -> list[tuple[str, str]]:
    return [(str(_entry_path(settings, e)), f"{e['tab']}: {e['caption']}") for e in history]


def remember(settings, tab: str, history: object, shown: list | None) -> tuple[list[dict], list]:
    """Add the results a tab just showed (a Gallery's value) to the front of the history."""
    history = _clean(settings, history)
    new = []
    for item in shown or []:
        path, caption = (item[0], item[1]) if isinstance(item, list | tuple) else (item, "")
        name = Path(str(path)).name  # Gradio's copy keeps the name this server gave the file
        entry = {"id": name.removesuffix(".png"), "tab": tab, "caption": str(caption or "")[:200]}
        if _entry_path(settings, entry) is not None:
            new.append(entry)
    known = {e["id"] for e in new}
    history = (new + [e for e in history if e["id"] not in known])[:HISTORY_SIZE]
    return history, gallery_items(settings, history)


def build(engine, history: gr.BrowserState, basic: GenerationInputs, tabs: gr.Tabs) -> gr.Gallery:
    """The History tab: this browser's last results; select one for its script and downloads, send its recipe
    to Basic or use it as Basic's init image (`basic`: the Basic tab's inputs)."""
    settings = engine.settings
    gr.Markdown(
        f"The last {HISTORY_SIZE} results made in this browser, kept across reloads (the browser stores "
        "their ids; the images and their recipes stay on the server). Select one to see its script, to run it "
        "again from Basic, or to start a new run from it."
    )
    with gr.Row():
        with gr.Column(scale=2):
            gallery = result_gallery("History", columns=6, height=420, elem_id="history-gallery")
            clear = gr.Button("Clear history", variant="secondary")
        with gr.Column(scale=1):
            summary = gr.Markdown(elem_id="history-recipe")
            with gr.Row():
                send = gr.Button("Send to Basic", interactive=False)  # its recipe, with its init, into Basic
                reuse = gr.Button("Use as input", interactive=False)  # the image itself as Basic's init
            code = gr.Code(language="python", label="Script", interactive=False)
            files = downloads("Downloads: script, init image, recipe JSON")
    chosen = gr.State(None)  # the selected result's PNG on this server

    def show(entries, event: gr.SelectData):
        nothing = "", "", None, None, gr.Button(interactive=False), gr.Button(interactive=False)
        entries = _clean(settings, entries)
        if event.index is None or event.index >= len(entries):
            return nothing
        path = _entry_path(settings, entries[event.index])
        if path is None:  # _clean keeps only entries whose PNG exists; it went since
            return nothing
        on = gr.Button(interactive=True)
        try:
            recipe = read_recipe(path)
        except ValueError as exc:  # metadata was off when it was made
            return as_text(exc), "", None, str(path), gr.Button(interactive=False), on
        stored = engine.results.get(entries[event.index]["id"])  # the PNG is named by its id there
        init, inputs = (stored.init, stored.inputs) if stored is not None else (None, None)
        script, files_out = recipe_files(settings, recipe, init, inputs)
        line = f"**{as_text(recipe.workflow)}** · {as_text(recipe.model)} · seed {recipe.seed}"
        if stored is None and reads_init(recipe):
            line += (
                " · the server no longer holds its init image (restarted, or the result is old): "
                "the script reads your own `init.png`"
            )
        return line, script, files_out, str(path), on, on

    def use_as_input(path: str | None):
        if not path:
            return gr.skip(), gr.skip(), gr.skip()
        note = (
            f"Init image: a result from the History tab ({Path(path).name}); the prompt and settings are as they were."
        )
        return path, note, gr.Tabs(selected="basic")

    outputs = [summary, code, files, chosen, send, reuse]
    gallery.select(show, inputs=history, outputs=outputs, queue=False, api_visibility="private")
    send.click(
        lambda path: send_to_basic(engine, path, "", origin="the History tab"),
        inputs=chosen,
        outputs=basic_targets(basic, tabs),
        api_visibility="private",
    )
    reuse.click(
        use_as_input,
        inputs=chosen,
        outputs=[*built(basic.image, basic.summary), tabs],
        queue=False,
        api_visibility="private",
    )
    clear.click(lambda: ([], []), outputs=[history, gallery], queue=False, api_visibility="private")
    return gallery


def wire(settings, history: gr.BrowserState, history_gallery: gr.Gallery, tab: str, done, shown: gr.Gallery):
    """After a tab's run succeeds, remember what its gallery shows (a failed run leaves it as it was)."""
    done.success(
        lambda state, value: remember(settings, tab, state, value),
        inputs=[history, shown],
        outputs=[history, history_gallery],
        queue=False,
        api_visibility="private",
        show_progress="hidden",
    )


def restore(app: gr.Blocks, settings, history: gr.BrowserState, history_gallery: gr.Gallery) -> None:
    """On page load: the history gallery from the browser's stored ids."""

    def load(state):
        kept = _clean(settings, state)
        return kept, gallery_items(settings, kept)

    app.load(load, inputs=history, outputs=[history, history_gallery], queue=False, api_visibility="private")
