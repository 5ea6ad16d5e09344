"""A server bound to loopback answers only requests addressed to loopback (DNS rebinding).

A web page on any site can make the browser send requests to a name that resolves to 127.0.0.1 (DNS
rebinding); the browser then sends that name in the Host header. A server listening on loopback only
ever needs the loopback names, so every other Host is refused, on every route (the MCP route has the
SDK's own check besides). A server bound to all interfaces (a Space, a LAN) is reached by names this
process cannot know, and is left to its proxy.
"""

from __future__ import annotations

import json

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def host_name(header: str) -> str:
    """The name in a Host header, without its port: `[::1]:7860` -> `::1`, `localhost:80` -> `localhost`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class LoopbackHostsOnly:
    """ASGI middleware: HTTP and WebSocket requests whose Host is not a loopback name get 421, unread."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if host_name(header) in LOOPBACK_HOSTS:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        body = json.dumps(
            {
                "error": f"Host {header[:100]!r} is not this server: it listens on loopback and answers only "
                "127.0.0.1, localhost and [::1] (a page elsewhere must not reach it through DNS rebinding)"
            }
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 421, "headers": headers})
        await send({"type": "http.response.body", "body": body})
