"""The committed KubeRay manifests (`kuberay/app/`): current with fleets/homelab.yaml, valid
against the KubeRay RayService CRD (strictly: unknown fields are errors) and KubeRay's own
admission rules, Services valid against a strict schema of a v1 ExternalName Service, and a
model's change touching only that model's application in serveConfigV2."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from ingress.fleet import Fleet, load_fleet, parse_fleet
from ingress.render_kuberay import (
    ALIASES_FILE,
    KUSTOMIZATION_FILE,
    RAYSERVICE_FILE,
    kuberay_files,
    parse_ray_start_resources,
    render_aliases,
    render_rayservice,
)
from ingress.render_serve import node_resources, render_serve_config

ROOT = Path(__file__).resolve().parents[1]
HOMELAB = ROOT / "fleets" / "homelab.yaml"
APP_DIR = ROOT / "kuberay" / "app"
CRD = ROOT.parent / "shared" / "schemas" / "kuberay" / "ray.io_rayservices.yaml"
RENDER_CMD = "aiserve render fleets/homelab.yaml --kuberay-dir kuberay/app"


@pytest.fixture(scope="module")
def homelab() -> Fleet:
    return load_fleet(HOMELAB)


@pytest.fixture(scope="module")
def committed() -> dict[str, str]:
    return {p.name: p.read_text() for p in APP_DIR.glob("*.yaml")}


# ---- up to date --------------------------------------------------------------------------


def test_committed_manifests_are_current(homelab: Fleet, committed: dict[str, str]) -> None:
    rendered = kuberay_files(homelab)
    stale = [name for name, text in rendered.items() if committed.get(name) != text]
    assert not stale, f"kuberay/app is out of date ({', '.join(stale)}): run `{RENDER_CMD}`"
    extra = set(committed) - set(rendered)
    assert not extra, f"files in kuberay/app that the renderer does not produce: {extra}"


def test_render_check_cli(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "ingress.cli", "render", str(HOMELAB)]
    ok = subprocess.run([*cli, "--kuberay-dir", str(APP_DIR), "--check"], capture_output=True)
    assert ok.returncode == 0, ok.stderr
    out = tmp_path / "app"
    wrote = subprocess.run([*cli, "--kuberay-dir", str(out)], capture_output=True, text=True)
    assert wrote.returncode == 0 and "wrote" in wrote.stdout
    (out / RAYSERVICE_FILE).write_text("stale\n")
    stale = subprocess.run(
        [*cli, "--kuberay-dir", str(out), "--check"], capture_output=True, text=True
    )
    assert stale.returncode == 1 and "out of date" in stale.stderr


# ---- the CRD -----------------------------------------------------------------------------


def _strict(node: Any) -> Any:
    """OpenAPI v3 (Kubernetes structural schema) → JSON Schema, strict like
    `kubectl apply --validate=strict`: unknown fields fail unless the schema preserves them."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable"):
        t = out.get("type")
        out["type"] = [*(t if isinstance(t, list) else [t]), "null"] if t else None
        out.pop("nullable", None)
        if out["type"] is None:
            out.pop("type")
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in node and "additionalProperties" not in node and not preserve:
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def crd_validator() -> jsonschema.Draft7Validator:
    if not CRD.is_file():
        pytest.skip(f"KubeRay CRD schema not found at {CRD} (../shared is absent)")
    crd = yaml.safe_load(CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _strict(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(validator: jsonschema.Draft7Validator, doc: Any) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]


def test_rayservice_validates_against_the_crd(
    crd_validator: jsonschema.Draft7Validator, committed: dict[str, str]
) -> None:
    doc = yaml.safe_load(committed[RAYSERVICE_FILE])
    errors = _errors(crd_validator, doc)
    assert not errors, "\n".join(errors[:20])


def test_crd_check_is_strict(crd_validator: jsonschema.Draft7Validator, homelab: Fleet) -> None:
    """The check is worth something: the mistakes it must catch are caught."""
    doc = json.loads(json.dumps(render_rayservice(homelab)))
    bad = copy.deepcopy(doc)
    bad["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["rayStartParams"]["num-gpus"] = 1
    assert any("num-gpus" in e for e in _errors(crd_validator, bad))
    bad = copy.deepcopy(doc)
    bad["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["nodeSelectr"] = {}
    assert any("nodeSelectr" in e for e in _errors(crd_validator, bad))
    bad = copy.deepcopy(doc)
    container = bad["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][
        0
    ]
    container["ports"][0]["containerPort"] = "6379"
    assert _errors(crd_validator, bad)
    bad = copy.deepcopy(doc)
    del bad["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["groupName"]
    assert any("groupName" in e for e in _errors(crd_validator, bad))


# ---- KubeRay's admission rules (ray-operator/controllers/ray/utils/validation.go) --------


def test_kuberay_admission_rules(committed: dict[str, str]) -> None:
    doc = yaml.safe_load(committed[RAYSERVICE_FILE])
    name = doc["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 47
    cluster = doc["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for g in groups:
        assert g["template"]["spec"]["containers"], "every group needs a container"
        params = g.get("rayStartParams", {})
        assert all(isinstance(v, str) for v in params.values())
        has_start_resources = any(
            params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")
        )
        assert not (has_start_resources and g.get("resources")), "resources set twice"
        assert "labels" not in params, "KubeRay refuses rayStartParams.labels"
        for key, value in g.get("labels", {}).items():
            assert re.fullmatch(r"([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", key)
            assert re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", value)
            assert len(value) <= 63
    assert not cluster["headGroupSpec"].get("headService", {}).get("metadata", {}).get("name")
    assert doc["spec"]["upgradeStrategy"]["type"] in ("NewCluster", "None")


# ---- what the RayService says ------------------------------------------------------------


def test_rayservice_shape(homelab: Fleet, committed: dict[str, str]) -> None:
    doc = yaml.safe_load(committed[RAYSERVICE_FILE])
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayService"
    assert doc["metadata"]["namespace"] == "ai-ml"
    svc = doc["spec"]["serveService"]
    assert svc["metadata"]["name"] == "ai-inference-serve-svc"
    assert [p["port"] for p in svc["spec"]["ports"]] == [8000]

    cluster = doc["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.60.0"
    head = cluster["headGroupSpec"]
    head_container = head["template"]["spec"]["containers"][0]
    assert head["rayStartParams"]["num-cpus"] == "0"  # CPU-only head that schedules no replica
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    head_limits = head_container["resources"]["limits"]
    assert not [k for k in head_limits if "gpu" in k], "the head requests no GPU"
    ports = {p["name"]: p["containerPort"] for p in head_container["ports"]}
    assert ports["dashboard"] == 8265 and ports["metrics"] == 8080 and ports["serve"] == 8000
    env = {e["name"]: e for e in head_container["env"]}
    assert env["AI_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": "ai-inference-api-keys",
        "key": "api-keys",
    }

    workers = {w["groupName"]: w for w in cluster["workerGroupSpecs"]}
    assert set(workers) == {"khelben", "elminster", "drizzt", "danilo"}
    expect = {
        "khelben": ("rocm", "amd.com/gpu"),
        "elminster": ("cuda", "nvidia.com/gpu"),
        "drizzt": ("rocm", "amd.com/gpu"),
        "danilo": ("xpu", "gpu.intel.com/xe"),
    }
    for name, (arch, gpu) in expect.items():
        w = workers[name]
        g = homelab.group(name)
        assert g is not None
        spec = w["template"]["spec"]
        container = spec["containers"][0]
        assert container["image"] == homelab.cluster.images.for_arch(g.arch)
        assert container["image"].endswith(f":{arch}")
        assert container["resources"]["limits"][gpu] == 1
        assert spec["nodeSelector"]["kubernetes.io/hostname"] == name
        assert w["rayStartParams"]["num-gpus"] == "1"
        assert parse_ray_start_resources(w["rayStartParams"]["resources"]) == node_resources(g)
        assert w["labels"]["ai-inference/group"] == name
        assert w["labels"]["ai-inference/arch"] == arch
        assert w["replicas"] == w["minReplicas"] == w["maxReplicas"] == 1
        worker_env = {e["name"]: e for e in container["env"]}
        assert "AI_API_KEYS" in worker_env
        assert {p["name"] for p in container["ports"]} >= {"metrics", "serve"}
    drizzt_env = {
        e["name"]: e.get("value")
        for e in workers["drizzt"]["template"]["spec"]["containers"][0]["env"]
    }
    assert drizzt_env["HSA_OVERRIDE_GFX_VERSION"] == "10.3.0"


def test_serve_config_v2_is_the_fleets_serve_config(
    homelab: Fleet, committed: dict[str, str]
) -> None:
    from ray.serve.schema import ServeDeploySchema

    doc = yaml.safe_load(committed[RAYSERVICE_FILE])
    serve_config = yaml.safe_load(doc["spec"]["serveConfigV2"])
    assert serve_config == json.loads(json.dumps(render_serve_config(homelab)))
    ServeDeploySchema.model_validate(serve_config)  # what KubeRay hands to Serve
    # Every resource a replica asks for is advertised by the node of its group.
    advertised = {
        w["groupName"]: parse_ray_start_resources(w["rayStartParams"]["resources"])
        for w in doc["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    }
    for app in serve_config["applications"]:
        m = homelab.model(app["name"])
        opts = app["deployments"][0]["ray_actor_options"]
        if m is None:  # the gateway: any node
            assert "resources" not in opts
            continue
        for resource, amount in opts["resources"].items():
            assert advertised[m.group][resource] >= amount
        assert opts["num_gpus"] <= float(
            next(
                w["rayStartParams"]["num-gpus"]
                for w in doc["spec"]["rayClusterConfig"]["workerGroupSpecs"]
                if w["groupName"] == m.group
            )
        )


# ---- in-place upgrades -------------------------------------------------------------------


def _apps(rayservice: dict[str, Any]) -> dict[str, Any]:
    config = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    return {a["name"]: a for a in config["applications"]}


def _changed(a: dict[str, Any], b: dict[str, Any]) -> set[str]:
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


@pytest.mark.parametrize(
    ("model", "change", "fields"),
    [
        ("llm", {"args": {"max_model_len": 16384}}, {"args"}),
        ("reranker", {"user_config": {"max_documents": 500}}, {"deployments"}),
        # the fraction is both the Ray share and the replica's memory budget
        ("embeddings", {"gpu_fraction": 0.7}, {"args", "deployments"}),
        ("tts", {"args": {"default_language": "de"}}, {"args"}),
    ],
)
def test_one_models_change_touches_only_its_application(
    model: str, change: dict[str, Any], fields: set[str]
) -> None:
    """KubeRay applies a serveConfigV2 change to the running cluster (no new RayCluster when
    rayClusterConfig is unchanged) and Serve redeploys only the applications whose config
    changed; a user_config-only change reconfigures the replicas in place."""
    raw = yaml.safe_load(HOMELAB.read_text())
    before = render_rayservice(parse_fleet(raw))
    m = next(x for x in raw["models"] if x["name"] == model)
    for key, value in change.items():
        if isinstance(value, dict):
            m.setdefault(key, {}).update(value)
        else:
            m[key] = value
    after = render_rayservice(parse_fleet(raw))

    assert before["spec"]["rayClusterConfig"] == after["spec"]["rayClusterConfig"]
    assert before["metadata"] == after["metadata"]
    apps_before, apps_after = _apps(before), _apps(after)
    assert _changed(apps_before, apps_after) == {model}
    assert _changed(apps_before[model], apps_after[model]) == fields
    if "user_config" in change:
        d0, d1 = apps_before[model]["deployments"][0], apps_after[model]["deployments"][0]
        assert _changed(d0, d1) == {"user_config"}


# ---- the aliases -------------------------------------------------------------------------

DNS_1035 = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"

# A strict JSON Schema of what a v1 Service of type ExternalName may hold (from the Kubernetes
# API reference: ServiceSpec; an ExternalName service has no selector and no cluster IP).
EXTERNAL_NAME_SERVICE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "v1"},
        "kind": {"const": "Service"},
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": DNS_1035, "maxLength": 63},
                "namespace": {"type": "string", "pattern": DNS_1035, "maxLength": 63},
                "labels": {
                    "type": "object",
                    "propertyNames": {"pattern": LABEL_KEY},
                    "additionalProperties": {"type": "string", "pattern": LABEL_VALUE},
                },
                "annotations": {
                    "type": "object",
                    "propertyNames": {"pattern": LABEL_KEY},
                    "additionalProperties": {"type": "string"},
                },
            },
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["type", "externalName"],
            "properties": {
                "type": {"const": "ExternalName"},
                "externalName": {"type": "string", "pattern": DNS_1123_SUBDOMAIN, "maxLength": 253},
                "ports": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "name": {"type": "string", "pattern": DNS_1035, "maxLength": 15},
                            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                            "targetPort": {
                                "oneOf": [
                                    {"type": "integer", "minimum": 1, "maximum": 65535},
                                    {"type": "string", "pattern": DNS_1035, "maxLength": 15},
                                ]
                            },
                            "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
                        },
                    },
                },
            },
        },
    },
}


def test_aliases_are_valid_externalname_services(homelab: Fleet, committed: dict[str, str]) -> None:
    docs = list(yaml.safe_load_all(committed[ALIASES_FILE]))
    validator = jsonschema.Draft7Validator(EXTERNAL_NAME_SERVICE)
    for doc in docs:
        errors = _errors(validator, doc)
        assert not errors, f"{doc['metadata']['name']}: {errors}"
    by_model = {d["metadata"]["labels"]["serving.kserve.io/inferenceservice"]: d for d in docs}
    assert set(by_model) == {m.name for m in homelab.models}
    for name, doc in by_model.items():
        assert doc["metadata"]["name"] == f"{name}-predictor"
        assert doc["metadata"]["namespace"] == "ai-ml"
        assert doc["spec"]["externalName"] == "ai-inference-serve-svc.ai-ml.svc.cluster.local"
        assert [p["port"] for p in doc["spec"]["ports"]] == [8000]


def test_alias_schema_catches_mistakes(homelab: Fleet) -> None:
    validator = jsonschema.Draft7Validator(EXTERNAL_NAME_SERVICE)
    good = json.loads(json.dumps(render_aliases(homelab)[0]))
    for mutate in (
        lambda d: d["spec"].update(selector={"app": "x"}),
        lambda d: d["metadata"].update(name="LLM_predictor"),
        lambda d: d["spec"]["ports"][0].update(port=70000),
        lambda d: d["metadata"]["labels"].update({"bad key!": "x"}),
    ):
        bad = copy.deepcopy(good)
        mutate(bad)
        assert _errors(validator, bad)


def test_kustomization_lists_the_manifests(committed: dict[str, str]) -> None:
    doc = yaml.safe_load(committed[KUSTOMIZATION_FILE])
    assert doc["kind"] == "Kustomization"
    assert doc["namespace"] == "ai-ml"
    assert sorted(doc["resources"]) == sorted([RAYSERVICE_FILE, ALIASES_FILE])
    for name in doc["resources"]:
        assert (APP_DIR / name).is_file()


def test_any_fleet_renders(crd_validator: jsonschema.Draft7Validator) -> None:
    """The local fleet (no groups) renders too: the head then runs everything."""
    fleet = load_fleet(ROOT / "fleets" / "local.yaml")
    doc = json.loads(json.dumps(render_rayservice(fleet)))
    assert not _errors(crd_validator, doc)
    assert doc["spec"]["rayClusterConfig"]["workerGroupSpecs"] == []
    assert doc["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "2"
