"""`POST /v1/completions` (OpenAI legacy text completions)."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from serve_common.protocol.base import StrictWireModel, WireModel
from serve_common.protocol.chat import StreamOptions
from serve_common.protocol.usage import Usage


class CompletionRequest(WireModel):
    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False
    user: str | None = None


class CompletionChoice(StrictWireModel):
    index: int
    text: str
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class CompletionResponse(StrictWireModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
