"""Shared protocol, errors, app factory, metrics, logging and testkit for every model service.

Nothing here imports a model engine: packages and the gateway depend on it without pulling
torch, vLLM or CTranslate2.
"""

from serve_common.errors import (
    APIError,
    AuthenticationError,
    EngineError,
    InvalidRequestError,
    ModelNotFoundError,
    OverloadedError,
    PayloadTooLargeError,
)

__all__ = [
    "APIError",
    "AuthenticationError",
    "EngineError",
    "InvalidRequestError",
    "ModelNotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
]
