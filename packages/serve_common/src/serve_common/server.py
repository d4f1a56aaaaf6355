"""`ModelServer`: the base of every service's Serve deployment.

It owns one engine, builds the FastAPI app (`__serve_build_asgi_app__`, used by
`@serve.ingress()`), reloads in place on `reconfigure(user_config)`, answers Serve's health
check, and lets the gateway run a request through the same app in-process (`forward`).

A package's server subclasses it, sets `service` and `config_cls`, and implements
`create_engine()` and `routers()` (plus `v2_metadata`/`v2_infer` for KServe V2).

Hot reload: a `user_config` that changes nothing the model depends on is applied at once; one
that does loads a new engine beside the old one (reload_strategy=swap), switches, waits for
the requests that started before the switch to finish (`reload_drain_timeout_s`), then closes
the old one, so no request fails and none stalls on a single replica. With
reload_strategy=replace the old engine stops taking requests first (new ones wait for the new
engine or get 503 + Retry-After), drains, and is closed before the new one loads. Calling it
again with the same config does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Generic, TypeVar

from fastapi import APIRouter, FastAPI, Request

from serve_common import metrics
from serve_common.app import create_app
from serve_common.config import ServiceConfig
from serve_common.engine import Engine
from serve_common.errors import InvalidRequestError, ModelNotFoundError, NotReadyError
from serve_common.middleware import RequestLimits
from serve_common.protocol.models import ModelCard, ModelList
from serve_common.protocol.v2 import InferRequest, InferResponse, ModelMetadata

logger = logging.getLogger("serve_common.server")


class RequestGenerations:
    """Counts the replica's requests by the engine generation they started under, so that a
    swapped-out engine is closed only once the requests that may use it have finished."""

    def __init__(self) -> None:
        self.current = 0
        self._active: dict[int, int] = {}

    @contextlib.contextmanager
    def track(self) -> Any:
        generation = self.current
        self._active[generation] = self._active.get(generation, 0) + 1
        try:
            yield
        finally:
            left = self._active[generation] - 1
            if left:
                self._active[generation] = left
            else:
                del self._active[generation]

    def advance(self) -> int:
        """Start a new generation; return the one that ended."""
        self.current += 1
        return self.current - 1

    def running(self, up_to: int) -> int:
        return sum(n for gen, n in self._active.items() if gen <= up_to)

    async def drained(self, up_to: int, timeout_s: float) -> bool:
        """Wait until no request of generation `up_to` or older is running."""
        deadline = time.monotonic() + timeout_s
        while self.running(up_to):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True


class _TrackRequests:
    """ASGI middleware: every HTTP request (direct, or forwarded by the gateway) counted."""

    def __init__(self, app: Any, generations: RequestGenerations) -> None:
        self.app = app
        self.generations = generations

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.generations.track():
            await self.app(scope, receive, send)


ConfigT = TypeVar("ConfigT", bound=ServiceConfig)
EngineT = TypeVar("EngineT", bound=Engine)


class ModelServer(ABC, Generic[ConfigT, EngineT]):
    service: ClassVar[str]
    config_cls: ClassVar[type[ServiceConfig]]

    def __init__(self, config: dict[str, Any] | ServiceConfig) -> None:
        self.base_config: ConfigT = self.config_cls.model_validate(
            config.model_dump() if isinstance(config, ServiceConfig) else config
        )  # type: ignore[assignment]
        self.config: ConfigT = self.base_config
        self._engine: EngineT | None = None
        self._reload_lock = asyncio.Lock()
        self._app: FastAPI | None = None
        self._limits = self._make_limits(self.config)
        self._last_user_config: dict[str, Any] | None = None
        self._generations = RequestGenerations()

    # ---- what a package implements -------------------------------------------------------
    @abstractmethod
    def create_engine(self, config: ConfigT) -> EngineT:
        """A new, not yet loaded engine for `config`."""

    @abstractmethod
    def routers(self) -> list[APIRouter]:
        """The service's OpenAI routes; handlers call `self.engine_for(request, model)`."""

    def v2_metadata(self, name: str) -> ModelMetadata:
        raise NotImplementedError

    async def v2_infer(self, name: str, request: InferRequest) -> InferResponse:
        raise NotImplementedError

    def has_v2(self) -> bool:
        return type(self).v2_infer is not ModelServer.v2_infer

    # ---- engine and names ------------------------------------------------------------------
    @property
    def engine(self) -> EngineT:
        if self._engine is None or not self._engine.loaded:
            raise NotReadyError()
        return self._engine

    async def ensure_loaded(self) -> EngineT:
        """The engine, loading it first if Serve gave no user_config (no reconfigure call)."""
        if self._engine is None:
            async with self._reload_lock:
                if self._engine is None:
                    self._engine = await self._load(self.config)
        return self.engine

    def check_model(self, name: str | None, request: Request | None = None) -> str:
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(
                "Missing required parameter: 'model'.",
                param="model",
                code="missing_required_parameter",
            )
        if name not in self.config.names:
            raise ModelNotFoundError(name, self.config.names)
        if request is not None:
            request.state.model = name
        return name

    def model_list(self) -> ModelList:
        info = self._engine.describe() if self._engine is not None else {}
        return ModelList(
            data=[
                ModelCard(id=name, task=self.service, root=info.get("model", self.config.model))
                for name in self.config.names
            ]
        )

    # ---- Serve hooks -----------------------------------------------------------------------
    async def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        async with self._reload_lock:
            user_config = dict(user_config or {})
            if user_config == self._last_user_config and self._engine is not None:
                return
            new_config: ConfigT = self.base_config.merged(user_config)  # type: ignore[assignment]
            needs_engine = (
                self._engine is None
                or new_config.engine_signature() != self.config.engine_signature()
            )
            if needs_engine:
                await self._swap_engine(new_config)
            self.config = new_config
            self._limits = self._make_limits(new_config)
            self._last_user_config = user_config

    async def _drain(self, generation: int, config: ConfigT) -> None:
        running = self._generations.running(generation)
        if not running:
            return
        logger.info("%s: waiting for %d request(s) on the old model", self.service, running)
        if not await self._generations.drained(generation, config.reload_drain_timeout_s):
            logger.warning(
                "%s: %d request(s) still running on the old model after %.0fs; closing it",
                self.service,
                self._generations.running(generation),
                config.reload_drain_timeout_s,
            )

    async def _swap_engine(self, new_config: ConfigT) -> None:
        old = self._engine
        if old is not None and new_config.reload_strategy == "replace":
            self._engine = None
            await self._drain(self._generations.advance(), new_config)
            await old.close()
            old = None
        started = time.perf_counter()
        try:
            new = await self._load(new_config)
        except Exception:
            metrics.MODEL_RELOADS.inc(tags={"service": self.service, "outcome": "failed"})
            if old is not None:
                logger.exception("reload failed; keeping the previous model")
            raise
        self._engine = new
        metrics.GPU_MEMORY_BUDGET.set(new_config.gpu_memory_fraction or 0.0, tags=self._tags())
        if old is not None:
            await self._drain(self._generations.advance(), new_config)
            await old.close()
            metrics.MODEL_RELOADS.inc(tags={"service": self.service, "outcome": "ok"})
        logger.info(
            "%s: model %s ready in %.1fs",
            self.service,
            new_config.model,
            time.perf_counter() - started,
        )

    async def _load(self, config: ConfigT) -> EngineT:
        engine = self.create_engine(config)
        await engine.load()
        engine.loaded = True
        return engine

    async def check_health(self) -> None:
        if self._engine is None:
            if self._reload_lock.locked():
                return  # first load in progress; Serve's initial health checks wait for it
            raise RuntimeError("no engine loaded")
        await self._engine.check_health()
        used = self._engine.gpu_memory_used()
        if used is not None:
            metrics.GPU_MEMORY_USED.set(float(used), tags=self._tags())

    def _tags(self) -> dict[str, str]:
        return {"service": self.service, "model": self.config.primary_name}

    async def ready(self) -> bool:
        return self._engine is not None and self._engine.loaded

    def __serve_build_asgi_app__(self) -> FastAPI:
        self._app = create_app(
            service=self.service,
            routers=self.routers(),
            limits=lambda: self._limits,
            names=lambda: self.config.names,
            models=self.model_list,
            ready=self.ready,
            v2_model=(lambda: self) if self.has_v2() else None,  # type: ignore[arg-type,return-value]
        )
        self._app.add_middleware(_TrackRequests, generations=self._generations)
        return self._app

    @property
    def app(self) -> FastAPI:
        return self._app or self.__serve_build_asgi_app__()

    @staticmethod
    def _make_limits(config: ServiceConfig) -> RequestLimits:
        return RequestLimits(
            api_keys=config.resolved_api_keys(),
            max_body_bytes=config.max_body_bytes,
            max_concurrent=config.max_concurrent_requests,
            retry_after_s=config.retry_after_s,
        )

    async def engine_info(self) -> dict[str, Any]:
        """For operators and tests (through a handle): which model runs, and how many engine
        switches this replica has made (hot reloads)."""
        return {
            "service": self.service,
            "model": self.config.model,
            "generation": self._generations.current,
            "loaded": self._engine is not None and self._engine.loaded,
            "running_requests": self._generations.running(self._generations.current),
        }

    # ---- gateway entry points (called through a DeploymentHandle) ---------------------------
    async def served_names(self) -> list[str]:
        return list(self.config.names)

    async def list_models(self) -> dict[str, Any]:
        return self.model_list().model_dump()

    async def forward(self, request: dict[str, Any]) -> AsyncIterator[Any]:
        """Run one HTTP request through this replica's app; yield the head, then body chunks.

        `request`: method, path (app-relative, e.g. `/v1/embeddings`), query (bytes),
        headers (list of [name, value] bytes), body (bytes). The first item yielded is
        `{"status": int, "headers": [[name, value], ...]}`; the rest are `bytes`.
        """
        from serve_common.forward import run_asgi

        async for item in run_asgi(self.app, request):
            yield item

    async def forward_buffered(self, request: dict[str, Any]) -> dict[str, Any]:
        """`forward` for a response the client does not stream: one call, the whole response
        (`{"status", "headers", "body"}`)."""
        from serve_common.forward import collect_asgi

        return await collect_asgi(self.app, request)
