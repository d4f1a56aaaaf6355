"""`POST /v1/embeddings` (OpenAI)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from serve_common.protocol.base import StrictWireModel, WireModel
from serve_common.protocol.usage import EmbeddingUsage

# A string, a list of strings, a list of token ids, or a list of token-id lists, as OpenAI takes.
EmbeddingInput = str | list[str] | list[int] | list[list[int]]


class EmbeddingRequest(WireModel):
    model: str
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None
    # Extension: mark inputs as search queries so a BGE query instruction is prepended.
    input_type: Literal["query", "document"] | None = None


class Embedding(StrictWireModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingResponse(StrictWireModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
