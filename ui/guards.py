"""ASGI guards in front of every route: loopback names only on a loopback bind; request bodies that stall.

**Host names.** A web page on any site can make the browser send requests to a name that resolves to 127.0.0.1 (DNS
rebinding); the browser then sends that name in the Host header. A server listening on loopback only
ever needs the loopback names, so every other Host is refused, on every route (the MCP route has the
SDK's own check besides). A server bound to all interfaces (a Space, a LAN) is reached by names this
process cannot know, and is left to its proxy.

**Request bodies.** A client that opens an upload and then sends nothing (or a byte a minute) would hold a
connection and its buffers forever: a body that sends nothing for BODY_IDLE_S is given up (408), and one
client address has at most SLOW_BODIES_PER_CLIENT bodies open for over SLOW_BODY_S at once (429); a burst of
quick uploads is never counted. A body given up ends the handler as a closed
connection would, logged as one line, not a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
BODY_IDLE_S = 30.0  # a request body that sends nothing for this long is given up
SLOW_BODY_S = 10.0  # a request body still arriving after this long is a slow one
SLOW_BODIES_PER_CLIENT = 8  # slow request bodies one client address may have open at once
STREAMS_PER_CLIENT = 4  # MCP GET streams one client address may hold open at once


async def _answer(send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
        await _answer(
            send,
            421,
            f"Host {header[:100]!r} is not this server: it listens on loopback and answers only 127.0.0.1, "
            "localhost and [::1] (a page elsewhere must not reach it through DNS rebinding)",
        )


class StalledBodies:
    """ASGI middleware: a request body idle for BODY_IDLE_S gets 408; a client with SLOW_BODIES_PER_CLIENT slow
    bodies open gets 429 for the next."""

    def __init__(self, app) -> None:
        self.app = app
        self.receiving: defaultdict[str, list[float]] = defaultdict(list)  # client -> start of each open body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("unknown",))[0]
        now = time.monotonic()
        if sum(now - start > SLOW_BODY_S for start in self.receiving[client]) >= SLOW_BODIES_PER_CLIENT:
            return await _answer(
                send, 429, f"{SLOW_BODIES_PER_CLIENT} slow uploads of yours are still arriving; wait for one"
            )
        self.receiving[client].append(now)
        state = {"body_done": False, "gave_up": False, "answered": False, "released": False}

        async def guarded_receive():
            if state["gave_up"]:
                return {"type": "http.disconnect"}
            if state["body_done"]:  # after the body, only a disconnect can come: no time limit on it
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), BODY_IDLE_S)
            except TimeoutError:
                state["gave_up"] = True
                logger.info("a request body to %s sent nothing for %.0f s: given up", scope.get("path"), BODY_IDLE_S)
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body"):
                state["body_done"] = True
                release()
            return message

        def release() -> None:  # once: the body is in, or the request is over
            if not state["released"]:
                state["released"] = True
                self.receiving[client].remove(now)
                if not self.receiving[client]:
                    del self.receiving[client]

        async def guarded_send(message):
            if state["gave_up"] and not state["answered"]:
                return  # the client's answer is the 408 below; the handler saw a closed connection
            if message["type"] == "http.response.start":
                state["answered"] = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if not state["gave_up"]:
                raise
            logger.info("the handler of %s ended when its body was given up", scope.get("path"))
        finally:
            release()
        if state["gave_up"] and not state["answered"]:
            await _answer(send, 408, f"the request body sent nothing for {BODY_IDLE_S:.0f} s and was given up")


class StreamsPerClient:
    """ASGI middleware: GET requests under `prefix` (the MCP route's streams) at most STREAMS_PER_CLIENT per
    client address at once; the next gets 429."""

    def __init__(self, app, prefix: str) -> None:
        self.app = app
        self.prefix = prefix
        self.open: defaultdict[str, int] = defaultdict(int)

    async def __call__(self, scope, receive, send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "GET"
            or not scope.get("path", "").startswith(self.prefix)
        ):
            return await self.app(scope, receive, send)
        client = (scope.get("client") or ("unknown",))[0]
        if self.open[client] >= STREAMS_PER_CLIENT:
            return await _answer(send, 429, f"{STREAMS_PER_CLIENT} event streams of yours are open; close one first")
        self.open[client] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open[client] -= 1
            if not self.open[client]:
                del self.open[client]
