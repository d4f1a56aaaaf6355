"""KServe V2 / Open Inference Protocol for text generation.

`/v2/models/{name}/infer`: input `text_input` (BYTES, one prompt per element) → output
`text_output` (BYTES, same shape). Generation parameters ride in the request's `parameters`:
max_tokens, temperature, top_p, top_k, seed, stop, presence_penalty, frequency_penalty,
repetition_penalty, min_tokens, ignore_eos, and `apply_chat_template` (default false: the
prompt is raw text, as in Triton's vLLM backend; true sends it as one user message through
the model's chat template). The response's `parameters` carry `finish_reason` per prompt and
the summed token `usage`.

The generate extension (Triton's, which KServe clients for LLMs use):
`POST /v2/models/{name}/generate` `{"text_input": "...", "parameters": {...}}` →
`{"model_name", "text_output", "finish_reason", "usage"}`;
`POST /v2/models/{name}/generate_stream` → SSE events `{"model_name", "text_output": <delta>}`,
the last with `finish_reason`. Generation parameters may also be top-level keys.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from llm_serve.engine import LLMEngine
from serve_common.errors import APIError, EngineError, InvalidRequestError
from serve_common.protocol.v2 import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    TensorMetadata,
)
from serve_common.sse import SSE_HEADERS, SSE_MEDIA_TYPE, sse_event
from serve_common.v2 import bytes_as_text, find_input, text_tensor

INPUT_NAME = "text_input"
OUTPUT_NAME = "text_output"
SAMPLING_PARAMS = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "seed",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "min_tokens",
        "ignore_eos",
    }
)
CONTROL_PARAMS = frozenset({"apply_chat_template", "stream"})
MAX_V2_BATCH = 64


def metadata(name: str, describe: dict[str, Any]) -> ModelMetadata:
    params = {k: v for k, v in describe.items() if k in ("backend", "max_model_len") and v}
    return ModelMetadata(
        name=name,
        platform="vllm",
        inputs=[TensorMetadata(name=INPUT_NAME, datatype="BYTES", shape=[-1])],
        outputs=[TensorMetadata(name=OUTPUT_NAME, datatype="BYTES", shape=[-1])],
        parameters=params or None,
    )


def _generation_params(params: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    """Split V2 parameters into OpenAI sampling fields and the chat-template switch."""
    params = dict(params or {})
    unknown = sorted(set(params) - SAMPLING_PARAMS - CONTROL_PARAMS)
    if unknown:
        raise InvalidRequestError(
            f"unsupported parameters {unknown}; supported: "
            f"{sorted(SAMPLING_PARAMS | CONTROL_PARAMS)}",
            param="parameters",
        )
    chat = params.pop("apply_chat_template", False)
    params.pop("stream", None)
    if not isinstance(chat, bool):
        raise InvalidRequestError("'apply_chat_template' must be a boolean", param="parameters")
    return params, chat


def _body(name: str, prompt: str, params: dict[str, Any], chat: bool, stream: bool) -> dict:
    body: dict[str, Any] = {"model": name, **params, "stream": stream}
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return body


def _choice_text(choice: dict[str, Any]) -> str:
    if "text" in choice:
        return choice.get("text") or ""
    part = choice.get("message") or choice.get("delta") or {}
    return part.get("content") or ""


async def _complete(
    engine: LLMEngine, body: dict[str, Any], chat: bool, request: Request | None
) -> dict[str, Any]:
    result = await (engine.chat_completion if chat else engine.completion)(body, request)
    if not isinstance(result, dict):  # pragma: no cover - stream=False always gives a body
        raise EngineError("unexpected streamed result")
    return result


async def infer(
    engine: LLMEngine, served_name: str, name: str, request: InferRequest
) -> InferResponse:
    prompts = bytes_as_text(find_input(request, INPUT_NAME))  # type: ignore[arg-type]
    if not prompts:
        raise InvalidRequestError(f"'{INPUT_NAME}' is empty", param=INPUT_NAME)
    if len(prompts) > MAX_V2_BATCH:
        raise InvalidRequestError(
            f"at most {MAX_V2_BATCH} prompts per request, got {len(prompts)}", param=INPUT_NAME
        )
    params, chat = _generation_params(request.parameters)
    results = await asyncio.gather(
        *(
            _complete(engine, _body(served_name, p, params, chat, False), chat, None)
            for p in prompts
        )
    )
    texts = [_choice_text(r["choices"][0]) for r in results]
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for r in results:
        for key in usage:
            usage[key] += int((r.get("usage") or {}).get(key) or 0)
    return InferResponse(
        model_name=name,
        outputs=[text_tensor(OUTPUT_NAME, texts)],
        parameters={
            "finish_reason": [r["choices"][0].get("finish_reason") for r in results],
            "usage": usage,
        },
    )


def _generate_request(body: Any) -> tuple[str, dict[str, Any], bool]:
    if not isinstance(body, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    body = dict(body)
    text = body.pop(INPUT_NAME, None)
    if not isinstance(text, str) or not text:
        raise InvalidRequestError(f"'{INPUT_NAME}' must be a non-empty string", param=INPUT_NAME)
    nested = body.pop("parameters", None) or {}
    if not isinstance(nested, dict):
        raise InvalidRequestError("'parameters' must be an object", param="parameters")
    body.pop("id", None)
    params, chat = _generation_params({**body, **nested})
    return text, params, chat


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise InvalidRequestError(
            "The request body is not valid JSON.", code="invalid_json"
        ) from None


def generate_router(
    *,
    check: Callable[[str, Request], str],
    engine: Callable[[], Awaitable[LLMEngine]],
    served_name: Callable[[], str],
) -> APIRouter:
    """The V2 generate extension routes (mounted beside serve_common's V2 router)."""
    router = APIRouter(prefix="/v2/models", tags=["kserve-v2-generate"])

    @router.post("/{name}/generate")
    async def generate(name: str, request: Request) -> JSONResponse:
        check(name, request)
        text, params, chat = _generate_request(await _json_body(request))
        llm = await engine()
        result = await _complete(
            llm, _body(served_name(), text, params, chat, False), chat, request
        )
        choice = result["choices"][0]
        return JSONResponse(
            {
                "model_name": name,
                "text_output": _choice_text(choice),
                "finish_reason": choice.get("finish_reason"),
                "usage": result.get("usage"),
            }
        )

    @router.post("/{name}/generate_stream")
    async def generate_stream(name: str, request: Request) -> StreamingResponse:
        check(name, request)
        text, params, chat = _generate_request(await _json_body(request))
        llm = await engine()
        body = _body(served_name(), text, params, chat, True)
        method = llm.chat_completion if chat else llm.completion
        result = await method(body, request)
        if isinstance(result, dict):  # pragma: no cover - stream=True always streams
            raise EngineError("unexpected complete result")
        return StreamingResponse(
            _v2_events(name, result), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS
        )

    return router


async def _v2_events(name: str, events: AsyncIterator[str]) -> AsyncIterator[bytes]:
    """OpenAI stream chunks → V2 generate_stream events (`text_output` deltas)."""
    try:
        async for chunk in events:
            for line in chunk.splitlines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[len("data: ") :])
                if "error" in data:
                    err = data["error"]
                    message = err.get("message") if isinstance(err, dict) else str(err)
                    yield sse_event({"error": message or "generation failed"})
                    return
                for choice in data.get("choices") or []:
                    out: dict[str, Any] = {"model_name": name, "text_output": _choice_text(choice)}
                    if choice.get("finish_reason"):
                        out["finish_reason"] = choice["finish_reason"]
                    yield sse_event(out)
    except APIError as exc:  # pragma: no cover - errors surface before streaming starts
        yield sse_event({"error": exc.message})
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
