"""The reranker running on a local Serve, driven over HTTP the way a Cohere/Jina client
would (httpx: the openai SDK has no rerank API), plus the shared conformance suite.

The model is the MiniLM cross-encoder trained in conftest (a real pretrained body with a
briefly fine-tuned head; see conftest's docstring), served through FlagReranker.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import httpx
import pytest

from serve_common.testkit import TEST_API_KEY, ServiceConformance
from serve_common.testkit.conformance import assert_openai_error, assert_v2_error

ROUTE = "/rerank-test"
NAME = "minilm-reranker"
ALIAS = "rerank-english-v3.0"
MAX_DOCUMENTS = 40
MAX_QUERY_TOKENS = 32

UNRELATED = [
    "The football match ended in a draw after extra time.",
    "Python lists can be sorted in place with the sort method.",
    "Tomorrow will be cloudy with light rain in the afternoon.",
    "Preheat the oven to 200 degrees before baking the bread for thirty minutes.",
]


@pytest.fixture(scope="module")
def service_url(local_serve: Any, trained_reranker: str) -> str:
    from rerank_serve.app import build_app

    args = {
        "model": trained_reranker,
        "backend": "flag",
        "served_model_names": [NAME],
        "aliases": [ALIAS],
        "device": "cpu",
        "api_keys": [TEST_API_KEY],
        "max_body_bytes": ServiceConformance.max_body_bytes,
        "max_documents": MAX_DOCUMENTS,
        "max_query_tokens": MAX_QUERY_TOKENS,
        "max_batch_pairs": 64,
        "batch_size": 16,
        "user_config": {"batch_wait_timeout_s": 0.02},
    }
    return local_serve.deploy(build_app(args), name="rerank-test", route_prefix=ROUTE)


@pytest.fixture(scope="module")
def cohere(service_url: str) -> Any:
    with httpx.Client(
        base_url=service_url, timeout=120, headers={"Authorization": f"Bearer {TEST_API_KEY}"}
    ) as client:
        yield client


def rerank(client: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = client.post("/v1/rerank", json={"model": NAME, **body})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_rerank_like_a_cohere_client(
    cohere: httpx.Client, held_out: tuple[list[Any], list[str]]
) -> None:
    # Kenya is held out of the reranker's training data.
    relevant = "Nairobi is the capital and the largest city of Kenya."
    documents: list[Any] = [UNRELATED[0], {"text": UNRELATED[1]}, relevant, UNRELATED[2]]
    body = rerank(
        cohere,
        query="What is the capital of Kenya?",
        documents=documents,
        top_n=3,
        return_documents=True,
    )
    assert body["model"] == NAME and body["id"].startswith("rerank-")
    results = body["results"]
    assert len(results) == 3
    assert results[0]["index"] == 2
    assert results[0]["document"] == {"text": relevant}
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] > 0.5 > scores[1]
    for r in results:
        original = documents[r["index"]]
        assert r["document"]["text"] == (
            original if isinstance(original, str) else original["text"]
        )
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0


def test_defaults_raw_scores_and_alias(cohere: httpx.Client) -> None:
    query = "What does a kangaroo eat?"
    documents = [UNRELATED[0], "The kangaroo feeds mainly on grasses and leaves.", UNRELATED[3]]
    normal = rerank(cohere, query=query, documents=documents)
    assert normal["results"][0]["index"] == 1
    assert len(normal["results"]) == 3 and all("document" not in r for r in normal["results"])
    raw = rerank(cohere, query=query, documents=documents, raw_scores=True, model=ALIAS)
    assert raw["model"] == ALIAS
    by_index = {r["index"]: r["relevance_score"] for r in normal["results"]}
    for r in raw["results"]:
        assert 1 / (1 + math.exp(-r["relevance_score"])) == pytest.approx(by_index[r["index"]])
    # top_n larger than the document count returns every document
    assert len(rerank(cohere, query=query, documents=documents, top_n=10)["results"]) == 3


def test_long_documents_are_truncated(cohere: httpx.Client) -> None:
    long_doc = "The kangaroo feeds mainly on grasses and leaves. " + "filler text " * 800
    body = rerank(cohere, query="What does a kangaroo eat?", documents=[long_doc, UNRELATED[0]])
    assert body["results"][0]["index"] == 0
    assert body["usage"]["prompt_tokens"] <= 512 + 40


def test_concurrent_clients_get_their_own_results(cohere: httpx.Client) -> None:
    """16 clients at once: their pairs share engine batches; each gets its own ranking."""
    facts = [
        ("What is the capital of Norway?", "Oslo is the capital and the largest city of Norway."),
        ("What currency is used in Thailand?", "The official currency of Thailand is the baht."),
        ("Where does the owl live?", "The owl lives in woodlands and barns around the world."),
        ("What language is spoken in Portugal?", "Portuguese is the main language of Portugal."),
    ]

    def one(i: int) -> tuple[int, dict[str, Any]]:
        query, relevant = facts[i % len(facts)]
        position = i % 5
        docs = [*UNRELATED]
        docs.insert(position, relevant)
        return position, rerank(cohere, query=query, documents=docs)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(16)))
    for position, body in answers:
        assert body["results"][0]["index"] == position
        assert sorted(r["index"] for r in body["results"]) == list(range(5))


def test_limits_and_errors(cohere: httpx.Client) -> None:
    def post(**body: Any) -> httpx.Response:
        return cohere.post("/v1/rerank", json={"model": NAME, **body})

    err = assert_openai_error(post(query="word " * (MAX_QUERY_TOKENS + 1), documents=["a"]), 400)
    assert err["param"] == "query" and err["code"] == "query_too_long"
    err = assert_openai_error(post(query="q", documents=["a"] * (MAX_DOCUMENTS + 1)), 400)
    assert err["param"] == "documents" and err["code"] == "too_many_documents"
    assert assert_openai_error(post(query=" ", documents=["a"]), 400)["param"] == "query"
    assert assert_openai_error(post(query="q", documents=[]), 400)["param"] == "documents"
    assert assert_openai_error(post(query="q", documents=["a"], top_n=0), 400)["param"] == "top_n"
    # the replica is still serving
    assert rerank(cohere, query="q", documents=["a"])["results"][0]["index"] == 0


def test_v2_scores_match_rerank(cohere: httpx.Client) -> None:
    query = "What is the capital of Thailand?"
    documents = [UNRELATED[1], "Bangkok is the capital and the largest city of Thailand."]
    meta = cohere.get(f"/v2/models/{NAME}").json()
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("query", "BYTES", [1]),
        ("documents", "BYTES", [-1]),
    ]
    assert [(t["name"], t["datatype"]) for t in meta["outputs"]] == [("scores", "FP32")]
    resp = cohere.post(
        f"/v2/models/{NAME}/infer",
        json={
            "inputs": [
                {"name": "query", "shape": [1], "datatype": "BYTES", "data": [query]},
                {"name": "documents", "shape": [2], "datatype": "BYTES", "data": documents},
            ]
        },
    )
    assert resp.status_code == 200, resp.text
    (out,) = resp.json()["outputs"]
    assert out["name"] == "scores" and out["datatype"] == "FP32" and out["shape"] == [2]
    expected = {
        r["index"]: r["relevance_score"]
        for r in rerank(cohere, query=query, documents=documents)["results"]
    }
    assert out["data"] == pytest.approx([expected[0], expected[1]], abs=1e-5)
    assert out["data"][1] > out["data"][0]
    url = f"/v2/models/{NAME}/infer"
    two_queries = {"name": "query", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}
    docs = {"name": "documents", "shape": [1], "datatype": "BYTES", "data": ["x"]}
    assert_v2_error(cohere.post(url, json={"inputs": [two_queries, docs]}), 400)


V2_QUERY = {"name": "query", "shape": [1], "datatype": "BYTES", "data": ["capital of Kenya"]}


class TestRerankConformance(ServiceConformance):
    model_name = NAME
    openai_path = "/v1/rerank"
    valid_request: ClassVar[dict[str, Any]] = {
        "query": "What is the capital of Kenya?",
        "documents": ["Nairobi is the capital of Kenya.", "The match ended in a draw."],
    }
    bad_requests: ClassVar[list[tuple[Any, int]]] = [
        ({"query": "", "documents": ["a"]}, 400),
        ({"query": "q", "documents": []}, 400),
        ({"query": "q", "documents": ["a"], "top_n": 0}, 400),
        ({"query": "q", "documents": ["a"] * (MAX_DOCUMENTS + 1)}, 400),
        ({"query": "word " * 100, "documents": ["a"]}, 400),
        ({"query": 5, "documents": ["a"]}, 400),
        ({"query": ["q"], "documents": ["a"]}, 400),
        ({"query": "q", "documents": "not a list"}, 400),
        ({"query": "q", "documents": [3]}, 400),
        ({"query": "q", "documents": [{"title": "no text field"}]}, 400),
        ({"query": "q", "documents": ["a"], "top_n": "two"}, 400),
        ({"query": "q", "documents": ["a"], "return_documents": "maybe"}, 400),
        ({"documents": ["a"]}, 400),
        (b"[1, 2]", 400),
    ]
    v2_valid_inputs: ClassVar[list[dict[str, Any]]] = [
        V2_QUERY,
        {"name": "documents", "shape": [2], "datatype": "BYTES", "data": ["Nairobi", "pizza"]},
    ]
    v2_output_names: ClassVar[list[str]] = ["scores"]
    v2_bad_inputs: ClassVar[list[list[dict[str, Any]]]] = [
        [V2_QUERY],  # no documents
        [V2_QUERY, {"name": "documents", "shape": [0], "datatype": "BYTES", "data": []}],
        [V2_QUERY, {"name": "documents", "shape": [1], "datatype": "FP32", "data": [1.0]}],
        [V2_QUERY, {"name": "documents", "shape": [3], "datatype": "BYTES", "data": ["a"]}],
        [
            {"name": "query", "shape": [1], "datatype": "BYTES", "data": [""]},
            {"name": "documents", "shape": [1], "datatype": "BYTES", "data": ["a"]},
        ],
    ]
