"""Config validation and the `vllm serve` command line it becomes (vLLM's own parser)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llm_serve.config import LLMConfig
from serve_common.builder import ConfigError, validate_args


def test_defaults_and_names() -> None:
    cfg = LLMConfig(model="smollm2-local")
    assert cfg.served_model_names == ["smollm2-local"]
    assert cfg.reload_strategy == "replace"
    cfg = LLMConfig(model="org/Llama-3-70B", aliases=["gpt-4o"], gpu_memory_fraction=0.95)
    assert cfg.names == ["Llama-3-70B", "gpt-4o"]


@pytest.mark.parametrize(
    "bad",
    [
        {"engine_args": {"model": "x"}},  # owned by a typed field
        {"engine_args": {"gpu-memory-utilization": 0.5}},
        {"engine_args": {"max_num_seqs": 4, "max-num-seqs": 8}},
        {"enable_auto_tool_choice": True},  # needs tool_call_parser
        {"kv_cache_memory_bytes": 10},
        {"max_model_len": 0},
        {"env": {"lower": "1"}},
        {"backend": "llamacpp"},
        {"no_such_field": 1},
    ],
)
def test_invalid_configs(bad: dict) -> None:
    with pytest.raises(ValidationError):
        LLMConfig(model="m", **bad)
    with pytest.raises(ConfigError):
        validate_args(LLMConfig, {"model": "m", **bad})


# The app starts deploying first (`llm_app_started`): its replica loads the engine while this
# process imports vLLM for the parser checks, which keeps the package's tests short.
@pytest.mark.slow
@pytest.mark.usefixtures("llm_app_started")
def test_serve_argv_through_vllm_parser() -> None:
    vllm_engine = pytest.importorskip("llm_serve.engines.vllm")
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    cfg = LLMConfig(
        model="org/model",
        served_model_names=["llm"],
        gpu_memory_fraction=0.95,
        max_model_len=8192,
        quantization="awq",
        dtype="float16",
        tensor_parallel_size=2,
        tool_call_parser="hermes",
        enable_auto_tool_choice=True,
        engine_args={
            "max-num-batched-tokens": 4096,
            "enable_prefix_caching": False,
            "hf_overrides": {"rope_theta": 1000000.0},
        },
    )
    parser = make_arg_parser(FlexibleArgumentParser())
    gpu_argv = vllm_engine.serve_argv(cfg, "/models/x", parser, on_cpu=False)
    args = vllm_engine.parse_serve_args(gpu_argv)
    assert args.model == "/models/x" and args.served_model_name == ["llm"]
    assert args.gpu_memory_utilization == 0.95  # the fleet's GPU fraction
    assert args.max_model_len == 8192 and args.quantization == "awq"
    assert args.tensor_parallel_size == 2 and args.dtype == "float16"
    assert args.enforce_eager is False or args.enforce_eager is None
    assert args.max_num_batched_tokens == 4096 and args.enable_prefix_caching is False
    assert args.enable_auto_tool_choice and args.tool_call_parser == "hermes"
    assert args.hf_overrides == {"rope_theta": 1000000.0}

    cpu = LLMConfig(model="m", kv_cache_memory_bytes=64 * 2**20, gpu_memory_fraction=0.5)
    cpu_args = vllm_engine.parse_serve_args(vllm_engine.serve_argv(cpu, "m", parser, on_cpu=True))
    assert cpu_args.enforce_eager is True  # compiling on every CPU start costs minutes
    assert cpu_args.kv_cache_memory_bytes == 64 * 2**20
    assert cpu_args.gpu_memory_utilization == 0.92  # untouched on CPU: vLLM's default

    with pytest.raises(ValueError, match="no engine argument"):
        vllm_engine.serve_argv(
            LLMConfig(model="m", engine_args={"warp_drive": 9}), "m", parser, on_cpu=True
        )
    with pytest.raises(ValueError, match="invalid vLLM engine arguments"):
        vllm_engine.parse_serve_args(["--max-num-seqs", "many"])


@pytest.mark.slow
@pytest.mark.usefixtures("llm_app_started")
def test_vllm_errors_map_to_openai_shape() -> None:
    vllm_engine = pytest.importorskip("llm_serve.engines.vllm")
    from vllm.entrypoints.serve.exception_handling.error_response import create_error_response

    err = vllm_engine.api_error(create_error_response(ValueError("bad top_p")))
    assert err.status_code == 400 and err.body()["error"]["type"] == "invalid_request_error"
    assert set(err.body()["error"]) == {"message", "type", "param", "code"}
    ctx = vllm_engine.api_error(
        {"error": {"message": "This model's maximum context length is 2048 tokens", "code": 400}}
    )
    assert ctx.code == "context_length_exceeded"
    boom = vllm_engine.api_error(create_error_response(RuntimeError("secret /internal/path")))
    assert boom.status_code == 500 and "secret" not in boom.message
