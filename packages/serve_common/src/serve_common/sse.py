"""Server-Sent Events framing shared by streamed responses (chat chunks, transcripts, audio)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel

SSE_MEDIA_TYPE = "text/event-stream"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = b"data: [DONE]\n\n"


def sse_event(data: BaseModel | dict[str, Any] | str, event: str | None = None) -> bytes:
    """One `data:` event (optionally named). Models are dumped without `None` fields."""
    if isinstance(data, BaseModel):
        payload = data.model_dump_json(exclude_none=True)
    elif isinstance(data, dict):
        payload = json.dumps(data, separators=(",", ":"))
    else:
        payload = data
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def sse_error(message: str, error_type: str = "server_error", code: str | None = None) -> bytes:
    """An error after the stream has started (the status line is already sent): OpenAI shape."""
    err = {"message": message, "type": error_type, "param": None, "code": code}
    return sse_event({"error": err})


async def with_done(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for chunk in events:
        yield chunk
    yield DONE
