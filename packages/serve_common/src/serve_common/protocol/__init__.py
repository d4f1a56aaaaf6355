"""Wire schemas (pydantic v2): OpenAI, Cohere/Jina rerank and KServe V2 / Open Inference Protocol.

One module per API: `models`, `errors`, `embeddings`, `chat`, `completions`, `audio`, `rerank`,
`v2`. Requests forbid nothing they do not understand unless the OpenAI SDK is known to send it:
unknown fields are ignored, as OpenAI does, so newer SDKs keep working.
"""
