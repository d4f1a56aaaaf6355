"""The service kinds the platform knows: which package serves each, and its deployment name.

The ingress never imports a model package: it names them by import path only, so the head
node and the gateway need none of the engines installed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceKind:
    kind: str
    package: str  # the distribution an image must install for this service
    import_path: str  # the Serve app builder
    deployment: str  # the deployment (class) name inside that app
    default_route: str


SERVICE_KINDS: dict[str, ServiceKind] = {
    k.kind: k
    for k in (
        ServiceKind("llm", "llm-serve", "llm_serve.app:build_app", "LLMDeployment", "/llm"),
        ServiceKind("stt", "stt-serve", "stt_serve.app:build_app", "SttServer", "/whisper"),
        ServiceKind("tts", "tts-serve", "tts_serve.app:build_app", "TTSServer", "/tts"),
        ServiceKind(
            "embeddings",
            "embed-serve",
            "embed_serve.app:build_app",
            "EmbeddingServer",
            "/embeddings",
        ),
        ServiceKind(
            "reranker", "rerank-serve", "rerank_serve.app:build_app", "RerankServer", "/reranker"
        ),
    )
}

GATEWAY_IMPORT_PATH = "ingress.gateway:build_app"
GATEWAY_APP = "gateway"
GATEWAY_DEPLOYMENT = "Gateway"
