"""Metrics on Ray's Prometheus endpoint, via `ray.util.metrics`.

Outside a Ray worker (unit tests, scripts) every call is a no-op, so code never needs to
check. Names are prefixed `ai_inference_`; Ray adds `ray_` when it exports them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger("serve_common.metrics")

LATENCY_BOUNDARIES_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000]
SIZE_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def _ray_ready() -> bool:
    try:
        import ray

        return ray.is_initialized()
    except Exception:  # pragma: no cover - ray is a dependency, but stay harmless
        return False


class _Metric:
    def __init__(
        self,
        kind: str,
        name: str,
        description: str,
        tag_keys: Sequence[str],
        boundaries: Sequence[float] | None = None,
    ) -> None:
        self.kind, self.name, self.description = kind, f"ai_inference_{name}", description
        self.tag_keys = tuple(tag_keys)
        self.boundaries = list(boundaries or [])
        self._impl: Any = None
        self._failed = False

    def _get(self) -> Any:
        if self._impl is None and not self._failed and _ray_ready():
            try:
                from ray.util import metrics as rm

                if self.kind == "counter":
                    self._impl = rm.Counter(self.name, self.description, tag_keys=self.tag_keys)
                elif self.kind == "gauge":
                    self._impl = rm.Gauge(self.name, self.description, tag_keys=self.tag_keys)
                else:
                    self._impl = rm.Histogram(
                        self.name,
                        self.description,
                        boundaries=self.boundaries,
                        tag_keys=self.tag_keys,
                    )
            except Exception:
                logger.warning("metric %s unavailable", self.name, exc_info=True)
                self._failed = True
        return self._impl

    def _tags(self, tags: dict[str, str] | None) -> dict[str, str]:
        tags = tags or {}
        return {k: str(tags.get(k, "")) for k in self.tag_keys}


class Counter(_Metric):
    def __init__(self, name: str, description: str, tag_keys: Sequence[str] = ()) -> None:
        super().__init__("counter", name, description, tag_keys)

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        impl = self._get()
        if impl is not None and value > 0:
            impl.inc(value, tags=self._tags(tags))


class Gauge(_Metric):
    def __init__(self, name: str, description: str, tag_keys: Sequence[str] = ()) -> None:
        super().__init__("gauge", name, description, tag_keys)

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        impl = self._get()
        if impl is not None:
            impl.set(value, tags=self._tags(tags))


class Histogram(_Metric):
    def __init__(
        self, name: str, description: str, boundaries: Sequence[float], tag_keys: Sequence[str] = ()
    ) -> None:
        super().__init__("histogram", name, description, tag_keys, boundaries)

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        impl = self._get()
        if impl is not None:
            impl.observe(value, tags=self._tags(tags))


# Shared by every service (recorded by the app factory's middleware).
REQUESTS = Counter(
    "requests_total",
    "HTTP requests by service, route, model (the name the client asked for) and status",
    ("service", "route", "model", "status"),
)
REQUEST_LATENCY_MS = Histogram(
    "request_latency_ms", "HTTP request latency (ms)", LATENCY_BOUNDARIES_MS, ("service", "route")
)
INFLIGHT = Gauge("inflight_requests", "Requests in flight in this replica", ("service",))
REJECTED = Counter("rejected_total", "Requests refused by admission control (503)", ("service",))
BATCH_SIZE = Histogram(
    "batch_size", "Items per engine batch", SIZE_BOUNDARIES, ("service", "model")
)
GPU_MEMORY_USED = Gauge(
    "gpu_memory_used_bytes", "GPU memory allocated by this replica", ("service", "model")
)
GPU_MEMORY_BUDGET = Gauge(
    "gpu_memory_budget_fraction", "GPU fraction budget of this replica", ("service", "model")
)
MODEL_RELOADS = Counter("model_reloads_total", "Hot reloads by outcome", ("service", "outcome"))
