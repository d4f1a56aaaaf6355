"""Placement for real: the homelab topology on a local multi-node Ray whose nodes carry the
homelab's (logical) GPUs, custom resources and labels exactly as the rendered RayService gives
them, running the Serve config `render_serve_config` renders (see tests/placement_check.py,
run in its own process: a ray.cluster_utils.Cluster cannot share the session's embedded Ray).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "placement_check.py"
GROUP_OF = {
    "llm": "khelben",
    "whisper": "elminster",
    "tts": "elminster",
    "embeddings": "drizzt",
    "reranker": "danilo",
}


@pytest.fixture(scope="module")
def placed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("placement") / "result.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)],
        capture_output=True,
        text=True,
        timeout=420,
        env=env,
        cwd=ROOT,
    )
    if not out.is_file():
        pytest.fail(
            f"placement check wrote no result (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["ok"], result.get("error", "")[-4000:]
    return result


def test_every_replica_lands_on_its_node(placed: dict[str, Any]) -> None:
    statuses = placed["statuses"]
    for app in [*GROUP_OF, "gateway"]:
        assert statuses[app]["status"] == "RUNNING", (app, statuses[app])
    nodes = placed["nodes"]
    for app, group in GROUP_OF.items():
        assert placed["replica_nodes"][app] == [nodes[group]], (app, placed["replica_nodes"])
    for app, probe in placed["probes"].items():
        assert probe["node_id"] == nodes[GROUP_OF[app]]
    # The head schedules nothing (num-cpus 0, as in the RayService).
    assert nodes["head"] not in {n for ns in placed["replica_nodes"].values() for n in ns}


def test_whisper_and_tts_share_one_gpu(placed: dict[str, Any]) -> None:
    whisper, tts = placed["probes"]["whisper"], placed["probes"]["tts"]
    assert whisper["node_id"] == tts["node_id"]
    assert whisper["gpu_ids"] == tts["gpu_ids"] == ["0"]
    assert whisper["env"]["CUDA_VISIBLE_DEVICES"] == tts["env"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert whisper["assigned"]["GPU"] == tts["assigned"]["GPU"] == 0.5


def test_replicas_get_their_fraction_and_budget(placed: dict[str, Any]) -> None:
    expect = {
        "llm": (0.95, "rocm"),
        "whisper": (0.5, "cuda"),
        "tts": (0.5, "cuda"),
        "reranker": (0.8, "xpu"),
    }
    for app, (fraction, device) in expect.items():
        probe = placed["probes"][app]
        assert probe["assigned"]["GPU"] == fraction
        assert probe["gpu_ids"] == ["0"]
        # render_serve passes the budget the replica enforces (vLLM gpu_memory_utilization,
        # torch per-process memory fraction) and the device of its arch.
        assert probe["args"]["gpu_memory_fraction"] == fraction
        assert probe["args"]["device"] == device
        assert probe["args"]["api_keys_env"] == "AI_API_KEYS"


def test_node_labels_are_the_groups(placed: dict[str, Any]) -> None:
    labels = placed["node_labels"]
    for group in set(GROUP_OF.values()):
        node_labels = labels[placed["nodes"][group]]
        assert node_labels["ai-inference/group"] == group


def test_missing_node_is_reported_while_the_rest_serve(placed: dict[str, Any]) -> None:
    assert placed["statuses"]["vision"]["status"] != "RUNNING"
    problems = placed["placement_problems"]
    assert set(problems) == {"vision"}
    assert "no live node has accel_ghost" in problems["vision"]
    assert "worker group 'ghost' (node offline-box) is not in the cluster" in problems["vision"]
    serve_says = placed["statuses"]["vision"]["deployment:EmbeddingServer"]
    assert "accel_ghost" in serve_says and "to be scheduled" in serve_says


def test_the_real_embeddings_model_answers_through_the_gateway(placed: dict[str, Any]) -> None:
    emb = placed["embedding"]
    assert emb["unauthenticated_status"] == 401  # the fleet's API key (a Secret in KubeRay)
    assert emb["status"] == 200, emb["body"]
    assert emb["dims"] == 384  # the packaged MiniLM, served as bge-large-en-v1.5's names
