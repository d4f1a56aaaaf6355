"""`RerankConfig`: the model, its backend, batching and the request limits of the reranker."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from serve_common.config import ServiceConfig

Backend = Literal["flag", "cross-encoder", "bi-encoder"]


class RerankConfig(ServiceConfig):
    backend: Backend = Field(
        default="flag",
        description="flag: FlagEmbedding FlagReranker (production: bge-reranker-*); "
        "cross-encoder: sentence-transformers CrossEncoder; bi-encoder: cosine similarity of "
        "SentenceTransformer embeddings (NOT a cross-encoder: the offline default, because no "
        "real cross-encoder ships on PyPI).",
    )
    max_length: int | None = Field(
        default=None,
        ge=8,
        le=32768,
        description="Tokens per (query, document) pair (bi-encoder: per text); longer documents "
        "are truncated. Default: the model's limit, capped at 512.",
    )
    max_query_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Longest query accepted (longer: 400). Default: 3/4 of max_length for "
        "cross-encoders (FlagReranker's own rule), max_length - 2 for the bi-encoder.",
    )
    use_fp16: bool | None = Field(
        default=None, description="Half precision; default: on where the device supports it."
    )
    cpu_threads: int | None = Field(
        default=None,
        ge=1,
        description="torch threads on CPU (Ray sets OMP_NUM_THREADS from num_cpus, 1 for a "
        "fractional replica). Default: leave torch's setting.",
    )
    trust_remote_code: bool = False
    batch_size: int = Field(default=32, ge=1, le=4096, description="Pairs per forward pass.")
    max_batch_pairs: int = Field(
        default=128,
        ge=1,
        description="Pairs merged across concurrent requests into one engine call "
        "(@serve.batch max_batch_size, counted in pairs).",
    )
    batch_wait_timeout_s: float = Field(
        default=0.005, ge=0, le=5, description="How long a batch waits to fill."
    )
    max_documents: int = Field(default=1000, ge=1, description="Documents per request.")

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = ServiceConfig.RUNTIME_FIELDS | {
        "batch_size",
        "max_batch_pairs",
        "batch_wait_timeout_s",
        "max_documents",
        "max_query_tokens",
    }

    @model_validator(mode="after")
    def _query_fits(self) -> RerankConfig:
        if (
            self.max_length is not None
            and self.max_query_tokens is not None
            and self.max_query_tokens >= self.max_length
        ):
            raise ValueError("max_query_tokens must be smaller than max_length")
        return self
