"""Gradio UI: the page header, one tab per workflow, shared queue settings. Only this package imports gradio."""

from __future__ import annotations

import importlib
import weakref

import gradio as gr
from starlette.middleware import Middleware

from engine.core import Engine
from ui.components import RUN_CLASS, UNOPENED_UPLOAD, check_file_inputs
from ui.events import GPU_QUEUE
from ui.guards import LOOPBACK_HOSTS, LoopbackHostsOnly, StalledBodies, StreamsPerClient
from ui.outputs import served_dirs

GRADIO_CACHE_SWEEP = (600, 3600)  # (every N seconds, delete cached files older than M seconds)

CSS = """
.mode-banner { padding: 0.6em 1em; border-radius: 8px; }
.mode-tiny { background: #fff4d6; border: 2px solid #e0a800; color: #4a3800; }
.mode-hub { background: #e8f4ea; border: 1px solid #5a9a68; color: #1d3d24; }
.gpu-warning { background: #fde8e8; border: 2px solid #c0392b; color: #5a1010; }
.hint { font-size: 0.85em; opacity: 0.8; }
.studio-output .caption-label { white-space: normal; overflow: visible; text-overflow: clip; }
#sweep-cells .thumbnail-item .caption-label {
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: calc(100% - 8px); font-size: 0.75em;
  padding: 1px 6px;
}
@media (max-width: 640px) {
  .studio-lede { display: none; }
  .mode-banner { font-size: 0.8em; padding: 0.3em 0.6em; }
  .tab-container button { padding-left: 3px !important; padding-right: 3px !important; font-size: 0.8em; }
}
.studio-output .label-clear-button { display: none; }
"""

# Page behaviour the best-loved image apps have: Ctrl+Enter (Cmd+Enter) presses the open tab's run button;
# a result image dragged from a gallery onto an image input becomes its file (a browser drag of an <img>
# carries its URL, not a file, so it is fetched, from this server only, and handed to the upload input).
PAGE_JS = f"""
() => {{
  const visiblePanel = () => [...document.querySelectorAll("[role=tabpanel]")].find(p => p.offsetParent !== null);
  document.addEventListener("keydown", (event) => {{
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    const run = visiblePanel()?.querySelector("button.{RUN_CLASS}:not([disabled])");
    if (run) {{ event.preventDefault(); run.click(); }}
  }});
  const target = (event) => event.target.closest?.(".{UNOPENED_UPLOAD}");
  const draggedUrl = (event) => {{
    if (!event.dataTransfer || event.dataTransfer.files.length) return null;
    const text = event.dataTransfer.getData("text/uri-list") || event.dataTransfer.getData("text/plain");
    try {{
      const url = new URL(text.split("\\n")[0].trim(), location.href);
      return url.origin === location.origin ? url : null;
    }} catch (error) {{ return null; }}
  }};
  document.addEventListener("dragover", (event) => {{ if (target(event)) event.preventDefault(); }}, true);
  document.addEventListener("drop", async (event) => {{
    const area = target(event);
    const url = area && draggedUrl(event);
    if (!url) return;
    event.preventDefault();
    event.stopPropagation();
    area.querySelector("button[aria-label='Clear'], button[aria-label='Remove Image']")?.click();
    const blob = await (await fetch(url)).blob();
    const name = url.pathname.split("/").pop() || "image.png";
    const files = new DataTransfer();
    files.items.add(new File([blob], name, {{ type: blob.type || "image/png" }}));
    for (let tries = 0; tries < 50; tries++) {{
      const input = area.querySelector("input[type=file]");
      if (input) {{
        input.files = files.files;
        input.dispatchEvent(new Event("change", {{ bubbles: true }}));
        return;
      }}
      await new Promise((done) => setTimeout(done, 100));
    }}
  }}, true);
}}
"""


# The generating tabs after Basic, one line each: (tab label, module of ui/ whose build(engine, tools)
# returns a Finished). Basic comes first (Recipe fills its inputs); Recipe and History come last.
# each built app's MCP tools (its tabs' handlers), read by launch; the app itself takes no attribute of ours
_TOOLS: weakref.WeakKeyDictionary[gr.Blocks, list] = weakref.WeakKeyDictionary()

WORKFLOW_TABS = (
    ("Sweep", "sweep"),
    ("Chain", "chain"),
    ("Depth", "depth"),
    ("Inpaint", "inpaint"),
    ("Edit", "edit"),
)


def build_app(engine: Engine) -> gr.Blocks:
    """The whole page for an engine. Building it writes the example images; it loads no model."""
    from ui import basic, history, recipe

    settings = engine.settings
    tools: list = []  # each tab's handlers as MCP tools (ui.mcp), served with --mcp
    with gr.Blocks(title="Img2Img Studio") as app:
        stored = gr.BrowserState([], storage_key=history.STORAGE_KEY)
        gr.Markdown("# Img2Img Studio")
        gr.Markdown(  # on a phone the lede gives way to the tabs (CSS)
            "The diffusers image-to-image guide, runnable: start from an image, steer it with a prompt. "
            "**Ctrl+Enter** runs the open tab; drag a result onto an image input to start from it.",
            elem_classes=["studio-lede"],
        )
        gr.Markdown(engine.banner, elem_classes=["mode-banner", f"mode-{engine.mode}"])
        if engine.warning:
            gr.Markdown(engine.warning, elem_classes=["mode-banner", "gpu-warning"], elem_id="gpu-warning")
        with gr.Tabs() as tabs:
            finished = {}
            with gr.Tab("Basic", id="basic"):
                basic_inputs, finished["basic"] = basic.build(engine, tools)
            for label, name in WORKFLOW_TABS:
                with gr.Tab(label, id=name):
                    finished[name] = importlib.import_module(f"ui.{name}").build(engine, tools)
            with gr.Tab("Recipe", id="recipe"):
                recipe.build(engine, basic_inputs, tabs, tools)
            with gr.Tab("History", id="history"):
                history_gallery = history.build(engine, stored, basic_inputs, tabs)
        for tab, run in finished.items():
            history.wire(settings, stored, history_gallery, tab, run.event, run.gallery)
        history.restore(app, settings, stored, history_gallery)
    # api_open=False: no route runs an event outside the queue (Gradio leaves /run/ open off Spaces).
    app.queue(max_size=engine.settings.queue_size, default_concurrency_limit=1, api_open=False)
    set_gpu_concurrency(app, engine.gpu_concurrency)
    check_file_inputs(app)
    _TOOLS[app] = tools
    return app


def mcp_tools(app: gr.Blocks) -> list:
    """The MCP tools of an app build_app made: its tabs' handlers, as ui.mcp.ToolServer serves them."""
    return _TOOLS[app]


def set_gpu_concurrency(app: gr.Blocks, limit: int | None) -> None:
    """How many runs the GPU queue lets through at once: one on a single GPU; one per replica on Ray Serve;
    no limit on ZeroGPU, where every run gets a GPU of its own for its call and ZeroGPU's scheduler queues
    the calls (and charges each visitor's quota)."""
    for fn in app.fns.values():
        if fn.concurrency_id == GPU_QUEUE:
            fn.concurrency_limit = limit


def launch(app: gr.Blocks, engine: Engine, *, sweep_cache: bool = True, **overrides) -> None:
    """Start the server with the settings' host, port and upload limit; errors are shown to the user.

    `sweep_cache`: Gradio's cache (a copy of every file uploaded or shown) is swept every 10 minutes of
    files older than an hour, and emptied when the server stops. Its files are named by content and
    shared by every app of a process, so a process serving several apps (the tests) turns it off.
    """
    settings = engine.settings
    if sweep_cache:
        app.delete_cache = GRADIO_CACHE_SWEEP
    options = {
        "server_name": settings.host,
        "server_port": settings.port,
        "max_file_size": f"{settings.max_file_mb}mb",
        "css": CSS,
        "js": PAGE_JS,
        "show_error": True,
        # Gradio's own MCP layer stays off: ui.mcp serves the same handlers with the official SDK
        "mcp_server": False,
        "allowed_paths": served_dirs(settings),  # a data dir outside the working and temp folders
        # Gradio keeps a copy of every component's config per session (~0.4 MB here), and a raw API call is a
        # session of its own that no heartbeat ends: 10,000 by default would be ~4 GB
        "state_session_capacity": settings.max_sessions,
    }
    app_kwargs: dict = {"middleware": [Middleware(StalledBodies)]}  # see ui/guards.py
    if settings.host in LOOPBACK_HOSTS:  # every route, not only MCP's
        app_kwargs["middleware"].append(Middleware(LoopbackHostsOnly))
    if settings.mcp:
        from ui.mcp import MCP_PATH, ToolServer

        tools = ToolServer(settings, mcp_tools(app))
        app_kwargs.update(routes=tools.routes(), lifespan=tools.lifespan())
        app_kwargs["middleware"].append(Middleware(StreamsPerClient, prefix=MCP_PATH))
    options["app_kwargs"] = app_kwargs
    app.launch(**{**options, **overrides})
