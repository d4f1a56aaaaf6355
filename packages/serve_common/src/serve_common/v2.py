"""KServe V2 / Open Inference Protocol: tensor helpers and the router every service mounts.

A service provides a `V2Model` (metadata + infer); the router adds `/v2`, `/v2/health/*`,
`/v2/models/{name}`, `/v2/models/{name}/ready` and `/v2/models/{name}/infer`. Errors on these
paths use the V2 shape `{"error": "..."}` (see `serve_common.errors`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from fastapi import APIRouter, Request

from serve_common.errors import InvalidRequestError, ModelNotFoundError, NotReadyError
from serve_common.protocol.v2 import (
    InferRequest,
    InferResponse,
    InferTensor,
    ModelMetadata,
    ServerMetadata,
)

SERVER_NAME = "ai-inference"
SERVER_VERSION = "0.1.0"


class V2Model(Protocol):
    def v2_metadata(self, name: str) -> ModelMetadata: ...

    async def v2_infer(self, name: str, request: InferRequest) -> InferResponse: ...


def find_input(request: InferRequest, name: str, *, required: bool = True) -> InferTensor | None:
    for tensor in request.inputs:
        if tensor.name == name:
            return tensor
    if required:
        names = [t.name for t in request.inputs]
        raise InvalidRequestError(f"missing input tensor '{name}' (got {names})", param=name)
    return None


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in data:
        if isinstance(item, list):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


def _check_shape(tensor: InferTensor, count: int) -> None:
    expected = 1
    for dim in tensor.shape:
        if dim < 0:
            raise InvalidRequestError(f"tensor '{tensor.name}' has a negative dimension")
        expected *= dim
    if expected != count:
        raise InvalidRequestError(
            f"tensor '{tensor.name}' has shape {tensor.shape} but {count} elements"
        )


def bytes_as_text(tensor: InferTensor) -> list[str]:
    """A BYTES tensor of UTF-8 strings, flattened."""
    if tensor.datatype != "BYTES":
        raise InvalidRequestError(f"tensor '{tensor.name}' must be BYTES, got {tensor.datatype}")
    data = _flatten(tensor.data)
    _check_shape(tensor, len(data))
    base64_encoded = (tensor.parameters or {}).get("content_type") == "base64"
    out: list[str] = []
    for item in data:
        if not isinstance(item, str):
            raise InvalidRequestError(f"tensor '{tensor.name}' must hold strings")
        out.append(
            _b64decode(tensor.name, item).decode("utf-8", "replace") if base64_encoded else item
        )
    return out


def bytes_as_binary(tensor: InferTensor) -> list[bytes]:
    """A BYTES tensor of binary payloads (audio files), base64-encoded in JSON."""
    if tensor.datatype != "BYTES":
        raise InvalidRequestError(f"tensor '{tensor.name}' must be BYTES, got {tensor.datatype}")
    data = _flatten(tensor.data)
    _check_shape(tensor, len(data))
    out: list[bytes] = []
    for item in data:
        if not isinstance(item, str):
            raise InvalidRequestError(f"tensor '{tensor.name}' must hold base64 strings")
        out.append(_b64decode(tensor.name, item))
    return out


def _b64decode(name: str, value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequestError(f"tensor '{name}' is not valid base64") from exc


def text_tensor(name: str, values: Sequence[str]) -> InferTensor:
    return InferTensor(name=name, shape=[len(values)], datatype="BYTES", data=list(values))


def binary_tensor(name: str, values: Sequence[bytes]) -> InferTensor:
    return InferTensor(
        name=name,
        shape=[len(values)],
        datatype="BYTES",
        parameters={"content_type": "base64"},
        data=[base64.b64encode(v).decode() for v in values],
    )


def fp32_tensor(name: str, rows: Sequence[Sequence[float]] | Sequence[float]) -> InferTensor:
    rows = list(rows)
    if rows and isinstance(rows[0], Sequence):
        width = len(rows[0])  # type: ignore[arg-type]
        flat = [float(x) for row in rows for x in row]  # type: ignore[union-attr]
        return InferTensor(name=name, shape=[len(rows), width], datatype="FP32", data=flat)
    return InferTensor(name=name, shape=[len(rows)], datatype="FP32", data=[float(x) for x in rows])  # type: ignore[arg-type]


def v2_router(
    *,
    names: Callable[[], list[str]],
    model: Callable[[], V2Model],
    ready: Callable[[], Awaitable[bool]],
) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["kserve-v2"])

    def check(name: str) -> None:
        if name not in names():
            raise ModelNotFoundError(name, names())

    @router.get("")
    async def server_metadata() -> ServerMetadata:
        return ServerMetadata(
            name=SERVER_NAME, version=SERVER_VERSION, extensions=["model_repository_list"]
        )

    @router.get("/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @router.get("/health/ready")
    async def server_ready() -> dict[str, bool]:
        if not await ready():
            raise NotReadyError()
        return {"ready": True}

    @router.get("/models/{name}")
    async def metadata(name: str) -> ModelMetadata:
        check(name)
        return model().v2_metadata(name)

    @router.get("/models/{name}/ready")
    async def model_ready(name: str) -> dict[str, Any]:
        check(name)
        if not await ready():
            raise NotReadyError()
        return {"name": name, "ready": True}

    @router.post("/models/{name}/infer")
    async def infer(name: str, body: InferRequest, request: Request) -> InferResponse:
        check(name)
        request.state.model = name
        response = await model().v2_infer(name, body)
        response.id = body.id
        return response

    return router
