"""Runs last (file order): kill the replica's vLLM engine core and check that the replica's
health check fails (so Serve replaces it) and requests get a clean 5xx instead of hanging.
The app is deleted afterwards so its replacement does not load a model for nothing."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx
import psutil
import pytest

from serve_common.testkit import TEST_API_KEY, LocalServe
from serve_common.testkit.conformance import assert_openai_error

pytestmark = pytest.mark.slow


def test_engine_death_fails_health_check(
    llm_url: str, llm_handle: Any, local_serve: LocalServe
) -> None:
    pid = llm_handle.engine_stats.remote().result()["pid"]
    llm_handle.check_health.remote().result()  # healthy before
    cores = [p for p in psutil.Process(pid).children(recursive=True) if "EngineCore" in p.name()]
    assert cores, "no vLLM engine core process under the replica"
    for proc in cores:
        proc.send_signal(signal.SIGKILL)

    deadline = time.monotonic() + 30
    failed = False
    while time.monotonic() < deadline and not failed:
        try:
            llm_handle.check_health.remote().result()
            time.sleep(0.5)
        except Exception:
            failed = True
    assert failed, "check_health still passes with a dead engine"

    resp = httpx.post(
        f"{llm_url}/v1/chat/completions",
        json={"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
        timeout=60,
    )
    assert_openai_error(resp, (500, 503))
    local_serve.delete("test-llm")
