"""`import_path: embed_serve.app:build_app` — what a Serve config points at."""

from __future__ import annotations

from typing import Any

from embed_serve.config import EmbeddingConfig
from embed_serve.server import EmbeddingDeployment
from serve_common.builder import build_service_app


def build_app(args: dict[str, Any]) -> Any:
    return build_service_app(EmbeddingDeployment, EmbeddingConfig, args)
