"""`POST /v1/rerank`: the Cohere / Jina / Infinity shape."""

from __future__ import annotations

from pydantic import Field

from serve_common.protocol.base import StrictWireModel, WireModel


class RerankDocument(WireModel):
    text: str


class RerankRequest(WireModel):
    model: str
    query: str
    documents: list[str | RerankDocument]
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False
    # Extension: raw logits instead of sigmoid-normalized 0..1 scores.
    raw_scores: bool = False


class RerankResultDocument(StrictWireModel):
    text: str


class RerankResult(StrictWireModel):
    index: int
    relevance_score: float
    document: RerankResultDocument | None = None


class RerankUsage(StrictWireModel):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(StrictWireModel):
    id: str
    object: str = "rerank"
    model: str
    results: list[RerankResult]
    usage: RerankUsage
