"""Token usage blocks."""

from __future__ import annotations

from serve_common.protocol.base import StrictWireModel


class Usage(StrictWireModel):
    prompt_tokens: int = 0
    total_tokens: int = 0
    completion_tokens: int | None = None


class EmbeddingUsage(StrictWireModel):
    prompt_tokens: int
    total_tokens: int
