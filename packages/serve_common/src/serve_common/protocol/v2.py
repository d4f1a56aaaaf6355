"""KServe V2 / Open Inference Protocol (REST, JSON).

BYTES tensors carry UTF-8 strings as JSON strings. Binary payloads (audio) are base64 strings;
a tensor says so with `parameters: {"content_type": "base64"}` (audio inputs are always read
as base64, audio outputs are always written as base64 and marked so).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

V2Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]


class _V2Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TensorMetadata(_V2Model):
    name: str
    datatype: V2Datatype
    shape: list[int]


class ServerMetadata(_V2Model):
    name: str
    version: str
    extensions: list[str] = Field(default_factory=list)


class ModelMetadata(_V2Model):
    name: str
    versions: list[str] = Field(default_factory=list)
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] | None = None


class InferTensor(_V2Model):
    name: str
    shape: list[int]
    datatype: V2Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestedOutput(_V2Model):
    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(_V2Model):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferTensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


class InferResponse(_V2Model):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[InferTensor]
