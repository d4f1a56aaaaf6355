"""The gateway at `/`: one base URL for every model.

- `/v1/*` is routed by the request's `model` (JSON body or multipart field) to the application
  that serves it, through a Serve handle; the app runs the request through its own FastAPI app
  (`ModelServer.forward`), so validation, errors and streaming are identical on both paths.
- `/v1/models` aggregates every application's models; `/v2/models/{name}/...` is routed by
  name; `/v2`, `/v2/health/*` and `/healthz` answer for the platform.

The direct routes (`/embeddings/...`) stay the fast path; the gateway costs one handle hop.
No model code is imported here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from ray import serve
from starlette.formparsers import MultiPartParser

from serve_common.errors import (
    APIError,
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    NotReadyError,
    install_error_handlers,
)
from serve_common.middleware import RequestLimits, ServiceMiddleware
from serve_common.protocol.models import ModelList
from serve_common.v2 import SERVER_NAME, SERVER_VERSION

logger = logging.getLogger("ingress.gateway")

# When a request names no model, the path says which kind of service owns it.
PATH_KINDS: list[tuple[str, str]] = [
    ("/v1/chat/completions", "llm"),
    ("/v1/completions", "llm"),
    ("/v1/embeddings", "embeddings"),
    ("/v1/rerank", "reranker"),
    ("/v1/audio/transcriptions", "stt"),
    ("/v1/audio/translations", "stt"),
    ("/v1/audio/speech", "tts"),
    ("/v1/audio/voices", "tts"),
]
HOP_HEADERS = {b"host", b"content-length", b"transfer-encoding", b"connection"}


class GatewayConfig(BaseModel):
    routes: dict[str, str] = Field(description="model name or alias → application name")
    apps: dict[str, str] = Field(description="application name → service kind")
    api_keys: list[str] = Field(default_factory=list)
    api_keys_env: str | None = None
    api_keys_file: str | None = None
    max_body_bytes: int = 64 * 1024 * 1024
    max_concurrent_requests: int = 1024
    retry_after_s: int = 1
    call_timeout_s: float = 10.0


def _response_headers(raw: list[list[bytes]]) -> dict[str, str]:
    """An upstream response's headers, less hop-by-hop ones and the request id (the
    gateway's middleware sets its own, the same id)."""
    return {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in raw
        if k.lower() not in HOP_HEADERS and k.lower() != b"x-request-id"
    }


#: routes whose responses stream progressively even when the client did not set `stream`
STREAMING_PATHS = ("/audio/speech", "/generate_stream")


def _is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1", "sse"))


async def _inspect_body(request: Request, body: bytes) -> tuple[str | None, bool]:
    """The `model` the client asked for (JSON or multipart body, or `?model=`) and whether
    it asked for a streamed response (`stream` / `stream_format: sse`)."""
    ctype = request.headers.get("content-type", "")
    fields: Any = None
    if not body:
        return request.query_params.get("model"), False
    if ctype.startswith("multipart/form-data"):

        async def stream() -> AsyncIterator[bytes]:
            yield body

        try:
            form = await MultiPartParser(request.headers, stream()).parse()
        except Exception:
            return None, False
        fields = {k: form.get(k) for k in ("model", "stream", "stream_format")}
        await form.close()
    else:
        try:
            fields = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None, False
    if not isinstance(fields, dict):
        return None, False
    model = fields.get("model")
    streamed = _is_true(fields.get("stream")) or _is_true(fields.get("stream_format"))
    return (model if isinstance(model, str) else None), streamed


class Gateway:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = GatewayConfig.model_validate(config)
        from serve_common.config import ServiceConfig

        keys = ServiceConfig(
            model="gateway",
            api_keys=self.config.api_keys,
            api_keys_env=self.config.api_keys_env,
            api_keys_file=self.config.api_keys_file,
        ).resolved_api_keys()
        self.limits = RequestLimits(
            api_keys=keys,
            max_body_bytes=self.config.max_body_bytes,
            max_concurrent=self.config.max_concurrent_requests,
            retry_after_s=self.config.retry_after_s,
        )
        self._handles: dict[str, Any] = {}

    # ---- routing ---------------------------------------------------------------------------
    def handle(self, app: str) -> Any:
        if app not in self._handles:
            self._handles[app] = serve.get_app_handle(app)
        return self._handles[app]

    def app_for(self, path: str, model: str | None) -> str:
        if model:
            app = self.config.routes.get(model)
            if app is None:
                raise ModelNotFoundError(model, sorted(self.config.routes))
            return app
        for prefix, kind in PATH_KINDS:
            if path == prefix or path.startswith(prefix + "/"):
                apps = [a for a, k in self.config.apps.items() if k == kind]
                if len(apps) == 1:
                    return apps[0]
                break
        else:
            raise NotFoundError(f"No route for {path}.")
        raise InvalidRequestError(
            "Missing required parameter: 'model'.", param="model", code="missing_required_parameter"
        )

    async def forward(
        self, request: Request, app: str, body: bytes, *, streamed: bool = True
    ) -> Response:
        rid = getattr(request.state, "request_id", "")
        headers = [
            [k, v]
            for k, v in request.scope["headers"]
            if k.lower() not in HOP_HEADERS and k.lower() != b"x-request-id"
        ]
        headers.append([b"x-request-id", rid.encode()])
        headers.append([b"content-length", str(len(body)).encode()])
        payload = {
            "method": request.method,
            "path": request.url.path,
            "query": request.scope.get("query_string", b""),
            "headers": headers,
            "body": body,
            "client": list(request.client) if request.client else None,
        }
        if not streamed and not request.url.path.endswith(STREAMING_PATHS):
            return await self._forward_buffered(app, payload)
        try:
            gen = self.handle(app).options(stream=True).forward.remote(payload)
            head = await gen.__anext__()
        except APIError:
            raise
        except Exception as exc:
            logger.warning("gateway: app %s unavailable: %s", app, exc)
            raise NotReadyError(f"The '{app}' service is not available right now.") from None

        async def body_iter() -> AsyncIterator[bytes]:
            try:
                async for chunk in gen:
                    yield chunk
            finally:
                gen.cancel()

        return StreamingResponse(
            body_iter(), status_code=head["status"], headers=_response_headers(head["headers"])
        )

    async def _forward_buffered(self, app: str, payload: dict[str, Any]) -> Response:
        """One handle call for the whole response (no per-chunk round trips)."""
        try:
            out = await self.handle(app).forward_buffered.remote(payload)
        except APIError:
            raise
        except Exception as exc:
            logger.warning("gateway: app %s unavailable: %s", app, exc)
            raise NotReadyError(f"The '{app}' service is not available right now.") from None
        return Response(
            content=out["body"],
            status_code=out["status"],
            headers=_response_headers(out["headers"]),
        )

    async def collect_models(self) -> ModelList:
        async def one(app: str) -> list[dict[str, Any]]:
            try:
                resp = await asyncio.wait_for(
                    self.handle(app).list_models.remote(), self.config.call_timeout_s
                )
                return list(resp["data"])
            except Exception as exc:
                logger.warning("gateway: %s did not list its models: %s", app, exc)
                return []

        parts = await asyncio.gather(*(one(app) for app in self.config.apps))
        return ModelList.model_validate({"data": [m for part in parts for m in part]})

    async def app_statuses(self) -> dict[str, str]:
        try:
            status = await asyncio.to_thread(serve.status)
            return {
                name: str(status.applications[name].status).split(".")[-1]
                if name in status.applications
                else "NOT_DEPLOYED"
                for name in self.config.apps
            }
        except Exception as exc:  # pragma: no cover - controller unreachable
            logger.warning("gateway: serve.status failed: %s", exc)
            return {}

    # ---- the app -----------------------------------------------------------------------------
    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_gateway_app(self)


def build_gateway_app(gw: Gateway) -> FastAPI:
    app = FastAPI(title="ai-inference gateway", docs_url="/docs", redoc_url=None)
    install_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "applications": await gw.app_statuses()}

    @app.get("/v1/models")
    async def models() -> ModelList:
        return await gw.collect_models()

    @app.get("/v2")
    async def v2_metadata() -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": []}

    @app.get("/v2/health/live")
    async def v2_live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def v2_ready() -> JSONResponse:
        statuses = await gw.app_statuses()
        ready = bool(statuses) and all(s == "RUNNING" for s in statuses.values())
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    @app.get("/v2/models")
    async def v2_models() -> dict[str, Any]:
        return {"models": sorted(gw.config.routes)}

    @app.api_route("/v2/models/{name}", methods=["GET"])
    @app.api_route("/v2/models/{name}/{rest:path}", methods=["GET", "POST"])
    async def v2_model(request: Request, name: str, rest: str = "") -> StreamingResponse:
        app_name = gw.config.routes.get(name)
        if app_name is None:
            raise ModelNotFoundError(name, sorted(gw.config.routes))
        request.state.model = name
        return await gw.forward(request, app_name, await request.body(), streamed=False)

    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "DELETE"])
    async def v1(request: Request, rest: str) -> StreamingResponse:
        body = await request.body()
        model, streamed = await _inspect_body(request, body)
        app_name = gw.app_for(request.url.path, model)
        request.state.model = model
        return await gw.forward(request, app_name, body, streamed=streamed)

    app.add_middleware(ServiceMiddleware, service="gateway", limits=lambda: gw.limits)
    return app


GatewayDeployment = serve.deployment(
    name="Gateway", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=512
)(serve.ingress()(Gateway))


def build_app(args: dict[str, Any]) -> Any:
    GatewayConfig.model_validate(args)
    return GatewayDeployment.bind(args)
