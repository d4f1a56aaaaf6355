"""`RerankEngine`: (query, document) pairs in, one raw relevance score per pair out.

One subclass per backend in `engines/`. Raw scores are logits for the cross-encoders and
cosine similarities for the bi-encoder; `normalize` maps them to 0..1 (sigmoid for logits).
Token counting (limits, usage, length sorting) uses a tokenizer copy of its own on a thread of
its own, so it never touches the tokenizer the library is using for a batch at the same time.
"""

from __future__ import annotations

import asyncio
import math
from abc import abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

from rerank_serve.config import RerankConfig
from serve_common.engine import Engine
from serve_common.model_paths import resolve_model_path

#: hard cap for the default max_length (bge-reranker-v2-m3 says 8192; FlagReranker uses 512).
DEFAULT_MAX_LENGTH = 512


@dataclass(frozen=True)
class TokenCounts:
    query: int  # query tokens, without special tokens
    pairs: list[int]  # tokens each pair costs the model, after truncation
    usage: int  # tokens billed for the request
    truncated: int = 0  # documents cut to max_length


class RerankEngine(Engine):
    #: what a score means, for /v1/models, V2 metadata and logs.
    scoring: ClassVar[str] = "cross-encoder logit"

    def __init__(self, config: RerankConfig) -> None:
        super().__init__()
        self.config = config
        self.device = "cpu"
        self.fp16 = False
        self.max_length = DEFAULT_MAX_LENGTH
        self.max_query_tokens = DEFAULT_MAX_LENGTH * 3 // 4
        self._tokenizer: Any = None  # the counting copy
        self._count_executor: ThreadPoolExecutor | None = None

    # ---- what a backend implements ----------------------------------------------------------
    @abstractmethod
    def load_model(self, path: str, device: str, fp16: bool) -> int:
        """Load the model (blocking); return the model's own token limit."""

    @abstractmethod
    def score_pairs(self, pairs: Sequence[tuple[str, str]], batch_size: int) -> list[float]:
        """Raw scores, one per pair, in order (blocking). `pairs` come sorted longest first."""

    def normalize(self, raw: Sequence[float]) -> list[float]:
        """Raw scores → 0..1 relevance (sigmoid of the logit)."""
        return [_sigmoid(x) for x in raw]

    def default_query_limit(self, max_length: int) -> int:
        return max_length * 3 // 4

    def count_tokens(self, query: str, documents: Sequence[str]) -> TokenCounts:
        """Cross-encoder pair cost: [CLS] q [SEP] d [SEP], the document truncated (blocking)."""
        tok = self._tokenizer
        q = len(tok(query, add_special_tokens=False)["input_ids"])
        docs = tok(list(documents), add_special_tokens=False)["input_ids"] if documents else []
        special = tok.num_special_tokens_to_add(pair=True)
        full = [q + len(d) + special for d in docs]
        pairs = [min(n, max(self.max_length, q + special)) for n in full]
        truncated = sum(1 for n in full if n > self.max_length)
        return TokenCounts(query=q, pairs=pairs, usage=sum(pairs), truncated=truncated)

    # ---- lifecycle ----------------------------------------------------------------------------
    async def load(self) -> None:
        path = resolve_model_path(self.config.model)
        await self.run_blocking(self._load_sync, path)

    def _load_sync(self, path: str) -> None:
        from rerank_serve.engines._torch import load_tokenizer, prepare_device

        self.device, self.fp16 = prepare_device(self.config)
        model_limit = self.load_model(path, self.device, self.fp16)
        if self.config.max_length is not None and self.config.max_length > model_limit:
            raise ValueError(
                f"max_length {self.config.max_length} exceeds the model's limit of {model_limit}"
            )
        self.max_length = self.config.max_length or min(model_limit, DEFAULT_MAX_LENGTH)
        self.max_query_tokens = self.default_query_limit(self.max_length)
        self.apply_lengths()
        self._tokenizer = load_tokenizer(path, self.config.trust_remote_code)

    def apply_lengths(self) -> None:
        """Tell the library the resolved max_length / query limit (after `load_model`)."""

    def query_limit(self) -> int:
        """The longest query accepted now (runtime config wins over the model default), always
        leaving room in a pair for special tokens and some of the document."""
        return min(self.config.max_query_tokens or self.max_query_tokens, self.max_length - 4)

    async def count(self, query: str, documents: Sequence[str]) -> TokenCounts:
        if self._count_executor is None:
            self._count_executor = ThreadPoolExecutor(1, thread_name_prefix="rerank-tokens")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._count_executor, self.count_tokens, query, documents)

    async def score(self, pairs: Sequence[tuple[str, str]], batch_size: int) -> list[float]:
        return await self.run_blocking(self.score_pairs, pairs, batch_size)

    async def close(self) -> None:
        await super().close()
        if self._count_executor is not None:
            self._count_executor.shutdown(wait=False, cancel_futures=True)
            self._count_executor = None
        self.release()

    def release(self) -> None:
        """Drop the model and free accelerator memory."""
        from rerank_serve.engines._torch import empty_cache

        self._tokenizer = None
        empty_cache(self.device)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "backend": self.config.backend,
            "scoring": self.scoring,
            "device": self.device,
            "fp16": self.fp16,
            "max_length": self.max_length,
            "max_query_tokens": self.query_limit(),
        }


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def create_engine(config: RerankConfig) -> RerankEngine:
    if config.backend == "flag":
        from rerank_serve.engines.flag import FlagRerankEngine

        return FlagRerankEngine(config)
    if config.backend == "cross-encoder":
        from rerank_serve.engines.cross_encoder import CrossEncoderEngine

        return CrossEncoderEngine(config)
    from rerank_serve.engines.bi_encoder import BiEncoderEngine

    return BiEncoderEngine(config)
