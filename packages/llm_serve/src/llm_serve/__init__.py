"""llm_serve: an LLM service on Ray Serve — vLLM's async engine inside the replica, behind
vLLM's own OpenAI serving layer, with the platform's shared protocol (errors, auth, limits,
KServe V2, metrics). Heavy imports (vllm, torch) happen only in `llm_serve.engines.vllm` and
`llm_serve.models`."""
