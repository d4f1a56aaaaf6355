"""`import_path: rerank_serve.app:build_app` — what a Serve config points at."""

from __future__ import annotations

from typing import Any

from rerank_serve.config import RerankConfig
from rerank_serve.server import RerankDeployment
from serve_common.builder import build_service_app


def build_app(args: dict[str, Any]) -> Any:
    return build_service_app(RerankDeployment, RerankConfig, args)
