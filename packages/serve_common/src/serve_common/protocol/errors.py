"""OpenAI error body: `{"error": {"message", "type", "param", "code"}}`; V2: `{"error": "..."}`."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class V2ErrorResponse(BaseModel):
    error: str
