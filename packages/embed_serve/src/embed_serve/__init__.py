"""Embeddings service:
OpenAI /v1/embeddings and KServe V2 on sentence-transformers or FlagEmbedding."""
