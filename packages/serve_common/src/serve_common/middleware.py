"""One pure-ASGI middleware for every service: request id, auth, body limit, admission
control (503 + Retry-After instead of an unbounded queue) and the JSON access log.

Pure ASGI (not `BaseHTTPMiddleware`) so streamed responses pass through untouched.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from serve_common import metrics
from serve_common.errors import (
    APIError,
    AuthenticationError,
    OverloadedError,
    PayloadTooLargeError,
    is_v2_path,
)
from serve_common.logs import log_request

Scope = dict[str, Any]
Message = dict[str, Any]

OPEN_SUFFIXES = ("/health", "/healthz", "/v2/health/live", "/v2/health/ready", "/metrics")
REQUEST_ID_HEADER = b"x-request-id"


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k.lower() == name:
            return v.decode("latin-1")
    return None


def _serve_request_id() -> str:
    """The request id Ray Serve's proxy assigned (it echoes it as `x-request-id` itself)."""
    try:
        from ray.serve.context import _get_serve_request_context

        return str(_get_serve_request_context().request_id or "")
    except Exception:
        return ""


def _is_open(path: str) -> bool:
    return path.rstrip("/").endswith(OPEN_SUFFIXES) or path.rstrip("/") in ("", "/v2")


class RequestLimits:
    """Mutable limits the middleware reads on every request (hot reload swaps them)."""

    def __init__(
        self, *, api_keys: set[str], max_body_bytes: int, max_concurrent: int, retry_after_s: int
    ) -> None:
        self.api_keys = api_keys
        self.max_body_bytes = max_body_bytes
        self.max_concurrent = max_concurrent
        self.retry_after_s = retry_after_s


class ServiceMiddleware:
    def __init__(
        self, app: Callable[..., Any], *, service: str, limits: Callable[[], RequestLimits]
    ) -> None:
        self.app = app
        self.service = service
        self.limits = limits
        self.inflight = 0

    async def _send_error(
        self, send: Callable[..., Any], path: str, err: APIError, rid: str
    ) -> None:
        if is_v2_path(path):
            body = json.dumps({"error": err.message}).encode()
        else:
            body = json.dumps(err.body()).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if not _serve_request_id():
            headers.append((REQUEST_ID_HEADER, rid.encode()))
        headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
        await send({"type": "http.response.start", "status": err.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(
        self, scope: Scope, receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path: str = scope.get("path", "")
        serve_rid = _serve_request_id()
        rid = _header(scope, REQUEST_ID_HEADER) or serve_rid or uuid.uuid4().hex
        # Behind Serve's proxy the response already carries x-request-id; outside it, we add it.
        echo_id = not serve_rid
        scope.setdefault("state", {})["request_id"] = rid
        limits = self.limits()
        status = {"code": 500}
        open_path = _is_open(path)

        def finish() -> None:
            latency_ms = (time.perf_counter() - start) * 1000
            state = scope.get("state", {})
            matched = scope.get("route")
            route = state.get("route") or getattr(matched, "path", None) or path
            log_request(
                request_id=rid,
                service=self.service,
                method=scope.get("method"),
                path=path,
                route=route,
                model=state.get("model"),
                status=status["code"],
                latency_ms=round(latency_ms, 2),
            )
            tags = {"service": self.service, "route": route, "status": str(status["code"])}
            # `model` is set only once the name is known to be served: bounded cardinality.
            metrics.REQUESTS.inc(tags={**tags, "model": str(state.get("model") or "")})
            metrics.REQUEST_LATENCY_MS.observe(latency_ms, tags=tags)

        err: APIError | None = None
        if not open_path and limits.api_keys:
            auth = _header(scope, b"authorization") or ""
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            token = token or (_header(scope, b"api-key") or "")
            if not any(hmac.compare_digest(token, k) for k in limits.api_keys):
                err = AuthenticationError()
        if err is None:
            length = _header(scope, b"content-length")
            if length and length.isdigit() and int(length) > limits.max_body_bytes:
                err = PayloadTooLargeError(
                    f"Request body of {length} bytes exceeds the limit of "
                    f"{limits.max_body_bytes} bytes."
                )
        if err is None and not open_path and self.inflight >= limits.max_concurrent:
            metrics.REJECTED.inc(tags={"service": self.service})
            err = OverloadedError(retry_after_s=limits.retry_after_s)
        if err is not None:
            status["code"] = err.status_code
            await self._send_error(send, path, err, rid)
            finish()
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > limits.max_body_bytes:
                    raise PayloadTooLargeError(
                        f"Request body exceeds the limit of {limits.max_body_bytes} bytes."
                    )
            return message

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                if echo_id:
                    headers = list(message.get("headers", []))
                    message["headers"] = [*headers, (REQUEST_ID_HEADER, rid.encode())]
            await send(message)

        if not open_path:
            self.inflight += 1
            metrics.INFLIGHT.set(self.inflight, tags={"service": self.service})
        try:
            await self.app(scope, limited_receive, tracked_send)
        finally:
            if not open_path:
                self.inflight -= 1
                metrics.INFLIGHT.set(self.inflight, tags={"service": self.service})
            finish()
