"""Reranker metrics (beside the shared request and batch-size metrics)."""

from serve_common import metrics

DOCUMENTS = metrics.Histogram(
    "rerank_documents_per_request",
    "Documents per rerank request",
    [1, 5, 10, 20, 50, 100, 200, 500, 1000],
    ("model",),
)
PAIRS = metrics.Counter("rerank_pairs_total", "(query, document) pairs scored", ("model",))
TOKENS = metrics.Counter("rerank_tokens_total", "Tokens scored (after truncation)", ("model",))
TRUNCATED = metrics.Counter(
    "rerank_truncated_documents_total", "Documents truncated to max_length", ("model",)
)
