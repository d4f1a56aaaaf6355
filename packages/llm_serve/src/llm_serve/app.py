"""What a Serve config's `import_path` points at: `llm_serve.app:build_app`."""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from llm_serve.config import LLMConfig
from llm_serve.server import LLMDeployment
from serve_common.builder import build_service_app


def build_app(args: dict[str, Any]) -> Application:
    """`args`: `LLMConfig` fields (plus an optional `user_config` for hot reload)."""
    return build_service_app(LLMDeployment, LLMConfig, args)
