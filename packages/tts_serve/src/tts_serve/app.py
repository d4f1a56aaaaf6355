"""`import_path: tts_serve.app:build_app` — what a Serve config points at."""

from __future__ import annotations

from typing import Any

from serve_common.builder import build_service_app
from tts_serve.config import TTSConfig
from tts_serve.server import TTSDeployment


def build_app(args: dict[str, Any]) -> Any:
    return build_service_app(TTSDeployment, TTSConfig, args)
