"""Fleet → Serve config (`applications:`), for `serve run`/local runs and `serveConfigV2`."""

from __future__ import annotations

from typing import Any

from ingress.fleet import Fleet, ModelService, WorkerGroup
from ingress.services import (
    GATEWAY_APP,
    GATEWAY_DEPLOYMENT,
    GATEWAY_IMPORT_PATH,
    SERVICE_KINDS,
)

ARCH_DEVICE = {"cpu": "cpu", "cuda": "cuda", "rocm": "rocm", "xpu": "xpu"}
# Every node of a worker group advertises PLACEMENT_CAPACITY of the group's custom resource
# (`accel_<group>`); each replica asks for a token PLACEMENT_UNITS of it, which pins it to the
# group's nodes without limiting how many replicas share them (GPUs and CPUs do that).
PLACEMENT_CAPACITY = 1.0
PLACEMENT_UNITS = 0.001


def node_resources(group: WorkerGroup) -> dict[str, float]:
    """The custom resources a node of `group` advertises (KubeRay `rayStartParams.resources`,
    `ray start --resources`, or a test cluster's node)."""
    return {group.resource: PLACEMENT_CAPACITY}


def admission_limit(m: ModelService) -> int | None:
    """Requests one replica holds (working + waiting) before it answers 503 + Retry-After.

    Serve's own queue limit answers a plain-text 503 with no Retry-After, so the bound is
    enforced inside the replica (the OpenAI error shape) and Serve lets that many through."""
    if m.max_queued_requests < 0:
        return None
    return m.max_ongoing_requests + m.max_queued_requests


def service_args(fleet: Fleet, m: ModelService) -> dict[str, Any]:
    args = dict(m.args)
    limit = admission_limit(m)
    if limit is not None:
        args.setdefault("max_concurrent_requests", limit)
    group = fleet.group(m.group)
    args.setdefault("device", ARCH_DEVICE[group.arch] if group and m.gpu_fraction > 0 else "cpu")
    if m.gpu_fraction > 0:
        args.setdefault("gpu_memory_fraction", m.gpu_fraction)
    for key in ("api_keys_env", "api_keys_file"):
        value = getattr(fleet.cluster, key)
        if value and key not in args:
            args[key] = value
    return args


def actor_options(fleet: Fleet, m: ModelService) -> dict[str, Any]:
    opts: dict[str, Any] = {"num_cpus": m.num_cpus}
    group = fleet.group(m.group)
    if m.gpu_fraction > 0:
        # num_gpus is what sets CUDA_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES / ZE_AFFINITY_MASK:
        # always request it alongside the placement resource.
        opts["num_gpus"] = m.gpu_fraction
    if group is not None:
        opts["resources"] = {group.resource: PLACEMENT_UNITS}
    env = {**(group.env if group else {}), **m.env}
    if env:
        opts["runtime_env"] = {"env_vars": env}
    return opts


def deployment_entry(fleet: Fleet, m: ModelService) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": SERVICE_KINDS[m.kind].deployment}
    if m.autoscaling is not None:
        entry["autoscaling_config"] = m.autoscaling.model_dump()
    else:
        entry["num_replicas"] = m.replicas
    limit = admission_limit(m)
    entry.update(
        # Requests up to the replica's admission limit reach it (it queues them itself and
        # refuses the rest in the OpenAI shape); Serve's queue only catches what is left.
        max_ongoing_requests=limit if limit is not None else m.max_ongoing_requests,
        max_queued_requests=m.max_queued_requests,
        max_surge_percent=(
            m.max_surge_percent
            if m.max_surge_percent is not None
            else (0 if m.gpu_fraction > 0 else 100)
        ),
        health_check_period_s=m.health_check_period_s,
        health_check_timeout_s=m.health_check_timeout_s,
        graceful_shutdown_timeout_s=m.graceful_shutdown_timeout_s,
        user_config=dict(m.user_config),
        ray_actor_options=actor_options(fleet, m),
    )
    return entry


def gateway_args(fleet: Fleet) -> dict[str, Any]:
    args: dict[str, Any] = {
        "routes": fleet.routing_table(),
        "apps": {m.name: m.kind for m in fleet.models},
    }
    for key in ("api_keys_env", "api_keys_file"):
        value = getattr(fleet.cluster, key)
        if value:
            args[key] = value
    return args


def render_serve_config(fleet: Fleet) -> dict[str, Any]:
    apps: list[dict[str, Any]] = []
    for m in fleet.models:
        apps.append(
            {
                "name": m.name,
                "route_prefix": m.route,
                "import_path": SERVICE_KINDS[m.kind].import_path,
                "args": service_args(fleet, m),
                "deployments": [deployment_entry(fleet, m)],
            }
        )
    apps.append(
        {
            "name": GATEWAY_APP,
            "route_prefix": "/",
            "import_path": GATEWAY_IMPORT_PATH,
            "args": gateway_args(fleet),
            "deployments": [
                {
                    "name": GATEWAY_DEPLOYMENT,
                    "num_replicas": 1,
                    "max_ongoing_requests": 512,
                    "max_surge_percent": 100,  # CPU only: the new one starts first
                    "ray_actor_options": {"num_cpus": 0.25},
                }
            ],
        }
    )
    return {
        "proxy_location": "EveryNode",
        "http_options": {
            "host": fleet.cluster.host,
            "port": fleet.cluster.port,
            "request_timeout_s": fleet.cluster.request_timeout_s,
        },
        "logging_config": {"encoding": "JSON", "log_level": "INFO", "enable_access_log": False},
        "applications": apps,
    }
