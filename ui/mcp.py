"""The app's endpoints as Model Context Protocol tools, served with the official `mcp` SDK at /gradio_api/mcp/.

Each tool is a tab's own handler (the function behind its Gradio endpoint), so validation, limits, the
engine call and the PNGs with recipes are the same code as the web page's. What this module adds is
what an MCP client needs and Gradio's generic MCP layer does not give (tested with the official
client): an input schema read from the handler's signature and docstring (integers typed `integer`,
optional parameters not required, every parameter's whole description), images taken as a `data:` URI
or an http(s) URL, and results returned as named values: every image both inline (the PNG's own bytes,
recipe chunks included) and as a URL of the file the server keeps, text as text.

A tool call runs like a queued event: one job at a time, at most `STUDIO_QUEUE_SIZE` waiting (then
"queue is full"), progress reported to clients that ask for it, and a cancelled call stops the job at
its next denoising step.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import html
import inspect
import re
import types
import typing
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import gradio as gr
from PIL import Image

from engine.pipelines.calls import CancelToken
from ui.events import cancellable
from ui.guards import LOOPBACK_HOSTS
from ui.outputs import outputs_dir, png_outputs, served_dirs
from ui.tools import SKIPPED_PARAMETERS, ToolSpec

MCP_PATH = "/gradio_api/mcp"
FILE_ROUTE = "/gradio_api/file="
MAX_INLINE_IMAGES = 8  # images sent inline per call; the rest (a sweep's cells) as URLs only
IMAGE_PARAMETER_NOTE = (
    " Pass an image as a data: URI (data:image/png;base64,...) or an http(s) URL; a URL this server "
    "returned (its /gradio_api/file= links) is read from its own disk."
)


def parse_docstring(fn: Callable) -> tuple[str, dict[str, str]]:
    """The description (text before "Args:") and each parameter's whole description (continuation
    lines included) of a Google-style docstring."""
    text = inspect.getdoc(fn) or ""
    head, _, args = text.partition("\nArgs:\n")
    description = " ".join(line.strip() for line in head.splitlines() if line.strip())
    params: dict[str, list[str]] = {}
    current = None
    for line in args.splitlines():
        match = re.match(r"^    (\w+): (.*)$", line)
        if match:
            current = match.group(1)
            params[current] = [match.group(2).strip()]
        elif current and line.strip():
            params[current].append(line.strip())
    return description, {name: " ".join(parts) for name, parts in params.items()}


def _json_type(hint: Any) -> dict:
    """JSON schema type of a parameter's annotation (bool before int: bool is an int)."""
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    options = typing.get_args(hint) if union else (hint,)
    kinds = [option for option in options if option is not type(None)]
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    found = [names[kind] for kind in kinds if kind in names]
    if not found:
        raise TypeError(f"no JSON type for {hint!r}")
    if type(None) in options:
        found.append("null")
    return {"type": found[0] if len(found) == 1 else found}


def input_schema(tool: ToolSpec) -> dict:
    """The tool's JSON schema, from the handler's signature (types, defaults) and docstring (descriptions)."""
    _, docs = parse_docstring(tool.fn)
    properties, required = {}, []
    for name, parameter in inspect.signature(tool.fn, eval_str=True).parameters.items():
        if name in SKIPPED_PARAMETERS:
            continue
        prop = _json_type(parameter.annotation)
        if name in tool.images:
            prop = {"type": prop["type"], "format": "uri"}
        description = docs.get(name)
        if not description:
            raise ValueError(f"tool {tool.name}: parameter {name} has no description in the docstring")
        if name in tool.images:
            description += IMAGE_PARAMETER_NOTE
        prop["description"] = description
        if name in tool.choices:
            prop["enum"] = list(tool.choices[name])
        if parameter.default is inspect.Parameter.empty:
            required.append(name)
        else:
            prop["default"] = parameter.default
        properties[name] = prop
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def tool_description(tool: ToolSpec) -> str:
    description, _ = parse_docstring(tool.fn)
    named = [name for name in tool.outputs if name]
    return f"{description} Result values: {', '.join(named)}."


MCP_SESSION_IDLE_S = 600  # an MCP session with nothing in flight for this long is ended
MCP_SESSIONS = 500  # MCP sessions open at once


LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}


def _same_host(parts) -> str:
    """A URL's host and port, with the loopback names made one: a client may spell this server localhost."""
    host = (parts.hostname or "").lower()
    return f"{'127.0.0.1' if host in LOOPBACK_NAMES else host}:{parts.port}"


def gradio_cache_dir() -> str:
    """The folder Gradio keeps the files it serves in (GRADIO_TEMP_DIR, or the system's temp folder)."""
    from gradio.utils import get_upload_folder

    return get_upload_folder()


def request_body_limit(max_file_mb: int) -> int:
    """The largest MCP request body: two images at the upload limit as base64, and room for the rest.

    The SDK's own default (4 MiB) refused a 3 MB image with a bare HTTP 413 while the app takes 25 MB uploads;
    with this one, an image over the limit reaches the tool's check and its message names the limit.
    """
    return 2 * (max_file_mb * 2**20 * 4 // 3 + 4) + 2**20


class ToolFailed(Exception):
    """A call the tool refuses (bad input, a busy queue): its message is for the client."""


class ToolServer:
    """The MCP server for an engine's tools, mounted into Gradio's FastAPI app by `routes()`/`lifespan()`."""

    def __init__(self, settings, tools: list[ToolSpec]):
        from mcp import types as mcp_types
        from mcp.server.lowlevel import Server
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
        from mcp.server.transport_security import TransportSecuritySettings

        self.settings = settings
        self.tools = {tool.name: tool for tool in tools}
        self.schemas = {name: input_schema(tool) for name, tool in self.tools.items()}  # once, not per call
        self.types = mcp_types
        self.server = Server("Img2Img Studio")
        self.server.list_tools()(self._list_tools)
        # the handlers check every value with messages naming the parameter and the value; the SDK's
        # schema check would answer "'../../etc' is not one of [...]" without the parameter's name
        self.server.call_tool(validate_input=False)(self._call_tool)
        self._running = asyncio.Lock()  # created unbound; the first acquire binds it to the server's loop
        self._waiting = 0
        local = settings.host in LOOPBACK_HOSTS
        security = TransportSecuritySettings(  # a web page must not reach a server on this machine (DNS rebinding)
            enable_dns_rebinding_protection=local,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"] if local else [],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"] if local else [],
        )
        # Sessions, not stateless calls: a client's notifications/cancelled names a request id of its session,
        # which the SDK then cancels (stateless, it reached a fresh session that ran nothing, and the job held
        # the queue). Bounded: idle sessions end after MCP_SESSION_IDLE_S, at most MCP_SESSIONS at once (each
        # holds at most one open GET stream), then 503 until one ends.
        self.manager = StreamableHTTPSessionManager(
            app=self.server,
            stateless=False,
            security_settings=security,
            max_request_body_size=request_body_limit(settings.max_file_mb),
            session_idle_timeout=MCP_SESSION_IDLE_S,
            max_sessions=MCP_SESSIONS,
        )

    # ---- listing -------------------------------------------------------------------------------
    def describe(self) -> list[dict]:
        """name, description and inputSchema of every tool (also served at /gradio_api/mcp/schema)."""
        return [
            {"name": name, "description": tool_description(tool), "inputSchema": self.schemas[name]}
            for name, tool in self.tools.items()
        ]

    async def _list_tools(self):
        return [self.types.Tool(**described) for described in self.describe()]

    # ---- calling -------------------------------------------------------------------------------
    async def _call_tool(self, name: str, arguments: dict):
        tool = self.tools.get(name)
        if tool is None:
            return self._error(f"Unknown tool {name!r}; the tools are {', '.join(self.tools)}.")
        context = self.server.request_context
        try:
            self._check_names(tool, arguments)
            root = self._root_url(context.request)
            with self._uploads() as uploads:
                kwargs = {}
                for key, value in arguments.items():
                    kwargs[key] = await self._image_path(key, value, root, uploads) if key in tool.images else value
                value = await self._run(tool, kwargs, context)
        except ToolFailed as exc:
            return self._error(str(exc))
        except gr.Error as exc:  # the handlers' checked errors; their text was escaped for the page
            return self._error(f"{exc.title}: {html.unescape(str(exc.message))}")
        return self._result(tool, value, root)

    def _check_names(self, tool: ToolSpec, arguments: dict) -> None:
        schema = self.schemas[tool.name]
        known = schema["properties"]
        unknown = [name for name in arguments if name not in known]
        if unknown:
            raise ToolFailed(f"{tool.name} has no parameter {unknown[0]!r}; its parameters are {', '.join(known)}")
        missing = [name for name in schema.get("required", []) if name not in arguments]
        if missing:
            raise ToolFailed(f"{missing[0]} is required")

    async def _run(self, tool: ToolSpec, kwargs: dict, context) -> Any:
        """Run the handler as a queued job would: one at a time, a bounded wait, progress and cancel."""
        if self._waiting >= self.settings.queue_size:
            raise ToolFailed(f"The queue is full ({self.settings.queue_size} jobs waiting); try again later.")
        parameters = inspect.signature(tool.fn).parameters
        if "cancel" in parameters:
            kwargs["cancel"] = CancelToken()
        if "progress" in parameters:
            kwargs["progress"] = self._progress(context)
        self._waiting += 1
        try:
            await self._running.acquire()
        finally:
            self._waiting -= 1
        try:
            job = cancellable(tool.fn)(**kwargs)
            if inspect.isasyncgen(job):
                values: list[Any] = [None]
                async for value in job:  # a streaming handler: its last value is the result
                    values[-1] = value
                return values[-1]
            return await job
        finally:
            self._running.release()

    def _progress(self, context) -> Callable:
        """A progress(done_total, desc=, unit=) callable, as the handlers call gr.Progress, that sends MCP
        progress notifications when the client asked for them (from the worker thread)."""
        token = context.meta.progressToken if context.meta is not None else None
        loop = asyncio.get_running_loop()
        session, request_id = context.session, context.request_id

        def report(value, desc: str | None = None, unit: str | None = None, **_) -> None:
            if token is None or not isinstance(value, tuple):
                return
            done, total = value
            notification = session.send_progress_notification(
                progress_token=token,
                progress=float(done),
                total=float(total),
                message=desc,
                related_request_id=str(request_id),
            )
            asyncio.run_coroutine_threadsafe(notification, loop)

        return report

    # ---- images in -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _uploads(self):
        """A list of files written for this call, deleted when it ends."""
        written: list[Path] = []
        try:
            yield written
        finally:
            for path in written:
                path.unlink(missing_ok=True)

    async def _image_path(self, name: str, value: Any, root: str, uploads: list[Path]) -> str | None:
        """The local file for an image argument: a data: URI decoded, this server's own file URL
        resolved, another http(s) URL fetched (public addresses only, Gradio's SSRF guard)."""
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ToolFailed(f"{name} must be a data: URI or an http(s) URL, got {type(value).__name__}")
        limit = self.settings.max_file_mb * 2**20
        if value.startswith("data:"):
            header, _, payload = value.partition(",")
            if ";base64" not in header:
                raise ToolFailed(f"{name} must be a base64 data: URI (data:image/png;base64,...)")
            if len(payload) > limit * 4 // 3 + 4:
                raise ToolFailed(f"{name} is larger than the upload limit of {self.settings.max_file_mb} MB")
            try:
                data = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise ToolFailed(f"{name} is not valid base64 after 'data:...,'") from None
            return self._write_upload(data, uploads)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            shown = value if len(value) <= 80 else value[:80] + "…"
            raise ToolFailed(f"{name} must be a data: URI or an http(s) URL, got {shown!r}")
        own = urlsplit(root)
        if (parts.scheme, _same_host(parts)) == (own.scheme, _same_host(own)):
            return self._own_file(name, value, own.path)
        from gradio.processing_utils import async_ssrf_protected_get

        try:
            response = await async_ssrf_protected_get(value)
        except Exception as exc:  # safehttpx refuses private addresses; DNS and connection errors
            raise ToolFailed(f"{name} could not be fetched from {parts.netloc}: {str(exc)[:200]}") from None
        if response.status_code != 200:
            raise ToolFailed(f"{name} could not be fetched: {parts.netloc} answered {response.status_code}")
        if len(response.content) > limit:
            raise ToolFailed(f"{name} is larger than the upload limit of {self.settings.max_file_mb} MB")
        return self._write_upload(response.content, uploads)

    def _own_file(self, name: str, url: str, root_path: str) -> str:
        """A file URL this server handed out, as its path; only files of the folders it serves."""
        path = urlsplit(url).path
        prefix = root_path.rstrip("/") + FILE_ROUTE
        if not path.startswith(prefix):
            raise ToolFailed(f"{name} URL on this server must be a {FILE_ROUTE} link it returned")
        # the app's folders, and Gradio's cache, from which the Gradio API's results are served
        allowed = [Path(folder).resolve() for folder in (*served_dirs(self.settings), gradio_cache_dir())]
        try:  # a NUL byte or a name over the file system's limit: no file either, not an OS error's words
            local = Path(unquote(path[len(prefix) :])).resolve()
            served = local.is_file() and any(local.is_relative_to(folder) for folder in allowed)
        except (OSError, ValueError):
            served = False
        if not served:
            raise ToolFailed(f"{name} URL names no file this server returned")
        return str(local)

    def _write_upload(self, data: bytes, uploads: list[Path]) -> str:
        folder = Path(self.settings.data_dir) / "mcp-uploads"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / uuid.uuid4().hex
        path.write_bytes(data)
        uploads.append(path)
        return str(path)

    # ---- results out ---------------------------------------------------------------------------
    def _root_url(self, request) -> str:
        from gradio.route_utils import get_root_url

        return get_root_url(request=request, route_path=MCP_PATH + "/", root_path=None)

    def _file_url(self, path: str, root: str) -> str:
        return f"{root}{FILE_ROUTE}{Path(path).resolve()}"

    def _result(self, tool: ToolSpec, value: Any, root: str):
        values = value if isinstance(value, tuple) else (value,)
        content: list[Any] = []
        structured: dict[str, Any] = {}
        inline = [MAX_INLINE_IMAGES]
        for name, item in zip(tool.outputs, values, strict=False):
            if name is None:
                continue
            shown = self._value(name, item, root, content, inline)
            if shown is not None:
                structured[name] = shown
        return self.types.CallToolResult(content=content, structuredContent=structured)

    def _value(self, name: str, item: Any, root: str, content: list, inline: list[int]) -> Any:
        """One named return value into content blocks; returns its JSON form (None: nothing to send)."""
        if isinstance(item, Image.Image):
            path, _ = png_outputs(self.settings, [(item, None, name)])[0]
            return self._image(name, path, None, root, content, inline)
        if isinstance(item, list) and all(isinstance(entry, tuple | list) and len(entry) == 2 for entry in item):
            return [self._image(name, path, caption, root, content, inline) for path, caption in item]
        if isinstance(item, list) and all(isinstance(entry, str) for entry in item):
            urls = [self._file_url(path, root) for path in item]
            content.append(self.types.TextContent(type="text", text=f"{name}:\n" + "\n".join(urls)))
            return urls
        if isinstance(item, str) and self._is_served_png(item):
            return self._image(name, item, None, root, content, inline)
        if isinstance(item, str):
            if item:
                content.append(self.types.TextContent(type="text", text=f"{name}:\n{item}"))
            return item
        if isinstance(item, int | float | bool):
            return item
        return None  # gr.skip() and other page-only updates

    def _is_served_png(self, text: str) -> bool:
        """A PNG the app wrote to its outputs folder (a relative data dir gives relative paths: resolved here)."""
        path = Path(text)
        try:
            return (
                path.suffix == ".png"
                and path.resolve().is_relative_to(Path(outputs_dir(self.settings)).resolve())
                and path.is_file()
            )
        except (OSError, ValueError):
            return False

    def _image(self, name: str, path: str, caption: str | None, root: str, content: list, inline: list[int]) -> dict:
        url = self._file_url(path, root)
        label = f"{name}" + (f" ({caption})" if caption else "")
        if inline[0] > 0:
            inline[0] -= 1
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            content.append(self.types.ImageContent(type="image", data=data, mimeType="image/png"))
        content.append(self.types.TextContent(type="text", text=f"{label}: {url}"))
        return {"url": url, "caption": caption} if caption else {"url": url}

    def _error(self, message: str):
        return self.types.CallToolResult(content=[self.types.TextContent(type="text", text=message)], isError=True)

    # ---- mounting ------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        """ASGI: the schema, a line of text for a browser, else the streamable HTTP transport."""
        from starlette.responses import JSONResponse, PlainTextResponse

        path = scope.get("path", "").rstrip("/")
        if path.endswith("/schema"):
            await JSONResponse(self.describe())(scope, receive, send)
            return
        if path.endswith(("/sse", "/messages")):  # Gradio's own MCP server's SSE routes: not served here
            text = f"This MCP server speaks streamable HTTP at {MCP_PATH}/ (no SSE transport): point the client there."
            await PlainTextResponse(text, status_code=404)(scope, receive, send)
            return
        accept = dict(scope.get("headers", [])).get(b"accept", b"")
        if scope.get("method") == "GET" and b"text/event-stream" not in accept:
            text = (
                "Img2Img Studio's MCP server (streamable HTTP). Point an MCP client at this URL; "
                f"tools: {', '.join(self.tools)}. Their schemas: {MCP_PATH}/schema"
            )
            await PlainTextResponse(text)(scope, receive, send)
            return
        await self.manager.handle_request(scope, receive, send)

    def routes(self) -> list:
        from starlette.routing import Mount, Route

        return [Route(MCP_PATH, endpoint=self, methods=["GET", "POST", "DELETE"]), Mount(MCP_PATH, app=self)]

    def lifespan(self):
        @contextlib.asynccontextmanager
        async def run(_app):
            async with self.manager.run():
                yield

        return run
