"""The whole local fleet under load: gateway overhead and all five services at once.

One embedded Ray + Serve runs `fleets/local.yaml` as `just serve` renders it (no API keys).

(a) Gateway overhead: interleaved pairs of identical requests to a service's direct route and
    to the gateway's `/v1` (one keep-alive client, sequential, order alternating per pair):
    embeddings (one input "hello world") and rerank (3 short documents). Reported: p50/p99 of
    each and the median of the paired differences (gateway - direct). Target: <= 1 ms p50.
(b) Mixed load: every service at once through the gateway for a fixed time: client threads
    for embeddings (8), rerank (4), chat (2, max_tokens 16, greedy), TTS (1, wav) and STT
    (1, a ~2 s clip synthesized by the TTS service first). Per route: requests, errors,
    req/s, p50/p99; LLM output tokens/s.

Writes bench/results/fleet.json and bench/results/fleet.md.

    RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 uv run --frozen --no-sync python bench/fleet_bench.py \
        [--duration 90] [--embed-pairs 300] [--rerank-pairs 150]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import stats, write_results
from _fleet import (
    DOCS,
    EMBED,
    LLM,
    RERANK,
    STT,
    TTS,
    CpuMeter,
    ProcessCpuMeter,
    loadavg,
    start_fleet,
    synthesize,
    wait_quiet,
    wav_seconds,
)

TARGET_GATEWAY_P50_MS = 1.0
SPEECH = "Open the door and turn on the lights."
Request = Callable[[httpx.Client], httpx.Response]
OVERHEAD_HEADER = (
    "| route | pairs | direct p50 / p99 (ms) | gateway p50 / p99 (ms) | p50 difference (ms) "
    "| median paired difference (ms) | vs target |\n|---|---|---|---|---|---|---|"
)


# ---- (a) gateway overhead ------------------------------------------------------------------
def paired(
    client: httpx.Client, direct: str, gateway: str, body: dict[str, Any], pairs: int, warmup: int
) -> dict[str, Any]:
    """Sequential interleaved pairs; the order inside a pair alternates."""

    def once(url: str) -> float:
        start = time.perf_counter()
        client.post(url, json=body).raise_for_status()
        return (time.perf_counter() - start) * 1000

    for _ in range(warmup):
        once(direct)
        once(gateway)
    d_lat: list[float] = []
    g_lat: list[float] = []
    for i in range(pairs):
        if i % 2 == 0:
            d_lat.append(once(direct))
            g_lat.append(once(gateway))
        else:
            g_lat.append(once(gateway))
            d_lat.append(once(direct))
    diffs = [g - d for g, d in zip(g_lat, d_lat, strict=True)]
    return {
        "pairs": pairs,
        "direct": stats(d_lat),
        "gateway": stats(g_lat),
        "added_p50_ms": round(stats(g_lat)["p50_ms"] - stats(d_lat)["p50_ms"], 3),
        "paired_diff_median_ms": round(statistics.median(diffs), 3),
        "paired_diff_mean_ms": round(statistics.fmean(diffs), 3),
    }


def gateway_overhead(base: str, embed_pairs: int, rerank_pairs: int) -> dict[str, Any]:
    embed = {"model": EMBED, "input": "hello world"}
    rerank = {"model": RERANK, "query": "What is the capital of France?", "documents": DOCS}
    with httpx.Client(timeout=60) as client:
        return {
            "embeddings": paired(
                client,
                f"{base}/embeddings/v1/embeddings",
                f"{base}/v1/embeddings",
                embed,
                embed_pairs,
                warmup=30,
            ),
            "rerank": paired(
                client, f"{base}/reranker/v1/rerank", f"{base}/v1/rerank", rerank, rerank_pairs, 20
            ),
        }


# ---- (b) mixed load --------------------------------------------------------------------------
@dataclass
class RouteLog:
    count_tokens: bool = False
    latencies: list[float] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    output_tokens: int = 0
    error_samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, resp: httpx.Response | None, ms: float, note: str = "") -> None:
        with self.lock:
            self.requests += 1
            if resp is not None and resp.status_code == 200:
                self.latencies.append(ms)
                if self.count_tokens:
                    usage = resp.json().get("usage") or {}
                    self.output_tokens += int(usage.get("completion_tokens") or 0)
                return
            self.errors += 1
            if len(self.error_samples) < 5:
                sample = f"{resp.status_code} {resp.text[:300]}" if resp is not None else note
                self.error_samples.append(sample)


def route_requests(base: str, clip: bytes) -> dict[str, Request]:
    v1 = f"{base}/v1"

    def embed(c: httpx.Client) -> httpx.Response:
        return c.post(f"{v1}/embeddings", json={"model": EMBED, "input": "a short sentence"})

    def rerank(c: httpx.Client) -> httpx.Response:
        body = {"model": RERANK, "query": "capital of France", "documents": DOCS}
        return c.post(f"{v1}/rerank", json=body)

    def chat(c: httpx.Client) -> httpx.Response:
        body = {
            "model": LLM,
            "messages": [{"role": "user", "content": "Name three colours."}],
            "max_tokens": 16,
            "temperature": 0,
        }
        return c.post(f"{v1}/chat/completions", json=body)

    def speech(c: httpx.Client) -> httpx.Response:
        body = {"model": TTS, "voice": "alloy", "input": SPEECH, "response_format": "wav"}
        return c.post(f"{v1}/audio/speech", json=body)

    def transcribe(c: httpx.Client) -> httpx.Response:
        return c.post(
            f"{v1}/audio/transcriptions",
            data={"model": STT},
            files={"file": ("clip.wav", clip, "audio/wav")},
        )

    return {
        "embeddings": embed,
        "rerank": rerank,
        "chat": chat,
        "tts": speech,
        "stt": transcribe,
    }


def client_loop(send: Request, log: RouteLog, stop_at: float) -> None:
    with httpx.Client(timeout=300) as client:
        while time.monotonic() < stop_at:
            start = time.perf_counter()
            try:
                resp: httpx.Response | None = send(client)
                note = ""
            except httpx.HTTPError as exc:
                resp, note = None, repr(exc)
            log.add(resp, (time.perf_counter() - start) * 1000, note)


def mixed_load(base: str, clip: bytes, threads: dict[str, int], duration: float) -> dict[str, Any]:
    requests = route_requests(base, clip)
    with httpx.Client(timeout=300) as client:  # warm every route once
        for send in requests.values():
            send(client).raise_for_status()
    logs = {name: RouteLog(count_tokens=name == "chat") for name in requests}
    stop_at = time.monotonic() + duration
    workers = [
        threading.Thread(target=client_loop, args=(requests[name], logs[name], stop_at))
        for name, count in threads.items()
        for _ in range(count)
    ]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    return {name: route_summary(log, threads[name], elapsed) for name, log in logs.items()}


def route_summary(log: RouteLog, clients: int, elapsed: float) -> dict[str, Any]:
    ok = len(log.latencies)
    out: dict[str, Any] = {
        "clients": clients,
        "requests": log.requests,
        "errors": log.errors,
        "throughput_req_s": round(ok / elapsed, 2),
        "seconds": round(elapsed, 1),
        **stats(log.latencies),
        "error_samples": log.error_samples,
    }
    if log.output_tokens:
        out["output_tokens"] = log.output_tokens
        out["output_tokens_per_s"] = round(log.output_tokens / elapsed, 1)
    return out


# ---- report ------------------------------------------------------------------------------------
def overhead_rows(overhead: dict[str, Any]) -> str:
    rows = []
    for name, r in overhead.items():
        verdict = "meets" if r["paired_diff_median_ms"] <= TARGET_GATEWAY_P50_MS else "misses"
        rows.append(
            f"| {name} | {r['pairs']} | {r['direct']['p50_ms']:.2f} / {r['direct']['p99_ms']:.2f} "
            f"| {r['gateway']['p50_ms']:.2f} / {r['gateway']['p99_ms']:.2f} "
            f"| {r['added_p50_ms']:.2f} | **{r['paired_diff_median_ms']:.2f}** "
            f"| {verdict} the 1 ms target |"
        )
    return "\n".join(rows)


def load_rows(mixed: dict[str, Any]) -> str:
    rows = []
    for name, r in mixed.items():
        tok = f"{r['output_tokens_per_s']}" if "output_tokens_per_s" in r else ""
        rows.append(
            f"| {name} | {r['clients']} | {r['requests']} | {r['errors']} "
            f"| {r['throughput_req_s']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {tok} |"
        )
    return "\n".join(rows)


def process_rows(by_process: dict[str, dict[str, float]]) -> str:
    idle, pairs = by_process["idle"], by_process["overhead"]
    names = sorted({*idle, *pairs}, key=lambda k: -(idle.get(k, 0) + pairs.get(k, 0)))
    return "\n".join(f"| {n} | {idle.get(n, 0.0)} | {pairs.get(n, 0.0)} |" for n in names[:12])


def cpu_line(data: dict[str, Any], phase: str) -> str:
    c, q = data["cpu_during"][phase], data["quiet_wait"][phase]
    return (
        f"CPU during this phase (% of one core): machine {c['machine_busy_pct']}, this run "
        f"{c['this_run_pct']}, other processes {c['others_pct']} (waited {q['waited_s']:.0f} s "
        f"beforehand for others to fall below 30 %; last check {q['others_pct']} %)."
    )


def markdown(data: dict[str, Any]) -> str:
    mixed = data["mixed_load"]
    errors = sum(r["errors"] for r in mixed.values())
    return f"""# Fleet benchmark: the local fleet under mixed load

`fleets/local.yaml` (5 CPU services + gateway) on one embedded Ray, CPU only,
{data["cpu_count"]} cores, no GPU lent. Load average before/after the run:
{data["loadavg_start"]} / {data["loadavg_end"]}. `python bench/fleet_bench.py`.

## Gateway overhead (sequential, one keep-alive client, interleaved pairs)

{OVERHEAD_HEADER}
{overhead_rows(data["gateway_overhead"])}

The gateway hop is one extra HTTP parse in the gateway replica plus one Serve handle call to
the service's replica (the direct route goes proxy -> replica). Target: <= 1 ms added at p50.
{cpu_line(data, "overhead")}

CPU by process (% of one core) with the fleet idle ({data["idle_window_s"]:.0f} s, no requests)
and during the sequential pairs above:

| process | idle | during the pairs |
|---|---|---|
{process_rows(data["cpu_by_process_pct"])}

## Mixed load: all five services at once through the gateway, {data["duration_s"]:.0f} s

| route | clients | requests | errors | req/s | p50 (ms) | p99 (ms) | output tok/s |
|---|---|---|---|---|---|---|---|
{load_rows(mixed)}

{cpu_line(data, "mixed")}

Errors (non-200) in total: {errors}. Chat: max_tokens 16, temperature 0; TTS: "{SPEECH}" as wav;
STT: a {data["stt_clip_seconds"]:.1f} s clip synthesized by the TTS service, reused.

Notes:
- CPU only on a {data["cpu_count"]}-core machine: the five models, the gateway, the Serve proxy
  and the 16 client threads all share those cores, so these are contention figures, not any
  one service's capacity (see the per-service benches for those). No GPU was lent.
- Latencies include client-side queueing of the benchmark's own threads (Python, GIL).
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=90, help="mixed-load seconds")
    ap.add_argument("--embed-pairs", type=int, default=300)
    ap.add_argument("--rerank-pairs", type=int, default=150)
    ap.add_argument("--threads", default="embeddings=8,rerank=4,chat=2,tts=1,stt=1")
    ap.add_argument("--idle-window", type=float, default=15, help="idle CPU sample seconds")
    ap.add_argument(
        "--max-wait",
        type=float,
        default=900,
        help="seconds to wait, before each phase, for other processes to leave the CPU",
    )
    args = ap.parse_args()
    threads = {k: int(v) for k, v in (kv.split("=") for kv in args.threads.split(","))}

    load_start = loadavg()
    fleet = start_fleet()
    base = fleet.base_url
    with httpx.Client(timeout=120) as client:
        clip = synthesize(client, base, SPEECH)
    quiet = {"overhead": wait_quiet(args.max_wait)}
    idle = ProcessCpuMeter()
    time.sleep(args.idle_window)
    by_process = {"idle": idle.read()}
    meter, per_proc = CpuMeter(), ProcessCpuMeter()
    overhead = gateway_overhead(base, args.embed_pairs, args.rerank_pairs)
    cpu = {"overhead": meter.read()}
    by_process["overhead"] = per_proc.read()
    print(overhead, cpu, flush=True)
    quiet["mixed"] = wait_quiet(args.max_wait)
    load_before_mixed = loadavg()
    meter, per_proc = CpuMeter(), ProcessCpuMeter()
    mixed = mixed_load(base, clip, threads, args.duration)
    cpu["mixed"] = meter.read()
    by_process["mixed"] = per_proc.read()
    data = {
        "cpu_count": os.cpu_count(),
        "gpu": None,
        "loadavg_start": load_start,
        "loadavg_before_mixed": load_before_mixed,
        "loadavg_end": loadavg(),
        "duration_s": args.duration,
        "idle_window_s": args.idle_window,
        "threads": threads,
        "stt_clip_seconds": round(wav_seconds(clip), 2),
        "quiet_wait": quiet,
        "cpu_during": cpu,
        "cpu_by_process_pct": by_process,
        "gateway_overhead": overhead,
        "target_gateway_added_p50_ms": TARGET_GATEWAY_P50_MS,
        "mixed_load": mixed,
    }
    fleet.serve.stop()
    write_results("fleet", data, markdown(data))


if __name__ == "__main__":
    main()
