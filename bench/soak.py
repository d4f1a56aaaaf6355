"""Soak: many mixed good and bad requests across the whole local fleet, then check that it is
unharmed: no 5xx, no replica restarted, every app RUNNING, replica memory stable.

About 60 % of the requests are bad but cheap (invalid JSON, missing or unknown model, empty
or over-long input, bad base64, wrong content types, random bytes as audio, huge max_tokens,
negative temperature, unknown voice, top_n < 0, ...); the good ones are kept cheap (short
embeddings, rerank of 3 documents, chat with max_tokens 4, TTS of a few words, STT of a ~1 s
clip). Each request goes through the gateway (`/v1`, `/v2`) or a service's direct route at
random, from several client threads. Each replica's RSS (and with its child processes, for
vLLM's engine core) is read before, half-way and after.

Writes bench/results/soak.json and bench/results/soak.md.

    RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 uv run --frozen --no-sync python bench/soak.py \
        [--requests 10000] [--threads 6] [--bad 0.6]
"""

from __future__ import annotations

import argparse
import base64
import os
import queue
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import stats, write_results
from _fleet import (
    DIRECT,
    DOCS,
    EMBED,
    LLM,
    RERANK,
    STT,
    TTS,
    CpuMeter,
    app_states,
    loadavg,
    rss_snapshot,
    start_fleet,
    synthesize,
    wav_seconds,
)


@dataclass
class Call:
    """One HTTP request, as httpx.Client.request arguments (the path has no base URL yet)."""

    method: str
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)


# A kind builds its call for one route choice: via gateway (True) or the direct route (False).
Builder = Callable[[bool, random.Random], Call]
# (kind, good?, via the gateway?, call)
Job = tuple[str, bool, bool, Call]
Snapshot = dict[str, dict[str, Any]]  # app -> actor id, pid, restarts, RSS


def base(app: str, gateway: bool) -> str:
    return "" if gateway else DIRECT[app]


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": LLM, "messages": [{"role": "user", "content": "Say hi."}], **extra}


def post(app: str, gateway: bool, path: str, **kwargs: Any) -> Call:
    return Call("POST", f"{base(app, gateway)}{path}", kwargs)


JSON = {"content-type": "application/json"}


def good_kinds(clip: bytes) -> dict[str, Builder]:
    def stt(g: bool, r: random.Random) -> Call:
        return post(
            "whisper",
            g,
            "/v1/audio/transcriptions",
            data={"model": STT, "response_format": "json"},
            files={"file": ("clip.wav", clip, "audio/wav")},
        )

    return {
        "embed_ok": lambda g, r: post(
            "embeddings", g, "/v1/embeddings", json={"model": EMBED, "input": f"note {r.random()}"}
        ),
        "rerank_ok": lambda g, r: post(
            "reranker",
            g,
            "/v1/rerank",
            json={"model": RERANK, "query": "capital of France", "documents": DOCS, "top_n": 2},
        ),
        "chat_ok": lambda g, r: post(
            "llm", g, "/v1/chat/completions", json=chat_body(max_tokens=4, temperature=0)
        ),
        "tts_ok": lambda g, r: post(
            "tts",
            g,
            "/v1/audio/speech",
            json={
                "model": TTS,
                "voice": "alloy",
                "input": "Good morning.",
                "response_format": "wav",
            },
        ),
        "stt_ok": stt,
    }


def bad_embed_kinds() -> dict[str, Builder]:
    emb = "/v1/embeddings"
    return {
        "embed_invalid_json": lambda g, r: post(
            "embeddings", g, emb, content=b'{"model": "x", "input": ', headers=JSON
        ),
        "embed_missing_model": lambda g, r: post("embeddings", g, emb, json={"input": "x"}),
        "embed_unknown_model": lambda g, r: post(
            "embeddings", g, emb, json={"model": "gpt-nope", "input": "x"}
        ),
        "embed_empty_input": lambda g, r: post(
            "embeddings", g, emb, json={"model": EMBED, "input": ""}
        ),
        "embed_too_many_inputs": lambda g, r: post(
            "embeddings", g, emb, json={"model": EMBED, "input": ["a"] * 2049}
        ),
        "embed_bad_dimensions": lambda g, r: post(
            "embeddings", g, emb, json={"model": EMBED, "input": "x", "dimensions": 7}
        ),
        "embed_not_object": lambda g, r: post(
            "embeddings", g, emb, content=b"[1, 2]", headers=JSON
        ),
        "embed_text_plain": lambda g, r: post(
            "embeddings",
            g,
            emb,
            content=b"hello",
            headers={"content-type": "text/plain"},
        ),
        "embed_v2_bad_base64": lambda g, r: post(
            "embeddings",
            g,
            f"/v2/models/{EMBED}/infer",
            json={
                "inputs": [
                    {
                        "name": "text",
                        "shape": [1],
                        "datatype": "BYTES",
                        "data": ["!!not base64!!"],
                        "parameters": {"content_type": "base64"},
                    }
                ]
            },
        ),
    }


def bad_rerank_kinds() -> dict[str, Builder]:
    rr = "/v1/rerank"
    q = "capital of France"
    return {
        "rerank_negative_top_n": lambda g, r: post(
            "reranker", g, rr, json={"model": RERANK, "query": q, "documents": DOCS, "top_n": -1}
        ),
        "rerank_empty_query": lambda g, r: post(
            "reranker", g, rr, json={"model": RERANK, "query": "", "documents": DOCS}
        ),
        "rerank_no_documents": lambda g, r: post(
            "reranker", g, rr, json={"model": RERANK, "query": q, "documents": []}
        ),
        "rerank_too_many_documents": lambda g, r: post(
            "reranker", g, rr, json={"model": RERANK, "query": q, "documents": ["d"] * 1001}
        ),
        "rerank_unknown_model": lambda g, r: post(
            "reranker", g, rr, json={"model": "rerank-nope", "query": q, "documents": DOCS}
        ),
    }


def bad_llm_kinds() -> dict[str, Builder]:
    cc = "/v1/chat/completions"
    return {
        "chat_invalid_json": lambda g, r: post("llm", g, cc, content=b"{nope", headers=JSON),
        "chat_huge_max_tokens": lambda g, r: post(
            "llm", g, cc, json=chat_body(max_tokens=10_000_000)
        ),
        "chat_negative_temperature": lambda g, r: post(
            "llm", g, cc, json=chat_body(max_tokens=4, temperature=-1)
        ),
        "chat_messages_not_list": lambda g, r: post(
            "llm", g, cc, json={"model": LLM, "messages": "hi", "max_tokens": 4}
        ),
        "chat_missing_model": lambda g, r: post(
            "llm", g, cc, json={"messages": [{"role": "user", "content": "hi"}]}
        ),
    }


def bad_tts_kinds() -> dict[str, Builder]:
    sp = "/v1/audio/speech"

    def speech(**body: Any) -> dict[str, Any]:
        return {"json": {"model": TTS, "voice": "alloy", "input": "Hi.", **body}}

    return {
        "tts_unknown_voice": lambda g, r: post("tts", g, sp, **speech(voice="nobody-here")),
        "tts_empty_input": lambda g, r: post("tts", g, sp, **speech(input="")),
        "tts_over_long_input": lambda g, r: post("tts", g, sp, **speech(input="a " * 2500)),
        "tts_bad_format": lambda g, r: post("tts", g, sp, **speech(response_format="exe")),
        "tts_bad_speed": lambda g, r: post("tts", g, sp, **speech(speed=99)),
    }


def bad_stt_kinds() -> dict[str, Builder]:
    tr = "/v1/audio/transcriptions"

    def random_audio(g: bool, r: random.Random) -> Call:
        noise = r.randbytes(r.randint(64, 32_768))
        return post(
            "whisper",
            g,
            tr,
            data={"model": STT},
            files={"file": ("noise.wav", noise, "audio/wav")},
        )

    def bad_base64(g: bool, r: random.Random) -> Call:
        name = STT if g else "whisper-tiny.en"
        tensor = {"name": "audio", "shape": [1], "datatype": "BYTES", "data": ["%%%not-b64%%%"]}
        return post("whisper", g, f"/v2/models/{name}/infer", json={"inputs": [tensor]})

    def noise_b64(g: bool, r: random.Random) -> Call:
        name = STT if g else "whisper-tiny.en"
        data = base64.b64encode(r.randbytes(2048)).decode()
        tensor = {"name": "audio", "shape": [1], "datatype": "BYTES", "data": [data]}
        return post("whisper", g, f"/v2/models/{name}/infer", json={"inputs": [tensor]})

    return {
        "stt_random_bytes": random_audio,
        "stt_json_body": lambda g, r: post("whisper", g, tr, json={"model": STT}),
        "stt_missing_file": lambda g, r: post("whisper", g, tr, data={"model": STT}),
        "stt_bad_format": lambda g, r: post(
            "whisper",
            g,
            tr,
            data={"model": STT, "response_format": "xml"},
            files={"file": ("a.wav", b"RIFF", "audio/wav")},
        ),
        "stt_v2_bad_base64": bad_base64,
        "stt_v2_noise": noise_b64,
    }


def bad_misc_kinds() -> dict[str, Builder]:
    return {
        "unknown_path": lambda g, r: Call("GET", f"{'' if g else '/embeddings'}/v1/nope"),
        "gateway_unknown_v2_model": lambda g, r: post(
            "embeddings", True, "/v2/models/nope/infer", json={"inputs": []}
        ),
        "wrong_method": lambda g, r: Call("GET", f"{base('embeddings', g)}/v1/embeddings"),
    }


def all_kinds(clip: bytes) -> tuple[dict[str, Builder], dict[str, Builder]]:
    bad = {
        **bad_embed_kinds(),
        **bad_rerank_kinds(),
        **bad_llm_kinds(),
        **bad_tts_kinds(),
        **bad_stt_kinds(),
        **bad_misc_kinds(),
    }
    return good_kinds(clip), bad


# The good kinds' shares of the good requests: the cheap services get more.
GOOD_WEIGHTS = {"embed_ok": 3, "rerank_ok": 3, "chat_ok": 2, "tts_ok": 2, "stt_ok": 2}


def plan(
    n: int, bad_share: float, good: dict[str, Builder], bad: dict[str, Builder], seed: int
) -> list[Job]:
    """The request sequence: (kind, via_gateway, call), shuffled."""
    rng = random.Random(seed)
    n_bad = round(n * bad_share)
    names = rng.choices(list(good), weights=[GOOD_WEIGHTS[k] for k in good], k=n - n_bad)
    names += [list(bad)[i % len(bad)] for i in range(n_bad)]
    rng.shuffle(names)
    out: list[Job] = []
    for name in names:
        via = rng.random() < 0.5
        builder = good.get(name) or bad[name]
        out.append((name, name in good, via, builder(via, rng)))
    return out


@dataclass
class Tally:
    statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    transport_errors: list[dict[str, Any]] = field(default_factory=list)
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, call: Call, resp: httpx.Response | None, ms: float, err: str) -> None:
        route = "gateway" if call.path.startswith(("/v1/", "/v2/")) else "direct"
        code = resp.status_code if resp is not None else -1
        with self.lock:
            self.done += 1
            self.statuses[(kind, route, code)] += 1
            self.latencies.setdefault(kind, []).append(ms)
            if resp is None:
                self.transport_errors.append({"kind": kind, "path": call.path, "error": err})
            elif code >= 500:
                self.server_errors.append(
                    {
                        "kind": kind,
                        "method": call.method,
                        "path": call.path,
                        "status": code,
                        "body": resp.text[:2000],
                        "request_id": resp.headers.get("x-request-id"),
                        "at": time.strftime("%H:%M:%S"),
                    }
                )


def worker(base_url: str, jobs: queue.Queue[Job], tally: Tally) -> None:
    with httpx.Client(base_url=base_url, timeout=120) as client:
        while True:
            try:
                kind, _good, _via, call = jobs.get_nowait()
            except queue.Empty:
                return
            start = time.perf_counter()
            resp, err = None, ""
            try:
                resp = client.request(call.method, call.path, **call.kwargs)
            except httpx.HTTPError as exc:
                err = repr(exc)
            tally.add(kind, call, resp, (time.perf_counter() - start) * 1000, err)


@dataclass
class SoakRun:
    tally: Tally
    mid: Snapshot
    seconds: float
    series: list[dict[str, Any]]  # every `sample_s`: elapsed, requests done, RSS MiB per app


def rss_point(elapsed: float, done: int) -> dict[str, Any]:
    snap = rss_snapshot()
    rss = {app: s.get("rss_mib") for app, s in snap.items()}
    return {"t_s": round(elapsed), "done": done, "rss_mib": rss}


def run_soak(base_url: str, sequence: list[Job], threads: int, sample_s: float) -> SoakRun:
    jobs: queue.Queue[Job] = queue.Queue()
    for item in sequence:
        jobs.put(item)
    tally = Tally()
    pool = [threading.Thread(target=worker, args=(base_url, jobs, tally)) for _ in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    mid: Snapshot = {}
    half = len(sequence) // 2
    series = [rss_point(0, 0)]
    while any(t.is_alive() for t in pool):
        time.sleep(0.5)
        if not mid and tally.done >= half:
            mid = rss_snapshot()
        elapsed = time.perf_counter() - started
        if elapsed - series[-1]["t_s"] >= sample_s:
            series.append(rss_point(elapsed, tally.done))
            print(f"[{elapsed:6.0f}s] {tally.done}/{len(sequence)} {series[-1]}", flush=True)
    for t in pool:
        t.join()
    seconds = time.perf_counter() - started
    return SoakRun(tally, mid, seconds, series)


def memory_table(
    before: Snapshot, mid: Snapshot, after: Snapshot, series: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = []
    for app in sorted(before):
        b, m, a = before[app], mid.get(app, {}), after.get(app, {})
        row: dict[str, Any] = {"app": app, "pid": b.get("pid")}
        sampled = [p["rss_mib"].get(app) or 0.0 for p in series]
        row["rss_mib_peak"] = max([*sampled, m.get("rss_mib") or 0.0, a.get("rss_mib") or 0.0])
        for key in ("rss_mib", "rss_with_children_mib"):
            row[f"{key}_before"] = b.get(key)
            row[f"{key}_mid"] = m.get(key)
            row[f"{key}_after"] = a.get(key)
        if b.get("rss_mib") and a.get("rss_mib"):
            row["growth_mib"] = round(a["rss_mib"] - b["rss_mib"], 1)
            row["growth_pct"] = round(100 * (a["rss_mib"] / b["rss_mib"] - 1), 2)
            growth = a["rss_with_children_mib"] - b["rss_with_children_mib"]
            row["growth_with_children_mib"] = round(growth, 1)
        row["restarted"] = (
            app not in after
            or a.get("actor_id") != b.get("actor_id")
            or (a.get("num_restarts", 0) != b.get("num_restarts", 0))
        )
        rows.append(row)
    return rows


def status_rows(tally: Tally, good: set[str]) -> list[dict[str, Any]]:
    per: dict[str, Counter[str]] = {}
    for (kind, route, code), n in tally.statuses.items():
        per.setdefault(kind, Counter())[f"{route}:{code}"] += n
    rows = []
    for kind in sorted(per, key=lambda k: (k not in good, k)):
        rows.append(
            {
                "kind": kind,
                "good": kind in good,
                "requests": sum(per[kind].values()),
                "statuses": dict(sorted(per[kind].items())),
                **stats(tally.latencies.get(kind, [])),
            }
        )
    return rows


MEMORY_HEADER = (
    "| app | before | mid | after | peak sampled | growth (MiB) | growth (%) "
    "| with children before -> after | restarted |\n|---|---|---|---|---|---|---|---|---|"
)


def series_table(series: list[dict[str, Any]]) -> str:
    apps = sorted(series[0]["rss_mib"]) if series else []
    head = "| t (s) | requests done | " + " | ".join(apps) + " |"
    rule = "|---|---|" + "---|" * len(apps)
    rows = [
        f"| {p['t_s']} | {p['done']} | " + " | ".join(str(p["rss_mib"].get(a)) for a in apps) + " |"
        for p in series
    ]
    return "\n".join([head, rule, *rows])


def kind_rows(by_kind: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"| {r['kind']} | {'good' if r['good'] else 'bad'} | {r['requests']} | "
        + ", ".join(f"{k} x{v}" for k, v in r["statuses"].items())
        + f" | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |"
        for r in by_kind
    )


def memory_rows(memory: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"| {r['app']} | {r['rss_mib_before']} | {r['rss_mib_mid']} | {r['rss_mib_after']} "
        f"| {r['rss_mib_peak']} | {r.get('growth_mib')} | {r.get('growth_pct')} "
        f"| {r['rss_with_children_mib_before']} -> {r['rss_with_children_mib_after']} "
        f"| {'yes' if r['restarted'] else 'no'} |"
        for r in memory
    )


def markdown(data: dict[str, Any]) -> str:
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(data["by_status"].items()))
    cpu = data["cpu_during"]
    apps = ", ".join(f"{k} {v}" for k, v in data["apps_after"].items())
    return f"""# Soak: {data["requests"]} mixed requests across the local fleet

`fleets/local.yaml` on one embedded Ray, CPU only, {data["cpu_count"]} cores, no GPU lent.
{data["threads"]} client threads sent {data["bad_requests"]} bad and {data["good_requests"]} good
requests, each through the gateway or the service's direct route at random, in
{data["duration_s"]:.0f} s ({data["requests"] / data["duration_s"]:.1f} req/s).
Load average before/after: {data["loadavg_before"]} / {data["loadavg_after"]}. CPU during the
soak (% of one core): this run {cpu["this_run_pct"]}, other processes {cpu["others_pct"]}.
`python bench/soak.py`.

- **5xx responses: {data["server_errors_5xx"]}** (must be 0); transport errors (no response):
  {data["transport_errors"]}.
- Replica restarts: {data["replica_restarts"]} (actor ids and restart counts before vs after).
- Applications at the end: {apps}.
- Status codes: {codes}.

## Replica memory (RSS, MiB)

{MEMORY_HEADER}
{memory_rows(data["memory"])}

"With children" adds the replica's child processes (vLLM's engine core for the LLM). Before
is after a short warm-up of every route, so model loading is not counted as growth. Growth is
after - before of the replica process itself.

RSS (MiB) over the run, sampled every {data["rss_sample_s"]:.0f} s:

{series_table(data["rss_series"])}

## Requests by kind

| kind | good/bad | requests | route:status x count | p50 (ms) | p99 (ms) |
|---|---|---|---|---|---|
{kind_rows(data["by_kind"])}
"""


def warm_up(base_url: str, good: dict[str, Builder]) -> None:
    rng = random.Random(1)
    with httpx.Client(base_url=base_url, timeout=120) as client:
        for _ in range(3):
            for builder in good.values():
                for via in (True, False):
                    call = builder(via, rng)
                    client.request(call.method, call.path, **call.kwargs).raise_for_status()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=6)
    ap.add_argument("--bad", type=float, default=0.6, help="share of bad requests")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample-s", type=float, default=60, help="RSS sampling interval")
    args = ap.parse_args()

    fleet = start_fleet()
    with httpx.Client(timeout=120) as client:
        clip = synthesize(client, fleet.base_url, "Good morning, everyone.")
    good, bad = all_kinds(clip)
    warm_up(fleet.base_url, good)
    sequence = plan(args.requests, args.bad, good, bad, args.seed)
    load_before = loadavg()
    before = rss_snapshot()
    print(f"replicas before: {before}", flush=True)
    meter = CpuMeter()
    run = run_soak(fleet.base_url, sequence, args.threads, args.sample_s)
    tally, mid, seconds = run.tally, run.mid, run.seconds
    cpu = meter.read()
    time.sleep(2)
    after = rss_snapshot()
    apps_after = app_states()
    memory = memory_table(before, mid, after, run.series)
    by_status: Counter[str] = Counter()
    for (_, _, code), n in tally.statuses.items():
        by_status[str(code)] += n
    n_bad = sum(1 for item in sequence if not item[1])
    data = {
        "cpu_count": os.cpu_count(),
        "gpu": None,
        "requests": len(sequence),
        "bad_requests": n_bad,
        "good_requests": len(sequence) - n_bad,
        "threads": args.threads,
        "duration_s": round(seconds, 1),
        "stt_clip_seconds": round(wav_seconds(clip), 2),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "cpu_during": cpu,
        "server_errors_5xx": sum(n for c, n in by_status.items() if c.startswith("5")),
        "transport_errors": len(tally.transport_errors),
        "replica_restarts": sum(1 for r in memory if r["restarted"]),
        "apps_after": apps_after,
        "all_running": all(s == "RUNNING" for s in apps_after.values()),
        "by_status": dict(by_status),
        "by_kind": status_rows(tally, set(good)),
        "memory": memory,
        "rss_before": before,
        "rss_mid": mid,
        "rss_after": after,
        "rss_sample_s": args.sample_s,
        "rss_series": run.series,
        "server_error_samples": tally.server_errors[:50],
        "transport_error_samples": tally.transport_errors[:50],
    }
    fleet.serve.stop()
    write_results("soak", data, markdown(data))


if __name__ == "__main__":
    main()
