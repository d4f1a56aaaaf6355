"""`EmbeddingEngine`: token ids in, vectors out. One subclass per backend in `engines/`.

Text is tokenized once (for limits and usage), and both text and token-id inputs go through
`embed_ids`, so the two are computed identically.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from embed_serve.config import EmbeddingConfig
from serve_common.engine import Engine


class EmbeddingEngine(Engine):
    def __init__(self, config: EmbeddingConfig) -> None:
        super().__init__()
        self.config = config
        self.dimensions = 0
        self.max_tokens = 512
        self.vocab_size = 0
        self.device = "cpu"

    def set_tokenizer(self, tokenizer: Any) -> None:
        """Backends call this once loaded: learns how the tokenizer frames one sequence
        (e.g. `[CLS] ... [SEP]`, `<s> ... </s>`) so raw token ids get the same frame."""
        self.tokenizer = tokenizer
        self.vocab_size = len(tokenizer)
        probe = "hello world"
        full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
        bare = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
        for k in range(len(full) - len(bare) + 1):
            if full[k : k + len(bare)] == bare:
                self._prefix, self._suffix = full[:k], full[k + len(bare) :]
                return
        self._prefix, self._suffix = [], []

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids with the model's special tokens, not truncated (blocking)."""
        return [list(x) for x in self.tokenizer(texts, add_special_tokens=True)["input_ids"]]

    def add_special_tokens(self, ids: list[int]) -> list[int]:
        """Frame raw token ids (a client's pre-tokenized input) as the tokenizer would."""
        return [*self._prefix, *ids, *self._suffix]

    def truncate(self, ids: list[int], max_tokens: int) -> list[int]:
        """Shorten a sequence to `max_tokens`, keeping its closing special token(s)."""
        if len(ids) <= max_tokens:
            return ids
        tail = len(self._suffix)
        return ids[: max_tokens - tail] + ids[len(ids) - tail :] if tail else ids[:max_tokens]

    @abstractmethod
    def embed_ids(self, batch: list[list[int]]) -> np.ndarray:
        """float32 [len(batch), dimensions], normalized as configured (blocking)."""

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "dimensions": self.dimensions,
            "max_tokens": self.max_tokens,
            "backend": self.config.backend,
            "device": self.device,
        }


def create_engine(config: EmbeddingConfig) -> EmbeddingEngine:
    if config.backend == "flag":
        from embed_serve.engines.flag import FlagEmbeddingEngine

        return FlagEmbeddingEngine(config)
    from embed_serve.engines.sentence_transformers import SentenceTransformerEngine

    return SentenceTransformerEngine(config)
