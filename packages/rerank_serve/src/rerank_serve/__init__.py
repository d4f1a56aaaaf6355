"""Reranker service: `POST /v1/rerank` (Cohere / Jina / Infinity shape) and KServe V2 on
FlagEmbedding's FlagReranker (production default), sentence-transformers' CrossEncoder, or a
bi-encoder cosine scorer (the offline local default on the packaged MiniLM)."""
