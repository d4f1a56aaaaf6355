"""rerank_serve."""
