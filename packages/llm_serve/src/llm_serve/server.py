"""The LLM Serve deployment: OpenAI chat/completions, KServe V2 infer and generate.

Routes (under the app's route prefix, `/llm` in the fleets):
- `POST /v1/chat/completions`, `POST /v1/completions` — OpenAI, streamed as SSE when
  `stream` is true; everything vLLM's OpenAI server accepts (n, stop, seed, logprobs,
  response_format json_schema, tools/tool_choice, stream_options.include_usage, ...).
- `GET /v1/models`, `/health`, `/v2/...` from `ModelServer`; V2 `infer` plus the generate
  extension (`/v2/models/{name}/generate`, `generate_stream`), see `llm_serve.kserve`.

The response's `model` is the primary served name whichever alias the client used (the
same name `/v1/models` lists first). A client that disconnects cancels its handler, which
aborts its generation in the engine; a dead engine fails `check_health`, so Serve replaces
the replica.
"""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve

from llm_serve import kserve
from llm_serve.config import LLMConfig
from llm_serve.engine import LLMEngine, LLMResult
from serve_common.errors import InvalidRequestError
from serve_common.protocol.v2 import InferRequest, InferResponse, ModelMetadata
from serve_common.server import ModelServer
from serve_common.sse import SSE_HEADERS, SSE_MEDIA_TYPE


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidRequestError(
            "The request body is not valid JSON.", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.", code="invalid_json")
    return body


async def _encode(events: Any) -> Any:
    async for chunk in events:
        yield chunk.encode()


def _response(result: LLMResult) -> Response:
    if isinstance(result, dict):
        return JSONResponse(result)
    return StreamingResponse(_encode(result), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)


class LLMServer(ModelServer[LLMConfig, LLMEngine]):
    service = "llm"
    config_cls = LLMConfig

    def create_engine(self, config: LLMConfig) -> LLMEngine:
        if config.backend == "vllm":
            from llm_serve.engines.vllm import VLLMEngine

            return VLLMEngine(config)
        raise ValueError(f"unknown LLM backend {config.backend!r}")  # pragma: no cover

    async def reconfigure(self, user_config: dict[str, Any] | None) -> None:
        await super().reconfigure(user_config)
        if self._engine is not None:
            self._engine.set_served_name(self.config.primary_name)

    async def _openai(self, request: Request, kind: str) -> Response:
        body = await _json_object(request)
        self.check_model(body.get("model"), request)
        engine = await self.ensure_loaded()
        # vLLM's serving layer knows the model by its primary name only.
        body["model"] = self.config.primary_name
        if kind == "chat":
            result = await engine.chat_completion(body, request)
        else:
            result = await engine.completion(body, request)
        return _response(result)

    def routers(self) -> list[APIRouter]:
        router = APIRouter(tags=["openai"])

        @router.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Response:
            return await self._openai(request, "chat")

        @router.post("/v1/completions")
        async def completions(request: Request) -> Response:
            return await self._openai(request, "completion")

        def check_v2(name: str, request: Request) -> str:
            return self.check_model(name, request)

        generate = kserve.generate_router(
            check=check_v2,
            engine=self.ensure_loaded,
            served_name=lambda: self.config.primary_name,
        )
        return [router, generate]

    # ---- KServe V2 -------------------------------------------------------------------------
    def v2_metadata(self, name: str) -> ModelMetadata:
        info = self._engine.describe() if self._engine is not None else {}
        return kserve.metadata(name, info)

    async def v2_infer(self, name: str, request: InferRequest) -> InferResponse:
        engine = await self.ensure_loaded()
        return await kserve.infer(engine, self.config.primary_name, name, request)

    # ---- for tests and operators (through a deployment handle) -----------------------------
    async def engine_stats(self) -> dict[str, Any]:
        engine = self._engine
        return {
            "pid": os.getpid(),
            "loaded": engine is not None and engine.loaded,
            "unfinished_requests": engine.unfinished_requests() if engine is not None else 0,
            **(engine.describe() if engine is not None else {}),
        }


@serve.deployment(
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=256,
    health_check_period_s=10,
    health_check_timeout_s=30,
    graceful_shutdown_timeout_s=30,
)
@serve.ingress()
class LLMDeployment(LLMServer):
    """The Serve deployment (`llm_serve.app:build_app` binds it)."""
