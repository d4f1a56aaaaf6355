"""Fleet → the files the cluster's GitOps consumes (`kuberay/app/`).

- `rayservice.yaml`: a KubeRay `RayService` (ray.io/v1). CPU-only head (GCS, dashboard, Serve
  controller, metrics); one worker group per fleet group with its arch's image, the vendor's GPU
  request (`nvidia.com/gpu`, `amd.com/gpu`, `gpu.intel.com/xe`), a `kubernetes.io/hostname`
  node selector, `rayStartParams` with `num-gpus` and the group's custom resource (what the
  Serve config's `ray_actor_options.resources` asks for) and the group's Ray node labels in
  the top-level `labels` field (KubeRay refuses `rayStartParams.labels`). `serveConfigV2` is
  the fleet's Serve config (`render_serve_config`), so one model's change touches only its own
  application there and KubeRay updates it in place.
- `services-ray-aliases.yaml`: KServe-style `{model}-predictor` ExternalName Services.
- `kustomization.yaml`: both, for Flux/Argo CD.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ingress.fleet import Fleet, WorkerGroup
from ingress.render_serve import node_resources, render_serve_config

RAYSERVICE_FILE = "rayservice.yaml"
ALIASES_FILE = "services-ray-aliases.yaml"
KUSTOMIZATION_FILE = "kustomization.yaml"
KSERVE_LABEL = "serving.kserve.io/inferenceservice"
APP_LABEL = "app.kubernetes.io/name"
SHM_VOLUME = {"name": "dshm", "emptyDir": {"medium": "Memory"}}
SHM_MOUNT = {"name": "dshm", "mountPath": "/dev/shm"}
CACHE_VOLUME = "model-cache"


class _Literal(str):
    """A string dumped as a YAML block scalar (`|`): serveConfigV2 stays readable in diffs."""


class _Dumper(yaml.SafeDumper):
    pass


def _literal(dumper: yaml.SafeDumper, data: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(data), style="|")


_Dumper.add_representer(_Literal, _literal)


def dump_yaml(*docs: Any) -> str:
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, width=100, default_flow_style=False)


def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else v


def _quantity_gb(gb: float) -> str:
    return f"{int(gb)}Gi" if float(gb).is_integer() else f"{round(gb * 1024)}Mi"


def ray_start_resources(resources: dict[str, float]) -> str:
    """`rayStartParams.resources`: KubeRay pastes it into the `ray start` command line, so the
    JSON goes in escaped double quotes (KubeRay's own samples: `'"{\\"Custom1\\": 1}"'`)."""
    body = json.dumps({k: _num(v) for k, v in sorted(resources.items())})
    return '"' + body.replace('"', '\\"') + '"'


def parse_ray_start_resources(value: str) -> dict[str, float]:
    """The inverse of `ray_start_resources` (what `ray start --resources` receives)."""
    text = value.strip()
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1].replace('\\"', '"')
    return {k: float(v) for k, v in json.loads(text).items()}


def worker_ray_start_params(fleet: Fleet, g: WorkerGroup) -> dict[str, str]:
    """How a node of group `g` joins Ray: what the placement test's nodes get too."""
    return {
        "num-cpus": str(g.cpus),
        "num-gpus": str(g.gpus),
        "resources": ray_start_resources(node_resources(g)),
        "metrics-export-port": str(fleet.cluster.metrics_port),
    }


def head_ray_start_params(fleet: Fleet) -> dict[str, str]:
    # With worker groups the head schedules nothing (num-cpus 0): replicas and the gateway run
    # on the workers. A fleet with no workers runs everything on the head.
    workers = any(g.replicas > 0 for g in fleet.groups)
    return {
        "dashboard-host": "0.0.0.0",
        "dashboard-port": str(fleet.cluster.dashboard_port),
        "num-cpus": "0" if workers else str(fleet.cluster.head_cpus),
        "metrics-export-port": str(fleet.cluster.metrics_port),
    }


def _pod_labels(fleet: Fleet, component: str) -> dict[str, str]:
    return {
        APP_LABEL: fleet.cluster.rayservice_name,
        "app.kubernetes.io/part-of": "ai-inference",
        "app.kubernetes.io/component": component,
    }


def _common_env(fleet: Fleet) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    c = fleet.cluster
    if c.api_keys_env:
        # Not optional: a missing Secret must stop the pods, not open the endpoint.
        env.append(
            {
                "name": c.api_keys_env,
                "valueFrom": {
                    "secretKeyRef": {"name": c.api_keys_secret, "key": c.api_keys_secret_key}
                },
            }
        )
    return env


def _ports(fleet: Fleet, head: bool) -> list[dict[str, Any]]:
    c = fleet.cluster
    ports = []
    if head:
        ports += [
            {"name": "gcs-server", "containerPort": 6379},
            {"name": "dashboard", "containerPort": c.dashboard_port},
            {"name": "client", "containerPort": 10001},
        ]
    ports += [
        {"name": "serve", "containerPort": c.port},
        {"name": "metrics", "containerPort": c.metrics_port},
    ]
    return ports


def head_group(fleet: Fleet) -> dict[str, Any]:
    c = fleet.cluster
    resources = {"cpu": str(c.head_cpus), "memory": _quantity_gb(c.head_memory_gb)}
    container: dict[str, Any] = {
        "name": "ray-head",
        "image": c.images.cpu,
        "imagePullPolicy": c.image_pull_policy,
        "ports": _ports(fleet, head=True),
        "resources": {"requests": dict(resources), "limits": dict(resources)},
    }
    if env := _common_env(fleet):
        container["env"] = env
    spec: dict[str, Any] = {"containers": [container]}
    if c.head_node_selector:
        spec["nodeSelector"] = dict(c.head_node_selector)
    return {
        "rayStartParams": head_ray_start_params(fleet),
        "template": {"metadata": {"labels": _pod_labels(fleet, "head")}, "spec": spec},
    }


def worker_group(fleet: Fleet, g: WorkerGroup) -> dict[str, Any]:
    c = fleet.cluster
    limits: dict[str, Any] = {"cpu": str(g.cpus), "memory": _quantity_gb(g.memory_gb)}
    requests = dict(limits)
    if g.gpu_resource:
        limits[g.gpu_resource] = g.gpus  # extended resources: limits (requests default to them)
    env = _common_env(fleet) + [{"name": k, "value": v} for k, v in g.env.items()]
    mounts: list[dict[str, Any]] = [dict(SHM_MOUNT)]
    volumes: list[dict[str, Any]] = [json.loads(json.dumps(SHM_VOLUME))]
    if c.model_cache_host_path:
        env.append({"name": "HF_HOME", "value": f"{c.model_cache_host_path}/huggingface"})
        mounts.append({"name": CACHE_VOLUME, "mountPath": c.model_cache_host_path})
        volumes.append(
            {
                "name": CACHE_VOLUME,
                "hostPath": {"path": c.model_cache_host_path, "type": "DirectoryOrCreate"},
            }
        )
    container: dict[str, Any] = {
        "name": "ray-worker",
        "image": c.images.for_arch(g.arch),
        "imagePullPolicy": c.image_pull_policy,
        "ports": _ports(fleet, head=False),
        "resources": {"requests": requests, "limits": limits},
        "volumeMounts": mounts,
    }
    if env:
        container["env"] = env
    node_selector = dict(g.node_selector)
    if g.node:
        node_selector["kubernetes.io/hostname"] = g.node
    spec: dict[str, Any] = {"containers": [container], "volumes": volumes}
    if node_selector:
        spec["nodeSelector"] = node_selector
    labels = {**_pod_labels(fleet, "worker"), "ai-inference/group": g.name}
    return {
        "groupName": g.name,
        "replicas": g.replicas,
        "minReplicas": g.replicas,
        "maxReplicas": g.replicas,
        "rayStartParams": worker_ray_start_params(fleet, g),
        "labels": g.ray_labels,
        "template": {"metadata": {"labels": labels}, "spec": spec},
    }


def serve_config_text(fleet: Fleet) -> str:
    return yaml.safe_dump(render_serve_config(fleet), sort_keys=False, width=100)


def render_rayservice(fleet: Fleet) -> dict[str, Any]:
    c = fleet.cluster
    labels = {APP_LABEL: c.rayservice_name, "app.kubernetes.io/part-of": "ai-inference"}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": c.rayservice_name, "namespace": c.namespace, "labels": labels},
        "spec": {
            "upgradeStrategy": {"type": c.upgrade_strategy},
            "serveService": {
                "metadata": {"name": c.service_name, "labels": dict(labels)},
                "spec": {
                    "type": "ClusterIP",
                    "ports": [{"name": "serve", "port": c.port, "targetPort": c.port}],
                },
            },
            "serveConfigV2": _Literal(serve_config_text(fleet)),
            "rayClusterConfig": {
                "rayVersion": c.ray_version,
                "enableInTreeAutoscaling": False,
                "headGroupSpec": head_group(fleet),
                "workerGroupSpecs": [worker_group(fleet, g) for g in fleet.groups],
            },
        },
    }


def render_aliases(fleet: Fleet) -> list[dict[str, Any]]:
    """One `{model}-predictor` ExternalName Service per model service (KServe's naming), so
    clients of `http://{model}-predictor.{namespace}:{port}` reach the platform unchanged."""
    c = fleet.cluster
    target = f"{c.service_name}.{c.namespace}.svc.{c.cluster_domain}"
    out = []
    for m in fleet.models:
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": f"{m.name}-predictor",
                    "namespace": c.namespace,
                    "labels": {
                        KSERVE_LABEL: m.name,
                        APP_LABEL: c.rayservice_name,
                        "app.kubernetes.io/part-of": "ai-inference",
                    },
                    "annotations": {
                        "ai-inference/route": str(m.route),
                        "ai-inference/models": ",".join(m.model_names),
                    },
                },
                "spec": {
                    "type": "ExternalName",
                    "externalName": target,
                    "ports": [{"name": "http", "port": c.port, "targetPort": c.port}],
                },
            }
        )
    return out


def render_kustomization(fleet: Fleet) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": fleet.cluster.namespace,
        "resources": [RAYSERVICE_FILE, ALIASES_FILE],
    }


def _header(fleet: Fleet, what: str) -> str:
    return (
        f"# {what}, rendered from fleet '{fleet.name}' by `aiserve render FLEET --kuberay-dir "
        "DIR`.\n# Do not edit: change the fleet file and render again (a test checks this file "
        "is current).\n"
    )


def kuberay_files(fleet: Fleet) -> dict[str, str]:
    """File name → text of every rendered manifest."""
    return {
        RAYSERVICE_FILE: _header(fleet, "KubeRay RayService") + dump_yaml(render_rayservice(fleet)),
        ALIASES_FILE: _header(fleet, "KServe-style aliases of the Serve service")
        + dump_yaml(*render_aliases(fleet)),
        KUSTOMIZATION_FILE: _header(fleet, "Kustomization")
        + dump_yaml(render_kustomization(fleet)),
    }


def write_kuberay(fleet: Fleet, out_dir: str | Path, *, check: bool = False) -> list[Path]:
    """Write the manifests into `out_dir`; return the files that changed (with `check`, write
    nothing and return the files that are missing or out of date)."""
    out = Path(out_dir)
    changed = []
    for name, text in kuberay_files(fleet).items():
        path = out / name
        if path.is_file() and path.read_text() == text:
            continue
        changed.append(path)
        if not check:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return changed
