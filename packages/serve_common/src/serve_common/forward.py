"""Run one HTTP request through an ASGI app in-process and stream the response back.

Used by `ModelServer.forward` / `forward_buffered`, which the gateway calls through a Serve
handle: the request then goes through exactly the same middleware, validation and handlers as
on the direct route. `collect_asgi` returns the whole response in one piece, which saves the
gateway the round trips of a streamed handle call when the client did not ask to stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

_DONE = object()


async def run_asgi(app: Callable[..., Any], request: dict[str, Any]) -> AsyncIterator[Any]:
    body: bytes = request.get("body", b"")
    headers = [(bytes(k), bytes(v)) for k, v in request.get("headers", [])]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request.get("method", "GET"),
        "scheme": "http",
        "path": request["path"],
        "raw_path": request["path"].encode(),
        "root_path": "",
        "query_string": request.get("query", b""),
        "headers": headers,
        "client": tuple(request["client"]) if request.get("client") else None,
        "server": ("gateway", 0),
        "state": {},
    }
    queue: asyncio.Queue[Any] = asyncio.Queue()
    disconnected = asyncio.Event()
    sent_body = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            await queue.put(
                {
                    "status": message["status"],
                    "headers": [[k, v] for k, v in message.get("headers", [])],
                }
            )
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            if chunk:
                await queue.put(bytes(chunk))
            if not message.get("more_body", False):
                await queue.put(_DONE)

    async def run() -> None:
        try:
            await app(scope, receive, send)
        finally:
            await queue.put(_DONE)

    task = asyncio.create_task(run())
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            yield item
    finally:
        # The caller went away (client disconnect through the gateway): tell the app.
        disconnected.set()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def collect_asgi(app: Callable[..., Any], request: dict[str, Any]) -> dict[str, Any]:
    """The whole response: `{"status", "headers", "body"}`."""
    head: dict[str, Any] = {"status": 500, "headers": []}
    chunks: list[bytes] = []
    async for item in run_asgi(app, request):
        if isinstance(item, dict):
            head = item
        else:
            chunks.append(item)
    return {**head, "body": b"".join(chunks)}
