"""`RerankServer`: the Serve deployment for `/v1/rerank` (Cohere / Jina / Infinity shape) and
KServe V2.

A request with N documents becomes N (query, document) pairs. They go to `@serve.batch` in
chunks of at most `max_batch_pairs` pairs, and the batch size is counted in pairs
(`batch_size_fn`), so pairs from concurrent requests that arrive within
`batch_wait_timeout_s` form one batch.

Serve forms the next batch while the engine still runs the previous one, so under load it makes
many small batches. Batches therefore wait for the engine in a queue, and whoever gets the
engine takes every waiting batch (up to `max_batch_pairs` pairs) into ONE engine call: the
pairs that pile up while the engine is busy are scored together. That call sorts the merged
pairs by token length, longest first, and the engine cuts them into forward passes of
`batch_size` consecutive pairs, so each pass pads to similar lengths.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from ray import serve

from rerank_serve import metrics as m
from rerank_serve.config import RerankConfig
from rerank_serve.engine import RerankEngine, TokenCounts, create_engine
from serve_common import metrics
from serve_common.errors import APIError, EngineError, InvalidRequestError
from serve_common.protocol.rerank import (
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankResultDocument,
    RerankUsage,
)
from serve_common.protocol.v2 import InferRequest, InferResponse, ModelMetadata, TensorMetadata
from serve_common.server import ModelServer
from serve_common.v2 import bytes_as_text, find_input, fp32_tensor

logger = logging.getLogger("rerank_serve.server")

#: batches Serve may hand over at once; they wait for the engine in the server's queue.
CONCURRENT_BATCHES = 32


class _RequestCountWarning(logging.Filter):
    """Serve warns when max_batch_size x max_concurrent_batches exceeds max_ongoing_requests:
    it assumes one request per batch item. Here items are pairs (a request brings many), and
    batches only queue for the engine, so the warning does not apply."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("`max_batch_size` (")


logging.getLogger("ray.serve").addFilter(_RequestCountWarning())


@dataclass(frozen=True)
class PairChunk:
    """Consecutive pairs of one request; `lengths` are their token counts (for sorting)."""

    pairs: list[tuple[str, str]]
    lengths: list[int]


def pairs_in(chunks: list[PairChunk]) -> int:
    """`@serve.batch` batch size in pairs, not requests."""
    return sum(len(c.pairs) for c in chunks)


@dataclass(frozen=True)
class Prepared:
    query: str
    documents: list[str]
    counts: TokenCounts


@dataclass
class _Job:
    """One Serve batch waiting for the engine."""

    chunks: list[PairChunk]
    future: asyncio.Future[list[list[float]]]
    pairs: int = field(init=False)

    def __post_init__(self) -> None:
        self.pairs = pairs_in(self.chunks)


def sort_by_length(lengths: Sequence[int]) -> list[int]:
    """Indices, longest first (stable), so neighbouring pairs pad to similar lengths."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def rank(scores: Sequence[float], top_n: int | None) -> list[int]:
    """Indices by score, best first; ties keep the caller's order."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return order if top_n is None else order[:top_n]


class RerankServer(ModelServer[RerankConfig, RerankEngine]):
    service = "reranker"
    config_cls = RerankConfig

    def __init__(self, config: dict[str, Any] | RerankConfig) -> None:
        super().__init__(config)
        self._waiting: deque[_Job] = deque()
        self._engine_turn = asyncio.Lock()

    def create_engine(self, config: RerankConfig) -> RerankEngine:
        return create_engine(config)

    async def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        await super().reconfigure(user_config)
        self._score_batched.set_max_batch_size(self.config.max_batch_pairs)
        self._score_batched.set_batch_wait_timeout_s(self.config.batch_wait_timeout_s)

    # ---- request preparation --------------------------------------------------------------
    async def prepare(self, query: str, documents: list[str], doc_param: str) -> Prepared:
        engine = await self.ensure_loaded()
        cfg = self.config
        if not query.strip():
            raise InvalidRequestError("'query' must not be empty.", param="query")
        if not documents:
            raise InvalidRequestError(
                f"'{doc_param}' must hold at least one document.", param=doc_param
            )
        if len(documents) > cfg.max_documents:
            raise InvalidRequestError(
                f"'{doc_param}' has {len(documents)} documents; the limit is {cfg.max_documents}.",
                param=doc_param,
                code="too_many_documents",
            )
        counts = await engine.count(query, documents)
        limit = engine.query_limit()
        if counts.query > limit:
            raise InvalidRequestError(
                f"'query' is {counts.query} tokens long; the limit is {limit}.",
                param="query",
                code="query_too_long",
            )
        tags = {"model": cfg.primary_name}
        m.DOCUMENTS.observe(len(documents), tags=tags)
        m.TRUNCATED.inc(counts.truncated, tags=tags)
        return Prepared(query, documents, counts)

    # ---- batched engine call ----------------------------------------------------------------
    @serve.batch(
        max_batch_size=128,
        batch_wait_timeout_s=0.005,
        max_concurrent_batches=CONCURRENT_BATCHES,
        batch_size_fn=pairs_in,
    )
    async def _score_batched(self, chunks: list[PairChunk]) -> list[list[float]]:
        job = _Job(chunks, asyncio.get_running_loop().create_future())
        self._waiting.append(job)
        while not job.future.done():
            async with self._engine_turn:
                if job.future.done():
                    break
                await self._run_waiting()
        return job.future.result()

    async def _run_waiting(self) -> None:
        """Score the waiting batches, oldest first, up to max_batch_pairs, in one engine call."""
        limit = self.config.max_batch_pairs
        taken: list[_Job] = []
        total = 0
        while self._waiting and (not taken or total + self._waiting[0].pairs <= limit):
            job = self._waiting.popleft()
            taken.append(job)
            total += job.pairs
        try:
            results = await self._score_merged([c for job in taken for c in job.chunks])
        except Exception as exc:
            for job in taken:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        start = 0
        for job in taken:
            if not job.future.done():
                job.future.set_result(results[start : start + len(job.chunks)])
            start += len(job.chunks)

    async def _score_merged(self, chunks: list[PairChunk]) -> list[list[float]]:
        """One engine call over every pair of `chunks`, longest first; scores per chunk."""
        engine = self.engine
        pairs = [p for c in chunks for p in c.pairs]
        order = sort_by_length([n for c in chunks for n in c.lengths])
        tags = {"service": self.service, "model": self.config.primary_name}
        metrics.BATCH_SIZE.observe(len(pairs), tags=tags)
        sorted_scores = await engine.score([pairs[i] for i in order], self.config.batch_size)
        scores = [0.0] * len(pairs)
        for pos, i in enumerate(order):
            scores[i] = sorted_scores[pos]
        out: list[list[float]] = []
        start = 0
        for c in chunks:
            out.append(scores[start : start + len(c.pairs)])
            start += len(c.pairs)
        return out

    async def _score_chunk(self, chunk: PairChunk) -> list[float]:
        try:
            return await self._score_batched(chunk)
        except RuntimeError as exc:
            # max_batch_pairs was lowered by a reload after this chunk was cut: cut it again.
            limit = self.config.max_batch_pairs
            if "greater than max_batch_size" not in str(exc) or len(chunk.pairs) <= limit:
                raise
            parts = [
                PairChunk(chunk.pairs[i : i + limit], chunk.lengths[i : i + limit])
                for i in range(0, len(chunk.pairs), limit)
            ]
            results = await asyncio.gather(*(self._score_batched(p) for p in parts))
            return [s for r in results for s in r]

    async def score(self, prepared: Prepared, raw_scores: bool) -> list[float]:
        """One score per document, in the caller's order."""
        n = self.config.max_batch_pairs
        pairs = [(prepared.query, d) for d in prepared.documents]
        lengths = prepared.counts.pairs
        chunks = [PairChunk(pairs[i : i + n], lengths[i : i + n]) for i in range(0, len(pairs), n)]
        try:
            parts = await asyncio.gather(*(self._score_chunk(c) for c in chunks))
        except APIError:
            raise
        except Exception as exc:
            logger.exception("reranker engine failed")
            raise EngineError("The reranker failed to score this request.") from exc
        raw = [s for part in parts for s in part]
        tags = {"model": self.config.primary_name}
        m.PAIRS.inc(len(raw), tags=tags)
        m.TOKENS.inc(prepared.counts.usage, tags=tags)
        return raw if raw_scores else self.engine.normalize(raw)

    # ---- routes ---------------------------------------------------------------------------
    def routers(self) -> list[APIRouter]:
        router = APIRouter()

        @router.post("/v1/rerank", response_model_exclude_none=True)
        async def rerank(body: RerankRequest, request: Request) -> RerankResponse:
            name = self.check_model(body.model, request)
            documents = [d if isinstance(d, str) else d.text for d in body.documents]
            prepared = await self.prepare(body.query, documents, "documents")
            scores = await self.score(prepared, body.raw_scores)
            results = [
                RerankResult(
                    index=i,
                    relevance_score=scores[i],
                    document=RerankResultDocument(text=documents[i])
                    if body.return_documents
                    else None,
                )
                for i in rank(scores, body.top_n)
            ]
            rid = getattr(request.state, "request_id", None) or uuid.uuid4().hex
            tokens = prepared.counts.usage
            return RerankResponse(
                id=f"rerank-{rid}",
                model=name,
                results=results,
                usage=RerankUsage(prompt_tokens=tokens, total_tokens=tokens),
            )

        return [router]

    # ---- KServe V2 --------------------------------------------------------------------------
    def v2_metadata(self, name: str) -> ModelMetadata:
        info = self.engine.describe()
        return ModelMetadata(
            name=name,
            versions=[self.config.revision] if self.config.revision else [],
            platform=f"reranker/{self.config.backend}",
            inputs=[
                TensorMetadata(name="query", datatype="BYTES", shape=[1]),
                TensorMetadata(name="documents", datatype="BYTES", shape=[-1]),
            ],
            outputs=[TensorMetadata(name="scores", datatype="FP32", shape=[-1])],
            parameters={
                "scores": "one per document, in input order; 0..1 unless raw_scores",
                "raw_scores": "bool request parameter: raw model scores instead of 0..1",
                "scoring": info["scoring"],
                "max_length": info["max_length"],
                "max_query_tokens": info["max_query_tokens"],
                "max_documents": self.config.max_documents,
            },
        )

    async def v2_infer(self, name: str, request: InferRequest) -> InferResponse:
        params = request.parameters or {}
        raw_scores = params.get("raw_scores", False)
        if not isinstance(raw_scores, bool):
            raise InvalidRequestError("parameter 'raw_scores' must be a boolean")
        queries = bytes_as_text(find_input(request, "query"))  # type: ignore[arg-type]
        if len(queries) != 1:
            raise InvalidRequestError(
                f"input 'query' must hold exactly one string (got {len(queries)})", param="query"
            )
        documents = bytes_as_text(find_input(request, "documents"))  # type: ignore[arg-type]
        prepared = await self.prepare(queries[0], documents, "documents")
        scores = await self.score(prepared, raw_scores)
        return InferResponse(
            model_name=name,
            outputs=[fp32_tensor("scores", scores)],
            parameters={"prompt_tokens": prepared.counts.usage},
        )


# The Serve deployment (the class above stays importable and testable without Serve).
RerankDeployment = serve.deployment(
    name="RerankServer",
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=128,
    health_check_period_s=10,
    health_check_timeout_s=30,
)(serve.ingress()(RerankServer))
