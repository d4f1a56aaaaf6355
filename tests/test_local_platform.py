"""The local fleet end to end: every service at its own route and through the gateway, with the
official `openai` SDK as a user would point it (`/{route}/v1` and `/v1`)."""

from __future__ import annotations

from typing import ClassVar

import httpx
import numpy as np
import openai
import pytest

from serve_common.testkit import TEST_API_KEY, ServiceConformance
from serve_common.testkit.conformance import assert_openai_error

pytestmark = pytest.mark.slow

EMBED = "all-minilm-l6-v2"
LLM = "smollm2-135m-instruct"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def sdk(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=TEST_API_KEY, max_retries=0)


def test_embeddings_direct_and_gateway_agree(local_platform: str) -> None:
    texts = ["A man is eating food.", "A man eats a meal.", "Markets fell on Monday."]
    direct = sdk(f"{local_platform}/embeddings/v1").embeddings.create(model=EMBED, input=texts)
    via_gw = sdk(f"{local_platform}/v1").embeddings.create(
        model="text-embedding-3-small", input=texts
    )
    a = np.array([d.embedding for d in direct.data])
    b = np.array([d.embedding for d in via_gw.data])
    np.testing.assert_allclose(a, b, atol=1e-5)
    sim = a @ a.T
    assert sim[0, 1] > sim[0, 2] + 0.3
    assert via_gw.usage.prompt_tokens == direct.usage.prompt_tokens


def test_gateway_models_aggregated(local_platform: str) -> None:
    ids = {m.id for m in sdk(f"{local_platform}/v1").models.list()}
    assert {EMBED, "text-embedding-3-small"} <= ids


def test_gateway_health_and_status(local_platform: str) -> None:
    resp = httpx.get(f"{local_platform}/healthz", timeout=30)
    assert resp.status_code == 200
    assert resp.json()["applications"]["embeddings"] == "RUNNING"
    assert httpx.get(f"{local_platform}/v2/health/ready", timeout=30).status_code == 200


def test_gateway_unknown_model_and_route(local_platform: str) -> None:
    client = sdk(f"{local_platform}/v1")
    with pytest.raises(openai.NotFoundError) as exc:
        client.embeddings.create(model="gpt-nope", input="x")
    assert exc.value.code == "model_not_found"
    resp = httpx.post(
        f"{local_platform}/v1/embeddings",
        json={"model": EMBED, "input": ""},
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
        timeout=30,
    )
    assert assert_openai_error(resp, 400)["param"] == "input"


def test_request_id_propagates_through_gateway(local_platform: str) -> None:
    resp = httpx.post(
        f"{local_platform}/v1/embeddings",
        json={"model": EMBED, "input": "hello"},
        headers={"Authorization": f"Bearer {TEST_API_KEY}", "x-request-id": "e2e-rid-1"},
        timeout=30,
    )
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] == "e2e-rid-1"


class TestGatewayConformance(ServiceConformance):
    """The shared contract, through the gateway's single base URL."""

    model_name = EMBED
    openai_path = "/v1/embeddings"
    valid_request: ClassVar = {"input": "hello world"}
    bad_requests: ClassVar = [
        ({"input": ""}, 400),
        ({"input": []}, 400),
        ({"input": 42}, 400),
        ({"input": "x", "dimensions": 7}, 400),
        (b"[1, 2]", 400),
    ]
    v2_valid_inputs: ClassVar = [
        {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hello"]}
    ]
    v2_output_names: ClassVar = ["embedding"]

    @pytest.fixture
    def service_url(self, local_platform: str) -> str:
        return local_platform


def test_speech_round_trip_through_the_gateway(local_platform: str) -> None:
    """tts-1 speaks, whisper-1 listens: both by alias, through the one /v1 base URL."""
    client = sdk(f"{local_platform}/v1")
    speech = client.audio.speech.create(
        model="tts-1",
        voice="alloy",
        input="Open the door and turn on the lights.",
        response_format="wav",
    )
    audio = speech.read()
    assert audio[:4] == b"RIFF" and len(audio) > 10_000
    text = client.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", audio, "audio/wav"), response_format="text"
    )
    words = str(text).lower()
    assert "door" in words and "light" in words, words


def test_rerank_through_the_gateway(local_platform: str) -> None:
    resp = httpx.post(
        f"{local_platform}/v1/rerank",
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
        json={
            "model": "rerank-english-v3.0",
            "query": "What is the capital of France?",
            "documents": [
                "Bananas are rich in potassium.",
                "Paris is the capital and largest city of France.",
                {"text": "The stock market fell on Monday."},
            ],
            "top_n": 2,
            "return_documents": True,
        },
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert len(results) == 2 and results[0]["index"] == 1
    assert "Paris" in results[0]["document"]["text"]


def test_every_service_listed_by_the_gateway(local_platform: str) -> None:
    ids = {m.id for m in sdk(f"{local_platform}/v1").models.list()}
    assert {"whisper-1", "tts-1", "rerank-english-v3.0", EMBED, LLM, "gpt-4o-mini"} <= ids


def test_chat_direct_and_through_the_gateway(local_platform: str) -> None:
    """The same greedy answer at `/llm/v1` and at the gateway's `/v1` (by alias)."""
    kwargs: dict = {"messages": FRANCE, "temperature": 0, "max_tokens": 20}
    direct = sdk(f"{local_platform}/llm/v1").chat.completions.create(model=LLM, **kwargs)
    via_gw = sdk(f"{local_platform}/v1").chat.completions.create(model="gpt-4o-mini", **kwargs)
    assert "Paris" in (direct.choices[0].message.content or "")
    assert via_gw.choices[0].message.content == direct.choices[0].message.content
    assert via_gw.model == direct.model == LLM
    assert via_gw.usage.completion_tokens == direct.usage.completion_tokens


def test_chat_streams_through_the_gateway(local_platform: str) -> None:
    """SSE passes through the gateway as chunks (not one buffered body), usage last."""
    stream = sdk(f"{local_platform}/v1").chat.completions.create(
        model=LLM,
        messages=FRANCE,
        temperature=0,
        max_tokens=20,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert len(chunks) > 3
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
