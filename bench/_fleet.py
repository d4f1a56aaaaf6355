"""The local fleet (`fleets/local.yaml`) on one embedded Ray, for the fleet-level benchmarks
(`fleet_bench.py`, `soak.py`): start and deploy it, probe replicas, make test audio."""

from __future__ import annotations

import contextlib
import io
import os
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
FLEET = ROOT / "fleets" / "local.yaml"

EMBED = "all-minilm-l6-v2"
RERANK = "rerank-english-v3.0"
LLM = "smollm2-135m-instruct"
TTS = "tts-1"
STT = "whisper-1"
# application name -> its direct route prefix (the gateway is `/v1` at the root)
DIRECT = {
    "embeddings": "/embeddings",
    "reranker": "/reranker",
    "llm": "/llm",
    "tts": "/tts",
    "whisper": "/whisper",
}
DOCS = [
    "Bananas are rich in potassium.",
    "Paris is the capital and largest city of France.",
    "The stock market fell on Monday.",
]


@dataclass
class Fleet:
    serve: Any  # serve_common.testkit.LocalServe
    base_url: str
    config: dict[str, Any]


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def start_fleet(timeout_s: float = 1500) -> Fleet:
    """One embedded LocalServe with the rendered local fleet (no API keys), all RUNNING."""
    from ingress.fleet import load_fleet
    from ingress.local import deploy_config, wait_ready
    from ingress.render_serve import render_serve_config
    from serve_common.testkit import LocalServe

    serve = LocalServe.shared()
    config = render_serve_config(load_fleet(FLEET))
    started = time.monotonic()
    deploy_config(config)
    states = wait_ready(config, timeout_s=timeout_s)
    failed = {n: s for n, s in states.items() if s[0] != "RUNNING"}
    if failed:
        raise RuntimeError(f"local fleet did not come up: {failed}")
    print(f"fleet RUNNING after {time.monotonic() - started:.0f}s at {serve.base_url}", flush=True)
    return Fleet(serve, serve.base_url, config)


def app_states() -> dict[str, str]:
    from ingress.local import app_states as states_and_messages

    return {name: state for name, (state, _) in states_and_messages().items()}


def _actor_rows() -> list[dict[str, Any]]:
    """ALIVE actors as dicts (id, class_name, name, pid, num_restarts): the state API when it
    answers, else the GCS actor table (the embedded Ray runs without a dashboard)."""
    try:
        from ray.util.state import list_actors

        actors = list_actors(
            filters=[("state", "=", "ALIVE")], limit=1000, raise_on_missing_output=False
        )
        return [
            {
                "actor_id": a.actor_id,
                "class_name": a.class_name,
                "name": a.name,
                "pid": a.pid,
                "num_restarts": int(getattr(a, "num_restarts", 0) or 0),
            }
            for a in actors
        ]
    except Exception:
        import ray

        rows = []
        for actor_id, info in ray._private.state.actors().items():
            if info.get("State") not in ("ALIVE", 2):
                continue
            rows.append(
                {
                    "actor_id": actor_id,
                    "class_name": info.get("ActorClassName", ""),
                    "name": info.get("Name", ""),
                    "pid": info.get("Pid"),
                    "num_restarts": int(info.get("NumRestarts", 0) or 0),
                }
            )
        return rows


def replica_actors() -> list[dict[str, Any]]:
    """The Serve replica actors of the fleet's applications (and the gateway)."""
    apps = {*DIRECT, "gateway"}
    out = []
    for row in _actor_rows():
        text = f"{row['class_name']} {row['name']}"
        if "ServeReplica" not in text and "SERVE_REPLICA" not in text:
            continue
        app = next((a for a in apps if f":{a}:" in text or f"::{a}#" in text), None)
        if app is not None:
            out.append({**row, "app": app})
    return sorted(out, key=lambda r: r["app"])


def rss_mib(pid: int) -> dict[str, float]:
    """RSS of a process and of it with its children (vLLM's engine core is a child), in MiB."""
    import psutil

    proc = psutil.Process(pid)
    own = proc.memory_info().rss
    total = own
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_info().rss
    return {"rss_mib": round(own / 2**20, 1), "rss_with_children_mib": round(total / 2**20, 1)}


def rss_snapshot() -> dict[str, dict[str, Any]]:
    """Per replica: actor id, pid, restarts and RSS (keyed by app name)."""
    snap = {}
    for row in replica_actors():
        mem: dict[str, Any]
        try:
            mem = rss_mib(int(row["pid"]))
        except Exception as exc:  # the process went away between listing and reading
            mem = {"error": repr(exc)}
        snap[row["app"]] = {
            "actor_id": row["actor_id"],
            "pid": row["pid"],
            "num_restarts": row["num_restarts"],
            **mem,
        }
    return snap


def wav_seconds(data: bytes) -> float:
    """Duration from the bytes present (a streamed WAV's header may claim an unknown length)."""
    with wave.open(io.BytesIO(data)) as w:
        frame_bytes = w.getsampwidth() * w.getnchannels()
        rate = w.getframerate()
    start = data.find(b"data") + 8
    return float((len(data) - start) / frame_bytes / rate)


def _own_cpu_s() -> float:
    """CPU seconds of this process and every descendant (the embedded Ray and its replicas)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def _machine_busy_s() -> float:
    import psutil

    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0))


class CpuMeter:
    """Machine CPU use over an interval, split into this run's processes and everyone else's,
    in percent of one core (200 = both cores of a 2-core machine busy)."""

    def __init__(self) -> None:
        self.wall = time.monotonic()
        self.busy = _machine_busy_s()
        self.own = _own_cpu_s()

    def read(self) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        busy = _machine_busy_s() - self.busy
        own = _own_cpu_s() - self.own
        return {
            "seconds": round(wall, 1),
            "machine_busy_pct": round(100 * busy / wall, 1),
            "this_run_pct": round(100 * own / wall, 1),
            "others_pct": round(100 * max(0.0, busy - own) / wall, 1),
        }


def _label(proc: Any) -> str:
    """A process's group: Ray's title without the running method (ray::ServeController), else
    the executable's name."""
    try:
        cmd = proc.cmdline()
    except Exception:
        cmd = []
    first = str(cmd[0] if cmd else proc.name())
    if first.startswith("ray::"):
        return first.split(" ")[0].split(".")[0]
    return Path(first).name


def replica_pids() -> dict[int, str]:
    return {int(r["pid"]): f"replica:{r['app']}" for r in replica_actors() if r["pid"]}


def cpu_by_pid(replicas: dict[int, str]) -> dict[int, tuple[str, float]]:
    """CPU seconds of each of this run's processes with its group: a replica and its children
    by the replica's app, the rest by process (ray::ProxyActor, raylet, gcs_server, python)."""
    import psutil

    me = psutil.Process()
    out: dict[int, tuple[str, float]] = {}
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            owner = next(
                (replicas[p.pid] for p in [proc, *proc.parents()] if p.pid in replicas), None
            )
            t = proc.cpu_times()
            out[proc.pid] = (owner or _label(proc), t.user + t.system)
    return out


class ProcessCpuMeter:
    """Per-process-group CPU use over an interval, in percent of one core."""

    def __init__(self) -> None:
        self.replicas = replica_pids()
        self.wall = time.monotonic()
        self.start = cpu_by_pid(self.replicas)

    def read(self) -> dict[str, float]:
        wall = time.monotonic() - self.wall
        groups: dict[str, float] = {}
        for pid, (label, secs) in cpu_by_pid(self.replicas).items():
            name, before = self.start.get(pid, (label, 0.0))
            groups[name] = groups.get(name, 0.0) + secs - before
        pct = {k: round(100 * v / wall, 1) for k, v in groups.items()}
        return dict(sorted(((k, v) for k, v in pct.items() if v >= 0.5), key=lambda kv: -kv[1]))


def wait_quiet(
    max_wait_s: float, others_pct: float = 30.0, window_s: float = 10.0
) -> dict[str, Any]:
    """Wait (at most max_wait_s) until other processes on the machine use less than
    `others_pct` % of a core over a window: other test runs share this machine."""
    started = time.monotonic()
    while True:
        meter = CpuMeter()
        time.sleep(window_s)
        sample = meter.read()
        waited = time.monotonic() - started
        if sample["others_pct"] < others_pct or waited >= max_wait_s:
            print(f"quiet check after {waited:.0f}s: {sample}", flush=True)
            return {"waited_s": round(waited, 1), **sample}


def synthesize(client: httpx.Client, base_url: str, text: str) -> bytes:
    resp = client.post(
        f"{base_url}/v1/audio/speech",
        json={"model": TTS, "voice": "alloy", "input": text, "response_format": "wav"},
    )
    resp.raise_for_status()
    return resp.content


def ray_logs_dir() -> Path:
    return Path("/tmp/ray/session_latest/logs")
