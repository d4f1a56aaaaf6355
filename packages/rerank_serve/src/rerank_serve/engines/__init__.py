"""One module per backend; each imports its library (torch, FlagEmbedding,
sentence-transformers) only when the backend is used."""
