"""Operating the local platform under load: a hot reload that fails no request, the platform's
metrics on Ray's Prometheus endpoint, and replicas killed mid-traffic (a model's and the
gateway's). Each test prints its figures (`pytest -s`); docs/reliability.md records them."""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter
from typing import Any

import httpx
import numpy as np
import pytest

from serve_common.testkit import TEST_API_KEY

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}
EMBED = "all-minilm-l6-v2"
EMBED_BODY = {"model": EMBED, "input": ["hot reload under load", "a second sentence"]}


class Load:
    """Client threads that send one request in a loop and record (time, outcome)."""

    def __init__(self, url: str, body: dict[str, Any], threads: int = 2) -> None:
        self.url, self.body = url, body
        self.outcomes: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self._lock = threading.Lock()

    def _run(self) -> None:
        with httpx.Client(headers=AUTH, timeout=120) as client:
            while not self._stop.is_set():
                try:
                    outcome = str(client.post(self.url, json=self.body).status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with self._lock:
                    self.outcomes.append((time.monotonic(), outcome))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=180)

    def failures(self) -> list[tuple[float, str]]:
        return [o for o in self.outcomes if o[1] != "200"]

    def first_success_after(self, t0: float) -> float | None:
        times = [t for t, o in self.outcomes if t > t0 and o == "200"]
        return min(times) - t0 if times else None


def embed(base: str, route: str = "/embeddings/v1") -> np.ndarray:
    resp = httpx.post(f"{base}{route}/embeddings", json=EMBED_BODY, headers=AUTH, timeout=60)
    assert resp.status_code == 200, resp.text
    return np.array([d["embedding"] for d in resp.json()["data"]])


def engine_info(app: str) -> dict[str, Any]:
    from ray import serve

    return dict(serve.get_app_handle(app).engine_info.remote().result(timeout_s=120))


# ---- hot reload --------------------------------------------------------------------------------
def test_hot_reload_under_load_fails_no_request(
    local_platform: str, local_platform_config: dict[str, Any]
) -> None:
    """A `user_config` change that touches the model (encode_batch_size) is applied the way
    `aiserve apply` applies it: Serve reconfigures the running replica, which loads a second
    engine beside the first, switches, drains and closes the old one. Continuous traffic on the
    model route and through the gateway sees no failure, and the answers stay the same."""
    from ingress.local import deploy_config, wait_ready

    reference = embed(local_platform)
    before = engine_info("embeddings")
    config = copy.deepcopy(local_platform_config)
    app = next(a for a in config["applications"] if a["name"] == "embeddings")
    deployment = app["deployments"][0]
    deployment["user_config"] = {**(deployment.get("user_config") or {}), "encode_batch_size": 16}

    direct = Load(f"{local_platform}/embeddings/v1/embeddings", EMBED_BODY)
    gateway = Load(f"{local_platform}/v1/embeddings", EMBED_BODY)
    with direct, gateway:
        time.sleep(2)
        t0 = time.monotonic()
        deploy_config(config)
        deadline = t0 + 300
        while engine_info("embeddings")["generation"] == before["generation"]:
            assert time.monotonic() < deadline, "the replica was not reconfigured in place"
            time.sleep(0.5)
        reload_s = time.monotonic() - t0
        wait_ready(config, timeout_s=300)
        time.sleep(2)
    outcomes = direct.outcomes + gateway.outcomes
    after = engine_info("embeddings")
    print(
        f"\nhot reload: {len(outcomes)} requests under load, reload applied in {reload_s:.1f}s, "
        f"failed {len(direct.failures()) + len(gateway.failures())}, "
        f"generation {before['generation']} -> {after['generation']}"
    )
    assert not direct.failures() and not gateway.failures(), Counter(
        o for _, o in direct.failures() + gateway.failures()
    )
    assert after["generation"] == before["generation"] + 1  # same replica, one engine switch
    assert len([o for o in outcomes if o[0] > t0]) > 10  # traffic kept flowing during it
    np.testing.assert_allclose(embed(local_platform), reference, atol=1e-5)


# ---- metrics -----------------------------------------------------------------------------------
WANTED_SERIES = {
    # shared, from the middleware of every service and the gateway
    "ray_ai_inference_requests_total": ['service="embeddings"', 'service="llm"', 'status="400"'],
    "ray_ai_inference_request_latency_ms_bucket": ['service="reranker"'],
    "ray_ai_inference_inflight_requests": [],
    "ray_ai_inference_gpu_memory_budget_fraction": [],
    # per task
    "ray_ai_inference_llm_prompt_tokens_total": [],
    "ray_ai_inference_llm_generation_tokens_total": [],
    "ray_ai_inference_llm_time_to_first_token_ms_bucket": [],
    "ray_ai_inference_stt_audio_seconds_total": [],
    "ray_ai_inference_tts_audio_seconds_total": [],
    "ray_ai_inference_embedding_inputs_total": [],
    "ray_ai_inference_batch_size_bucket": ['service="embeddings"'],
    "ray_ai_inference_rerank_pairs_total": [],
    "ray_ai_inference_rerank_documents_per_request_bucket": [],
    # Ray Serve's own, beside ours
    "ray_serve_num_http_requests_total": [],
    "ray_serve_deployment_processing_latency_ms_bucket": [],
}


def _traffic(base: str) -> None:
    client = httpx.Client(base_url=f"{base}/v1", headers=AUTH, timeout=120)
    assert client.post("/embeddings", json={"model": EMBED, "input": "metrics"}).is_success
    assert client.post("/embeddings", json={"model": EMBED, "input": ""}).status_code == 400
    chat = {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": 4,
    }
    assert client.post("/chat/completions", json=chat).is_success
    rerank = {"model": "rerank-english-v3.0", "query": "q", "documents": ["a", "b"]}
    assert client.post("/rerank", json=rerank).is_success
    speech = client.post(
        "/audio/speech",
        json={"model": "tts-1", "voice": "alloy", "input": "Metrics.", "response_format": "wav"},
    )
    assert speech.is_success
    files = {"file": ("a.wav", speech.content, "audio/wav")}
    assert client.post("/audio/transcriptions", data={"model": "whisper-1"}, files=files).is_success


def test_metrics_on_rays_prometheus_endpoint(local_platform: str) -> None:
    """Every service's metrics appear on the node's Prometheus endpoint, beside Serve's."""
    import ray

    _traffic(local_platform)
    port = ray.nodes()[0]["MetricsExportPort"]
    deadline = time.monotonic() + 120
    missing: list[str] = list(WANTED_SERIES)
    while time.monotonic() < deadline:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
        missing = [
            f"{name}{{{','.join(labels)}}}"
            for name, labels in WANTED_SERIES.items()
            if not all(
                any(ln.startswith(name + "{") and label in ln for ln in lines) for label in labels
            )
            or not any(ln.startswith(name + "{") for ln in lines)
        ]
        if not missing:
            break
        time.sleep(5)  # Ray exports on an interval
    assert not missing, f"not on :{port}/metrics: {missing}"


# ---- faults ------------------------------------------------------------------------------------
def _replica_actor(app: str) -> Any:
    import ray

    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{app}#")
    ]
    assert names, f"no replica of {app}"
    return ray.get_actor(names[0], namespace="serve"), names[0]


@pytest.mark.parametrize(
    ("app", "url_path", "bound_s"),
    [
        ("embeddings", "/embeddings/v1/embeddings", 120),
        ("gateway", "/v1/embeddings", 120),
    ],
)
def test_killed_replica_is_replaced_under_load(
    local_platform: str, app: str, url_path: str, bound_s: float
) -> None:
    """Kill the only replica mid-traffic: Serve starts a new one; only requests in flight on
    the dead one may fail, and the route answers again within the bound."""
    import ray

    actor, name = _replica_actor(app)
    with Load(f"{local_platform}{url_path}", EMBED_BODY, threads=3) as load:
        time.sleep(3)
        in_flight_before = len(load.outcomes)
        t0 = time.monotonic()
        ray.kill(actor, no_restart=True)
        deadline = t0 + bound_s
        while load.first_success_after(t0 + 0.5) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    recovery = load.first_success_after(t0 + 0.5)
    failed = [o for t, o in load.failures() if t >= t0]
    print(
        f"\nkill {name}: back in {recovery if recovery is None else round(recovery, 1)}s, "
        f"{len(failed)} failed request(s) ({dict(Counter(failed))}), "
        f"{len(load.outcomes) - in_flight_before} sent after the kill"
    )
    assert recovery is not None and recovery <= bound_s, f"{app} not back in {bound_s}s"
    assert len(failed) <= 3 * 2, Counter(failed)  # at most the requests in flight on it
    _, new_name = _replica_actor(app)
    assert new_name != name
    assert embed(local_platform, "/v1").shape == (2, 384)
