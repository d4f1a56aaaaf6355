"""The engine interface every backend implements, and the off-loop runner they share.

Lifecycle: `await engine.load()`, then work, `await engine.check_health()` from the replica's
health check, `await engine.close()` when it is swapped out or the replica stops. Blocking
library calls go through `self.run_blocking(...)`, which runs them on the engine's own worker
thread so the event loop keeps serving health checks, metrics and other requests.
"""

from __future__ import annotations

import asyncio
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Engine(ABC):
    """Base for every backend. Subclasses keep heavy imports inside their own module."""

    #: threads for blocking calls; 1 keeps one model's GPU work serialized.
    worker_threads: int = 1

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self.loaded = False

    @abstractmethod
    async def load(self) -> None:
        """Load weights; raise with a clear message if the model cannot be loaded."""

    async def check_health(self) -> None:
        """Raise if the engine can no longer serve (Serve then replaces the replica)."""
        if not self.loaded:
            raise RuntimeError("engine is not loaded")

    async def close(self) -> None:
        """Release the model and its memory."""
        self.loaded = False
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def gpu_memory_used(self) -> int | None:
        """Bytes of GPU memory this engine holds, or None (CPU, or not measurable).

        The default reads torch's allocator on the engine's `device` attribute (cuda/xpu),
        which is right for torch engines; an engine whose library allocates outside torch
        (CTranslate2, vLLM's engine-core process) overrides it."""
        from serve_common.device import gpu_memory_used_bytes

        return gpu_memory_used_bytes(str(getattr(self, "device", "cpu")))

    def describe(self) -> dict[str, Any]:
        """Facts about the loaded model for `/v1/models` and V2 metadata (dims, max length…)."""
        return {}

    async def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.worker_threads, thread_name_prefix=type(self).__name__
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
