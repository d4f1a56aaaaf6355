"""The FastAPI app factory every service uses: error handlers, the shared middleware,
`/health`, `/v1/models` and the KServe V2 router around the service's own routers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from fastapi import APIRouter, FastAPI

from serve_common.errors import NotReadyError, install_error_handlers
from serve_common.middleware import RequestLimits, ServiceMiddleware
from serve_common.protocol.models import ModelList
from serve_common.v2 import V2Model, v2_router


def create_app(
    *,
    service: str,
    routers: Sequence[APIRouter],
    limits: Callable[[], RequestLimits],
    names: Callable[[], list[str]],
    models: Callable[[], ModelList],
    ready: Callable[[], Awaitable[bool]],
    v2_model: Callable[[], V2Model] | None = None,
) -> FastAPI:
    app = FastAPI(title=f"ai-inference {service}", docs_url="/docs", redoc_url=None)
    install_error_handlers(app)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        if not await ready():
            raise NotReadyError()
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models() -> ModelList:
        return models()

    for router in routers:
        app.include_router(router)
    if v2_model is not None:
        app.include_router(v2_router(names=names, model=v2_model, ready=ready))
    app.add_middleware(ServiceMiddleware, service=service, limits=limits)
    return app
