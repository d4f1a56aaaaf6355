"""Embeddings metrics (beside the shared request metrics)."""

from serve_common import metrics

INPUTS = metrics.Counter("embedding_inputs_total", "Inputs embedded", ("model",))
TOKENS = metrics.Counter("embedding_tokens_total", "Input tokens embedded", ("model",))
TRUNCATED = metrics.Counter(
    "embedding_truncated_total", "Inputs truncated to the limit", ("model",)
)
