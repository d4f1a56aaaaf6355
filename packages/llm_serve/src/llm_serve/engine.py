"""The LLM engine interface: OpenAI chat/completions in, a JSON body or SSE events out.

A backend owns the whole OpenAI serving layer for its library (vLLM's own chat templates,
tool-call and reasoning parsers, structured output); the server only checks names, maps
errors and frames the response.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request

from serve_common.engine import Engine

#: a complete response body, or the `data: ...` SSE events of a streamed one
LLMResult = dict[str, Any] | AsyncIterator[str]


class LLMEngine(Engine):
    """Base of every LLM backend.

    `chat_completion` / `completion` take the OpenAI request body (already name-checked; its
    `model` is the served name the response should carry) and the HTTP request (headers such
    as `X-Request-Id`). They raise `serve_common.errors.APIError` subclasses for bad input.
    A streamed result must abort its generation when the iterator is closed or cancelled
    (the client went away).
    """

    @abstractmethod
    async def chat_completion(self, body: dict[str, Any], request: Request | None) -> LLMResult:
        """`POST /v1/chat/completions`."""

    @abstractmethod
    async def completion(self, body: dict[str, Any], request: Request | None) -> LLMResult:
        """`POST /v1/completions`."""

    def set_served_name(self, name: str) -> None:
        """The name responses carry (hot reload may rename the model without reloading)."""

    def unfinished_requests(self) -> int:
        """Generations in flight in the engine (0 when idle; used to check aborts)."""
        return 0
