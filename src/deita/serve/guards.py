"""What every HTTP request passes before a route: metrics, the API key, and the body bound.

Plain ASGI, wrapped around the app, so that the answers it gives (401, 413) are counted and timed like any
other. A body over the bound is read to its end and discarded before the 413 goes out: clients that send
the whole body before reading (urllib, requests) then see the status instead of a reset connection.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from deita.serve.answers import error_body, json_bytes
from deita.serve.metrics import Metrics

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DRAIN_LIMIT = 2**30
"""Bytes of an oversized body read and thrown away at most; past that the connection is closed instead."""
PUBLIC = {("GET", "/"), ("GET", "/docs"), ("GET", "/openapi.json")}
"""Static documents, with no data and no model behind them, served without the key (the page then asks
for the key and sends it with every call)."""


async def send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    data = json_bytes(body)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class Guards:
    """Wraps `app`: counts and times every request by route, checks the bearer key, bounds the body."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Collection[str], api_key: str | None,
                 max_body: int) -> None:
        self.app, self.metrics, self.routes = app, metrics, set(routes)
        self.key = api_key.encode() if api_key else None
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else "other"
        status = 500
        start = time.perf_counter()

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, counted)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is not None and (scope["method"], scope["path"]) not in PUBLIC and not self.authorized(scope):
            await read_body(receive, 0)
            await send_json(send, 401, error_body("auth", "this service needs its API key: send the header "
                                                  "`Authorization: Bearer <key>`"), {"WWW-Authenticate": "Bearer"})
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        body, size = await read_body(receive, self.max_body)
        if body is None:
            if size is None:
                return  # the client went away
            limit = f"{self.max_body / 2**20:g} MiB"
            await send_json(send, 413, error_body("too_large", f"the request body ({size:,} bytes) is over the limit "
                                                  f"of {self.max_body:,} bytes ({limit}, --max-body-mb)"),
                            {"Connection": "close"} if size > DRAIN_LIMIT else None)
            return
        await self.app(scope, replay(body, receive), send)

    def authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key or b"")
        return False


async def read_body(receive: Receive, limit: int) -> tuple[bytes | None, int | None]:
    """(body, size) when it is at most `limit` bytes; (None, size read) when larger, the rest read and thrown
    away (up to `DRAIN_LIMIT`); (None, None) when the client disconnected."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None, None
        data = message.get("body", b"")
        size += len(data)
        if size <= limit:
            chunks.append(data)
        else:
            chunks.clear()
        if not message.get("more_body", False) or size > DRAIN_LIMIT:
            break
    return (b"".join(chunks), size) if size <= limit else (None, size)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body already read, then whatever the client sends next (a disconnect)."""
    sent = False

    async def receive_again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again
