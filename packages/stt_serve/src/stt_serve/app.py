"""`import_path: stt_serve.app:build_app` — what a Serve config points at."""

from __future__ import annotations

from typing import Any

from serve_common.builder import build_service_app
from stt_serve.config import SttConfig
from stt_serve.server import SttDeployment


def build_app(args: dict[str, Any]) -> Any:
    return build_service_app(SttDeployment, SttConfig, args)
