"""LLM metrics on Ray's Prometheus endpoint (fed from vLLM's per-iteration stats)."""

from __future__ import annotations

from serve_common import metrics

TTFT_BOUNDARIES_MS = [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]

PROMPT_TOKENS = metrics.Counter("llm_prompt_tokens_total", "Prompt tokens processed", ("model",))
GENERATION_TOKENS = metrics.Counter("llm_generation_tokens_total", "Tokens generated", ("model",))
TTFT_MS = metrics.Histogram(
    "llm_time_to_first_token_ms", "Time to first token (ms)", TTFT_BOUNDARIES_MS, ("model",)
)
FINISHED = metrics.Counter(
    "llm_requests_finished_total", "Finished generations by reason", ("model", "reason")
)
RUNNING = metrics.Gauge("llm_running_requests", "Sequences being generated", ("model",))
WAITING = metrics.Gauge("llm_waiting_requests", "Sequences queued in the engine", ("model",))
KV_CACHE_USAGE = metrics.Gauge("llm_kv_cache_usage", "KV cache usage (0-1)", ("model",))
