"""`EmbeddingServer`: the Serve deployment for `/v1/embeddings` and KServe V2.

Requests are tokenized on arrival (limits and usage), then merged across concurrent requests by
`@serve.batch` into one engine call, which sorts by length so padding stays small.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from ray import serve

from embed_serve import metrics as m
from embed_serve.config import EmbeddingConfig
from embed_serve.engine import EmbeddingEngine, create_engine
from serve_common import metrics
from serve_common.errors import InvalidRequestError
from serve_common.protocol.embeddings import Embedding, EmbeddingRequest, EmbeddingResponse
from serve_common.protocol.usage import EmbeddingUsage
from serve_common.protocol.v2 import InferRequest, InferResponse, ModelMetadata, TensorMetadata
from serve_common.server import ModelServer
from serve_common.v2 import bytes_as_text, find_input, fp32_tensor


class PreparedInputs:
    """Token ids ready for the engine, plus what the response needs to say."""

    def __init__(self, ids: list[list[int]], tokens: int) -> None:
        self.ids = ids
        self.tokens = tokens


class EmbeddingServer(ModelServer[EmbeddingConfig, EmbeddingEngine]):
    service = "embeddings"
    config_cls = EmbeddingConfig

    def create_engine(self, config: EmbeddingConfig) -> EmbeddingEngine:
        return create_engine(config)

    async def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        await super().reconfigure(user_config)
        self._embed_batched.set_max_batch_size(self.config.max_batch_size)
        self._embed_batched.set_batch_wait_timeout_s(self.config.batch_wait_timeout_s)

    # ---- request preparation --------------------------------------------------------------
    async def prepare(
        self, inputs: Any, input_type: str | None, param: str = "input"
    ) -> PreparedInputs:
        engine = await self.ensure_loaded()
        cfg = self.config
        texts: list[str] | None = None
        ids: list[list[int]]
        if isinstance(inputs, str):
            texts = [inputs]
        elif isinstance(inputs, list) and inputs and all(isinstance(x, str) for x in inputs):
            texts = list(inputs)
        elif isinstance(inputs, list) and inputs and all(isinstance(x, int) for x in inputs):
            ids = [list(inputs)]
        elif isinstance(inputs, list) and inputs and all(isinstance(x, list) for x in inputs):
            ids = [list(x) for x in inputs]
        elif isinstance(inputs, list) and not inputs:
            raise InvalidRequestError(f"'{param}' must not be an empty list.", param=param)
        else:
            raise InvalidRequestError(
                f"'{param}' must be a string, a list of strings, a list of token ids, or a list "
                "of token-id lists.",
                param=param,
            )
        count = len(texts) if texts is not None else len(ids)
        if count > cfg.max_inputs_per_request:
            raise InvalidRequestError(
                f"'{param}' has {count} items; the limit is {cfg.max_inputs_per_request}.",
                param=param,
                code="too_many_inputs",
            )
        if texts is not None:
            for i, text in enumerate(texts):
                if not text.strip():
                    raise InvalidRequestError(
                        f"'{param}[{i}]' is empty; every input must contain text.", param=param
                    )
            kind = input_type or cfg.default_input_type
            if kind == "query" and cfg.query_instruction:
                texts = [cfg.query_instruction + t for t in texts]
            ids = await engine.run_blocking(engine.tokenize, texts)
        else:
            for i, seq in enumerate(ids):
                if not seq:
                    raise InvalidRequestError(
                        f"'{param}[{i}]' is an empty token list.", param=param
                    )
                if any(not isinstance(t, int) or t < 0 or t >= engine.vocab_size for t in seq):
                    raise InvalidRequestError(
                        f"'{param}[{i}]' holds token ids outside 0..{engine.vocab_size - 1}.",
                        param=param,
                    )
            ids = [engine.add_special_tokens(seq) for seq in ids]
        limit = engine.max_tokens
        truncated = 0
        for i, seq in enumerate(ids):
            if len(seq) > limit:
                if not cfg.truncate:
                    raise InvalidRequestError(
                        f"'{param}[{i}]' has {len(seq)} tokens; the limit is {limit}.",
                        param=param,
                        code="context_length_exceeded",
                    )
                ids[i] = engine.truncate(seq, limit)
                truncated += 1
        tags = {"model": cfg.primary_name}
        m.TRUNCATED.inc(truncated, tags=tags)
        tokens = sum(len(seq) for seq in ids)
        m.INPUTS.inc(len(ids), tags=tags)
        m.TOKENS.inc(tokens, tags=tags)
        return PreparedInputs(ids, tokens)

    def output_dimensions(self, requested: int | None, param: str = "dimensions") -> int | None:
        native = self.engine.dimensions
        if requested is None or requested == native:
            return None
        if not self.config.supports_dimensions:
            raise InvalidRequestError(
                f"This model does not support 'dimensions' (its size is {native}).", param=param
            )
        if requested > native:
            raise InvalidRequestError(
                f"'dimensions' must be at most {native} for this model.", param=param
            )
        return requested

    # ---- batched engine call ----------------------------------------------------------------
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _embed_batched(self, requests: list[list[list[int]]]) -> list[np.ndarray]:
        engine = self.engine
        flat = [seq for req in requests for seq in req]
        metrics.BATCH_SIZE.observe(
            len(flat), tags={"service": self.service, "model": self.config.primary_name}
        )
        vectors = await engine.run_blocking(engine.embed_ids, flat)
        out: list[np.ndarray] = []
        start = 0
        for req in requests:
            out.append(vectors[start : start + len(req)])
            start += len(req)
        return out

    async def embed(self, prepared: PreparedInputs, dims: int | None) -> np.ndarray:
        vectors: np.ndarray = await self._embed_batched(prepared.ids)
        if dims is not None:
            vectors = vectors[:, :dims]
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return vectors.astype(np.float32, copy=False)

    # ---- routes ---------------------------------------------------------------------------
    def routers(self) -> list[APIRouter]:
        router = APIRouter()

        @router.post("/v1/embeddings")
        async def embeddings(body: EmbeddingRequest, request: Request) -> EmbeddingResponse:
            name = self.check_model(body.model, request)
            prepared = await self.prepare(body.input, body.input_type)
            vectors = await self.embed(prepared, self.output_dimensions(body.dimensions))
            if body.encoding_format == "base64":
                data = [
                    Embedding(
                        index=i, embedding=base64.b64encode(v.astype("<f4").tobytes()).decode()
                    )
                    for i, v in enumerate(vectors)
                ]
            else:
                data = [Embedding(index=i, embedding=v.tolist()) for i, v in enumerate(vectors)]
            usage = EmbeddingUsage(prompt_tokens=prepared.tokens, total_tokens=prepared.tokens)
            return EmbeddingResponse(data=data, model=name, usage=usage)

        return [router]

    # ---- KServe V2 --------------------------------------------------------------------------
    def v2_metadata(self, name: str) -> ModelMetadata:
        return ModelMetadata(
            name=name,
            versions=[self.config.revision] if self.config.revision else [],
            platform=f"embeddings/{self.config.backend}",
            inputs=[TensorMetadata(name="text", datatype="BYTES", shape=[-1])],
            outputs=[
                TensorMetadata(
                    name="embedding", datatype="FP32", shape=[-1, self.engine.dimensions]
                )
            ],
            parameters={
                "input_type": "query|document (request parameter)",
                "dimensions": "int (request parameter, Matryoshka models only)",
            },
        )

    async def v2_infer(self, name: str, request: InferRequest) -> InferResponse:
        params = request.parameters or {}
        texts = bytes_as_text(find_input(request, "text"))  # type: ignore[arg-type]
        if not texts:
            raise InvalidRequestError("input 'text' is empty", param="text")
        input_type = params.get("input_type")
        if input_type not in (None, "query", "document"):
            raise InvalidRequestError("parameter 'input_type' must be query or document")
        dims = params.get("dimensions")
        if dims is not None and (not isinstance(dims, int) or dims < 1):
            raise InvalidRequestError("parameter 'dimensions' must be a positive integer")
        prepared = await self.prepare(texts, input_type, param="text")
        vectors = await self.embed(prepared, self.output_dimensions(dims))
        return InferResponse(
            model_name=name,
            outputs=[fp32_tensor("embedding", vectors.tolist())],
            parameters={"prompt_tokens": prepared.tokens},
        )


# The Serve deployment (the class above stays importable and testable without Serve).
EmbeddingDeployment = serve.deployment(
    name="EmbeddingServer",
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=256,
    health_check_period_s=10,
    health_check_timeout_s=30,
)(serve.ingress()(EmbeddingServer))
