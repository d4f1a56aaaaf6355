"""`EmbeddingConfig`: the model, its backend and the request limits of the embeddings service."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from serve_common.config import ServiceConfig

BGE_EN_QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "


class EmbeddingConfig(ServiceConfig):
    backend: Literal["sentence-transformers", "flag"] = Field(
        default="sentence-transformers",
        description="sentence-transformers (reads the model's modules.json: pooling, normalize) "
        "or FlagEmbedding's FlagModel (BGE defaults: CLS pooling).",
    )
    pooling: Literal["cls", "mean"] = Field(
        default="cls", description="FlagModel pooling (BGE uses cls; MiniLM needs mean)."
    )
    normalize: bool = Field(default=True, description="L2-normalize the vectors.")
    query_instruction: str | None = Field(
        default=None,
        description="Prefix for inputs sent with input_type=query (BGE: "
        f"'{BGE_EN_QUERY_INSTRUCTION}').",
    )
    default_input_type: Literal["query", "document"] = Field(
        default="document", description="input_type assumed when a request does not say."
    )
    supports_dimensions: bool = Field(
        default=False,
        description="The model is Matryoshka-trained: `dimensions` truncates and renormalizes. "
        "Otherwise a `dimensions` other than the native size is refused with 400.",
    )
    fp16: bool | None = Field(default=None, description="Half precision; default: on GPU only.")
    max_batch_size: int = Field(default=32, ge=1, description="Requests merged per engine batch.")
    batch_wait_timeout_s: float = Field(default=0.005, ge=0, description="Wait to fill a batch.")
    encode_batch_size: int = Field(default=64, ge=1, description="Sequences per forward pass.")
    max_inputs_per_request: int = Field(default=2048, ge=1)
    max_input_tokens: int | None = Field(
        default=None, ge=2, description="Tokens per input; default: the model's max length."
    )
    truncate: bool = Field(
        default=True, description="Truncate inputs over max_input_tokens (False: answer 400)."
    )

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = ServiceConfig.RUNTIME_FIELDS | {
        "default_input_type",
        "max_batch_size",
        "batch_wait_timeout_s",
        "max_inputs_per_request",
        "truncate",
        "query_instruction",
        "supports_dimensions",
    }

    @model_validator(mode="after")
    def _instruction(self) -> EmbeddingConfig:
        if self.default_input_type == "query" and not self.query_instruction:
            raise ValueError("default_input_type=query needs a query_instruction")
        return self
