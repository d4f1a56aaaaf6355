"""The LLM service on a local Ray Serve with the real SmolLM2-135M-Instruct, driven by the
official `openai` SDK (httpx for KServe V2 and for disconnecting mid-generation).

SmolLM2-135M is weak: assertions stay on easy facts, on structure (JSON that parses against
its schema, a forced tool call) and on exact equalities at temperature 0.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from serve_common.testkit import TEST_API_KEY
from serve_common.testkit.conformance import assert_openai_error, assert_v2_error

pytestmark = pytest.mark.slow

MODEL = "smollm2"
ALIAS = "gpt-test-alias"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def sdk(llm_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{llm_url}/v1", api_key=TEST_API_KEY, max_retries=0, timeout=180)


@pytest.fixture(scope="module")
def http(llm_url: str) -> Any:
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    with httpx.Client(base_url=llm_url, headers=headers, timeout=180) as client:
        yield client


@pytest.fixture(scope="module")
def france(sdk: openai.OpenAI) -> Any:
    return sdk.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0, max_tokens=30)


def _unfinished(handle: Any) -> int:
    return int(handle.engine_stats.remote().result()["unfinished_requests"])


def _wait_idle(handle: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _unfinished(handle) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert _unfinished(handle) == 0, "generation kept running after the client left"


# ---- chat ----------
def test_capital_of_france(france: Any) -> None:
    assert "Paris" in france.choices[0].message.content
    assert france.model == MODEL
    assert france.choices[0].finish_reason == "stop"
    assert france.usage.completion_tokens > 0 and france.usage.prompt_tokens > 0


def test_streaming_matches_non_streaming(sdk: openai.OpenAI, france: Any) -> None:
    stream = sdk.chat.completions.create(
        model=MODEL,
        messages=FRANCE,
        temperature=0,
        max_tokens=30,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == france.choices[0].message.content
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].usage.completion_tokens == france.usage.completion_tokens
    assert chunks[-1].choices == []


def test_alias_answers_with_primary_name(sdk: openai.OpenAI) -> None:
    resp = sdk.chat.completions.create(model=ALIAS, messages=FRANCE, temperature=0, max_tokens=3)
    assert resp.model == MODEL
    ids = [m.id for m in sdk.models.list().data]
    assert ids[0] == MODEL and ALIAS in ids


def test_sampling_parameters(sdk: openai.OpenAI) -> None:
    resp = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a short poem about the sea."}],
        n=2,
        temperature=0.9,
        top_p=0.95,
        seed=1234,
        max_completion_tokens=8,
        logprobs=True,
        top_logprobs=2,
    )
    assert len(resp.choices) == 2
    assert resp.usage.completion_tokens <= 16
    for choice in resp.choices:
        assert choice.finish_reason in ("length", "stop")
        assert choice.logprobs.content and len(choice.logprobs.content[0].top_logprobs) == 2
    again = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a short poem about the sea."}],
        temperature=0.9,
        seed=1234,
        max_tokens=8,
    )
    twice = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a short poem about the sea."}],
        temperature=0.9,
        seed=1234,
        max_tokens=8,
    )
    assert again.choices[0].message.content == twice.choices[0].message.content  # seeded


def test_stop_sequence(sdk: openai.OpenAI) -> None:
    resp = sdk.chat.completions.create(
        model=MODEL, messages=FRANCE, temperature=0, max_tokens=30, stop=["Paris"]
    )
    assert "Paris" not in resp.choices[0].message.content
    assert resp.choices[0].finish_reason == "stop"


def test_json_schema_output(sdk: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    resp = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name the capital of France as JSON."}],
        temperature=0,
        max_tokens=60,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "capital", "schema": schema, "strict": True},
        },
    )
    data = json.loads(resp.choices[0].message.content)
    jsonschema.validate(data, schema)


def test_forced_tool_call(sdk: openai.OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city",
                # strict: vLLM then constrains the arguments to the schema, not just the name
                "strict": True,
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
            },
        }
    ]
    resp = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=60,
    )
    calls = resp.choices[0].message.tool_calls
    assert calls and calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    args = json.loads(calls[0].function.arguments)
    assert isinstance(args["city"], str)


def test_concurrent_requests_all_succeed(sdk: openai.OpenAI) -> None:
    def ask(i: int) -> str:
        resp = sdk.chat.completions.create(
            model=MODEL, messages=FRANCE, temperature=0, max_tokens=12
        )
        return resp.choices[0].message.content

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, range(4)))
    assert len(set(answers)) == 1 and "Paris" in answers[0]  # batched, still greedy-exact


# ---- completions ----------
def test_completions_stream_and_not(sdk: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 6}
    full = sdk.completions.create(temperature=0, **kwargs)
    assert full.choices[0].text and full.model == MODEL
    parts = list(
        sdk.completions.create(
            temperature=0, stream=True, stream_options={"include_usage": True}, **kwargs
        )
    )
    assert "".join(p.choices[0].text for p in parts if p.choices) == full.choices[0].text
    assert parts[-1].usage.completion_tokens == full.usage.completion_tokens
    echoed = sdk.completions.create(temperature=0, echo=True, logprobs=1, **kwargs)
    assert echoed.choices[0].text.startswith("The capital of France is")


# ---- errors keep the OpenAI shape and the replica alive ----------
def test_sdk_errors(sdk: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.BadRequestError) as ctx:
        sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Paris " * 2100}], max_tokens=4
        )
    assert ctx.value.code == "context_length_exceeded"
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="gpt-nope", messages=FRANCE)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        sdk.completions.create(model=MODEL, prompt="hi", temperature=5)
    for body in ({"model": MODEL, "prompt": ""}, {"model": MODEL, "prompt": []}):
        assert_openai_error(http.post("/v1/completions", json=body), 400)
    resp = http.post("/v1/chat/completions", json={"model": MODEL, "messages": FRANCE, "n": 0})
    assert_openai_error(resp, 400)
    assert http.get("/health").status_code == 200


# ---- client disconnects abort their generation ----------
def test_disconnect_aborts_streamed_generation(http: httpx.Client, llm_handle: Any) -> None:
    body = {
        "model": MODEL,
        "messages": FRANCE,
        "max_tokens": 1500,
        "ignore_eos": True,  # vLLM extra: keeps generating for a long time
        "stream": True,
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as resp:
        assert resp.status_code == 200
        events, running = 0, 0
        for line in resp.iter_lines():
            events += line.startswith("data: ")
            if events >= 3:
                running = _unfinished(llm_handle)  # while the stream is still open
                break
    assert running == 1
    _wait_idle(llm_handle)


def test_disconnect_aborts_non_streamed_generation(llm_url: str, llm_handle: Any) -> None:
    body = {"model": MODEL, "messages": FRANCE, "max_tokens": 1500, "ignore_eos": True}
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{llm_url}/v1/chat/completions", json=body, headers=headers, timeout=4)
    _wait_idle(llm_handle)


# ---- KServe V2 ----------
def test_v2_infer_batch_with_parameters(http: httpx.Client) -> None:
    prompts = ["What is the capital of France?", "What is the capital of France?"]
    resp = http.post(
        f"/v2/models/{MODEL}/infer",
        json={
            "id": "v2-1",
            "parameters": {"max_tokens": 12, "temperature": 0, "apply_chat_template": True},
            "inputs": [{"name": "text_input", "shape": [2], "datatype": "BYTES", "data": prompts}],
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    out = body["outputs"][0]
    assert out["name"] == "text_output" and out["shape"] == [2] and out["datatype"] == "BYTES"
    assert all("Paris" in text for text in out["data"])
    assert body["parameters"]["usage"]["completion_tokens"] > 0
    bad = http.post(
        f"/v2/models/{MODEL}/infer",
        json={
            "parameters": {"temperature": -3},
            "inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["x"]}],
        },
    )
    assert_v2_error(bad, 400)
    unknown = http.post(
        f"/v2/models/{MODEL}/infer",
        json={
            "parameters": {"beam_width": 3},
            "inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["x"]}],
        },
    )
    assert_v2_error(unknown, 400)


def test_v2_generate_and_stream(http: httpx.Client) -> None:
    request = {
        "text_input": "What is the capital of France?",
        "parameters": {"max_tokens": 20, "temperature": 0, "apply_chat_template": True},
    }
    resp = http.post(f"/v2/models/{MODEL}/generate", json=request)
    assert resp.status_code == 200, resp.text
    full = resp.json()
    assert full["model_name"] == MODEL and "Paris" in full["text_output"]
    deltas: list[str] = []
    finish = None
    with http.stream("POST", f"/v2/models/{MODEL}/generate_stream", json=request) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                deltas.append(event["text_output"])
                finish = event.get("finish_reason", finish)
    assert "".join(deltas) == full["text_output"] and finish == full["finish_reason"]
    assert_v2_error(http.post(f"/v2/models/{MODEL}/generate", json={"text_input": ""}), 400)
    assert_v2_error(http.post("/v2/models/nope/generate", json=request), 404)
    assert_v2_error(
        http.post(f"/v2/models/{MODEL}/generate", json={"text_input": "x", "temperature": -1}),
        400,
    )


# ---- hot reload: renaming is a runtime change (no engine reload) ----------
def test_rename_applies_without_reload(llm_handle: Any, sdk: openai.OpenAI) -> None:
    """Serve calls `reconfigure(user_config)` on the running replica for a user_config change
    (config-file deploys; `serve.run` from Python rolls the replica instead), so call it the
    same way through the handle."""
    before = llm_handle.engine_stats.remote().result()["loaded_at"]
    llm_handle.reconfigure.remote({"served_model_names": ["smollm2-v2", MODEL]}).result()
    ids = [m.id for m in sdk.models.list().data]
    assert ids[:2] == ["smollm2-v2", MODEL]
    resp = sdk.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0, max_tokens=3)
    assert resp.model == "smollm2-v2"  # responses follow the new primary name
    assert llm_handle.engine_stats.remote().result()["loaded_at"] == before  # no engine reload
