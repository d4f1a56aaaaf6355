"""One error mapping for every service.

Raise an `APIError` subclass anywhere in a request path; `install_error_handlers` turns it,
FastAPI validation errors and anything unexpected into the OpenAI error shape (or the V2 shape
under `/v2/`), with the right status. Unexpected exceptions become a 500 that names the
request id and nothing of the internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("serve_common.errors")


class APIError(Exception):
    """An error a client should see, with its HTTP status and OpenAI `type`/`code`."""

    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(APIError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationError(APIError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"

    def __init__(self, message: str = "Invalid or missing API key.", **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kw)


class ModelNotFoundError(APIError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "model_not_found"

    def __init__(self, model: str, available: list[str] | None = None) -> None:
        hint = f" Available: {', '.join(available)}." if available else ""
        super().__init__(f"The model '{model}' does not exist.{hint}", param="model")


class NotFoundError(APIError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ConflictError(APIError):
    status_code = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class PayloadTooLargeError(APIError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "payload_too_large"


class UnsupportedMediaError(APIError):
    status_code = 415
    error_type = "invalid_request_error"
    default_code = "unsupported_media_type"


class OverloadedError(APIError):
    status_code = 503
    error_type = "server_overloaded"
    default_code = "overloaded"

    def __init__(self, message: str = "The server is busy; retry later.", retry_after_s: int = 1):
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after_s)))})


class NotReadyError(APIError):
    status_code = 503
    error_type = "server_error"
    default_code = "model_not_ready"

    def __init__(self, message: str = "The model is not loaded yet.", retry_after_s: int = 5):
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class EngineError(APIError):
    """The engine failed on a valid request. The message must not carry internals."""

    status_code = 500
    error_type = "server_error"
    default_code = "engine_error"


def is_v2_path(path: str) -> bool:
    return "/v2/" in path or path.endswith("/v2")


def error_response(request: Request, err: APIError) -> JSONResponse:
    headers = dict(err.headers)
    if is_v2_path(request.url.path):
        return JSONResponse({"error": err.message}, status_code=err.status_code, headers=headers)
    return JSONResponse(err.body(), status_code=err.status_code, headers=headers)


_UNION_TAGS = {"str", "int", "float", "bool", "dict", "list", "none", "bytes"}


def _loc_to_param(loc: tuple[Any, ...] | list[Any]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    # Union members show up in the location (`input.list[str].0`): keep the field path only.
    parts = [
        p
        for p in parts
        if p not in _UNION_TAGS
        and not any(c in p for c in "[]()")
        and not p.startswith("function-")
    ]
    return ".".join(parts) or None


def validation_error(exc: RequestValidationError) -> InvalidRequestError:
    errors = exc.errors()
    if not errors:
        return InvalidRequestError("Invalid request.")
    first = errors[0]
    param = _loc_to_param(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        return InvalidRequestError("The request body is not valid JSON.", code="invalid_json")
    if first.get("type") == "missing":
        return InvalidRequestError(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    msg = str(first.get("msg", "Invalid value"))
    return InvalidRequestError(
        f"Invalid value for '{param}': {msg}.", param=param, code="invalid_value"
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cls: type[APIError] = InvalidRequestError
        if exc.status_code == 404:
            err: APIError = NotFoundError(f"No route for {request.method} {request.url.path}.")
        elif exc.status_code == 405:
            err = InvalidRequestError(
                f"Method {request.method} not allowed here.", code="method_not_allowed"
            )
            err.status_code = 405
        else:
            err = cls(str(exc.detail))
            err.status_code = exc.status_code
        return error_response(request, err)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = getattr(request.state, "request_id", None)
        logger.exception("unhandled error in %s (request_id=%s)", request.url.path, rid)
        return error_response(request, EngineError(f"Internal server error (request id {rid})."))
