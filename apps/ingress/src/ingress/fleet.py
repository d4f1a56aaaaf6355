"""The fleet file (`fleets/<name>.yaml`): the single source of truth for what runs where.

Validated with pydantic; errors name the offending model, group or card. From a `Fleet` the
renderers produce the Serve config (`render_serve`), the RayService and the KServe-style
aliases (`render_kuberay`), and the install set of each GPU arch's image (`images`).

GPU budgets: a model's `gpu_fraction` is both its Ray `num_gpus` (what shares a card) and its
memory budget on that card (`gpu_memory_fraction` in the service args: vLLM's
`gpu_memory_utilization`, torch's per-process memory fraction). `Fleet.card_plan()` packs every
replica onto the cards of its group the way Ray does (a fractional replica sits on one card),
and validation refuses a card whose fractions exceed 1 or whose models' estimated footprints
(`memory_gb`) exceed the card's memory (`gpu_memory_gb`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ingress.services import GATEWAY_APP, SERVICE_KINDS

Arch = Literal["cpu", "cuda", "rocm", "xpu"]
ARCHES: tuple[Arch, ...] = ("cpu", "cuda", "rocm", "xpu")

# DNS-1035 labels: model names become Kubernetes Service names (`{name}-predictor`), group
# names become KubeRay worker group names (part of pod names).
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_MAX_MODEL_NAME = 63 - len("-predictor")
# Kubernetes label syntax (keys: optional DNS prefix + name; values: <= 63 chars).
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: The Kubernetes extended resource each vendor's device plugin advertises.
K8S_GPU_RESOURCES: dict[str, str] = {
    "cuda": "nvidia.com/gpu",
    "rocm": "amd.com/gpu",
    "xpu": "gpu.intel.com/xe",  # the Intel plugin's `xe` driver resource (`i915` on older kernels)
}
#: Labels every Ray node of a worker group carries (KubeRay: the group's top-level `labels`).
LABEL_GROUP = "ai-inference/group"
LABEL_ARCH = "ai-inference/arch"
LABEL_TARGET = "ai-inference/gpu-target"


def _check_label_key(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _LABEL_PREFIX.match(prefix)):
        return f"label key {key!r}: prefix must be a DNS subdomain"
    if not _LABEL_NAME.match(name):
        return f"label key {key!r}: name must be 1-63 chars of [A-Za-z0-9-_.], alphanumeric ends"
    if prefix.endswith("ray.io"):
        return f"label key {key!r}: the ray.io prefix is reserved by Ray"
    return None


def _check_labels(labels: dict[str, str]) -> dict[str, str]:
    problems = []
    for key, value in labels.items():
        if problem := _check_label_key(key):
            problems.append(problem)
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            problems.append(f"label {key}={value!r}: value must be <= 63 chars of [A-Za-z0-9-_.]")
    if problems:
        raise ValueError("; ".join(problems))
    return labels


def _check_env(env: dict[str, str]) -> dict[str, str]:
    bad = [k for k in env if not _ENV_NAME.match(k)]
    if bad:
        raise ValueError(f"not environment variable names: {', '.join(map(repr, bad))}")
    return env


def _dns_label(v: str, what: str, max_len: int = 63) -> str:
    if not _NAME.match(v) or len(v) > max_len:
        raise ValueError(
            f"{what} {v!r} must be a DNS label: a-z, 0-9 and '-', starting with a letter, "
            f"at most {max_len} characters"
        )
    return v


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Images(_Strict):
    """The image each GPU arch's pods run (built from `images/Dockerfile` by `just image`)."""

    cpu: str = "ghcr.io/example/ai-inference:cpu"
    cuda: str = "ghcr.io/example/ai-inference:cuda"
    rocm: str = "ghcr.io/example/ai-inference:rocm"
    xpu: str = "ghcr.io/example/ai-inference:xpu"

    def for_arch(self, arch: Arch) -> str:
        return str(getattr(self, arch))


class Cluster(_Strict):
    namespace: str = "ai-ml"
    rayservice_name: str = "ai-inference"
    service_name: str = "ai-inference-serve-svc"
    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    dashboard_port: int = Field(default=8265, ge=1, le=65535)
    metrics_port: int = Field(default=8080, ge=1, le=65535, description="Ray's Prometheus port.")
    ray_version: str = "2.60.0"
    images: Images = Field(default_factory=Images)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    request_timeout_s: float = Field(default=300, gt=0)
    api_keys_env: str | None = Field(
        default=None, description="Env var (from a Secret) with comma-separated API keys."
    )
    api_keys_file: str | None = Field(
        default=None,
        description="File with one API key per line, read by every replica (local runs, or a "
        "Secret mounted as a file).",
    )
    api_keys_secret: str = Field(
        default="ai-inference-api-keys", description="Secret holding the keys (KubeRay pods)."
    )
    api_keys_secret_key: str = "api-keys"
    head_cpus: int = Field(default=2, ge=1)
    head_memory_gb: float = Field(default=4, gt=0)
    cluster_domain: str = "cluster.local"
    head_node_selector: dict[str, str] = Field(default_factory=dict)
    model_cache_host_path: str | None = Field(
        default=None,
        description="Node directory mounted as the model cache (HF_HOME) in worker pods, so "
        "restarts do not download the models again.",
    )
    upgrade_strategy: Literal["NewCluster", "None"] = Field(
        default="NewCluster",
        description="KubeRay's answer to a rayClusterConfig change. NewCluster needs room for a "
        "second cluster (every GPU twice); None leaves cluster changes to the operator.",
    )

    @field_validator("namespace", "service_name")
    @classmethod
    def _k8s_names(cls, v: str) -> str:
        return _dns_label(v, "name")

    @field_validator("rayservice_name")
    @classmethod
    def _rayservice_name(cls, v: str) -> str:
        # KubeRay appends 6 characters for the RayCluster and "-serve-svc" for services.
        return _dns_label(v, "rayservice_name", 47)

    @field_validator("head_node_selector")
    @classmethod
    def _selector(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v)

    @field_validator("api_keys_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None:
            _check_env({v: ""})
        return v


class WorkerGroup(_Strict):
    """One GPU node (or a set of identical ones) of one architecture."""

    name: str
    arch: Arch
    node: str | None = Field(default=None, description="kubernetes.io/hostname to pin to.")
    gpu_model: str | None = None
    gpu_target: str | None = Field(
        default=None,
        pattern=r"^(gfx[0-9a-f]{3,4}|sm_[0-9]{2,3}[a-z]?|[a-z][a-z0-9_]*)$",
        description="Compiler target of the card (gfx1151, sm_75, ...): labels the nodes and "
        "picks what a source build compiles for.",
    )
    gpus: int = Field(default=1, ge=0, description="Cards per node.")
    gpu_memory_gb: float | None = Field(default=None, gt=0, description="Memory per card.")
    k8s_gpu_resource: str | None = Field(
        default=None, description="Device plugin resource; default by arch (nvidia.com/gpu, ...)."
    )
    cpus: int = Field(default=4, ge=1)
    memory_gb: float = Field(default=16, gt=0, description="Pod memory (host RAM).")
    replicas: int = Field(default=1, ge=0, description="Identical nodes in this group.")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra Ray node labels.")
    env: dict[str, str] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _dns(cls, v: str) -> str:
        return _dns_label(v, "group name")

    @field_validator("labels", "node_selector")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v)

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_env(v)

    @model_validator(mode="after")
    def _arch_gpus(self) -> WorkerGroup:
        if self.arch == "cpu" and self.gpus:
            raise ValueError(f"group {self.name!r}: arch cpu cannot declare gpus")
        if self.arch == "cpu" and self.gpu_memory_gb:
            raise ValueError(f"group {self.name!r}: arch cpu has no gpu_memory_gb")
        clash = {LABEL_GROUP, LABEL_ARCH, LABEL_TARGET} & set(self.labels)
        if clash:
            raise ValueError(f"group {self.name!r}: labels {sorted(clash)} are set by the fleet")
        return self

    @property
    def resource(self) -> str:
        """The custom Ray resource every node of this group advertises."""
        return f"accel_{self.name.replace('-', '_')}"

    @property
    def gpu_resource(self) -> str | None:
        """The Kubernetes extended resource a pod of this group requests, if any."""
        if self.gpus == 0:
            return None
        return self.k8s_gpu_resource or K8S_GPU_RESOURCES[self.arch]

    @property
    def cards(self) -> int:
        return self.gpus * self.replicas

    @property
    def ray_labels(self) -> dict[str, str]:
        labels = {LABEL_GROUP: self.name, LABEL_ARCH: self.arch}
        if self.gpu_target:
            labels[LABEL_TARGET] = self.gpu_target
        return {**labels, **self.labels}

    @property
    def card_name(self) -> str:
        mem = f", {self.gpu_memory_gb:g} GB" if self.gpu_memory_gb else ""
        return f"{self.gpu_model or self.arch + ' GPU'}{mem}"


class Autoscaling(_Strict):
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    target_ongoing_requests: float = Field(default=8, gt=0)

    @model_validator(mode="after")
    def _order(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class ModelService(_Strict):
    """One model service = one Serve application at its own route."""

    name: str = Field(description="Serve application name, e.g. 'embeddings'.")
    kind: str = Field(description=f"One of: {', '.join(SERVICE_KINDS)}.")
    route: str | None = None
    group: str | None = Field(default=None, description="Worker group; none = any CPU node.")
    gpu_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    memory_gb: float | None = Field(
        default=None, gt=0, description="Estimated GPU memory footprint (for fit checks)."
    )
    num_cpus: float = Field(default=0.5, gt=0)
    replicas: int = Field(default=1, ge=0)
    autoscaling: Autoscaling | None = None
    max_ongoing_requests: int = Field(
        default=64, ge=1, description="Requests a replica works on at once (batching needs room)."
    )
    max_queued_requests: int = Field(
        default=256,
        ge=-1,
        description="Requests a replica holds waiting beyond that; more get 503 + Retry-After "
        "(-1: unbounded).",
    )
    max_surge_percent: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Extra replicas Serve may start while it rolls a code/args/resource "
        "change, so old ones serve until the new are ready. Default: 100 for CPU services, "
        "0 for GPU ones (a card rarely has room for a second copy).",
    )
    health_check_period_s: float = Field(default=10, gt=0)
    health_check_timeout_s: float = Field(default=30, gt=0)
    graceful_shutdown_timeout_s: float = Field(default=30, ge=0)
    args: dict[str, Any] = Field(default_factory=dict, description="The service's config.")
    user_config: dict[str, Any] = Field(
        default_factory=dict, description="Hot-reloadable overrides (reconfigure in place)."
    )
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _dns(cls, v: str) -> str:
        _dns_label(v, "model name", _MAX_MODEL_NAME)
        if v == GATEWAY_APP:
            raise ValueError(f"'{GATEWAY_APP}' is reserved for the gateway")
        return v

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in SERVICE_KINDS:
            raise ValueError(f"unknown kind {v!r}; known: {', '.join(SERVICE_KINDS)}")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_env(v)

    @model_validator(mode="after")
    def _route(self) -> ModelService:
        if self.route is None:
            self.route = SERVICE_KINDS[self.kind].default_route
        if not re.match(r"^/[a-z0-9][-a-z0-9_/]*$", self.route) or self.route.endswith("/"):
            raise ValueError(f"route {self.route!r} must look like '/name'")
        if self.route in ("/v1", "/v2", "/healthz", "/metrics") or self.route.startswith(
            ("/v1/", "/v2/")
        ):
            raise ValueError(f"route {self.route!r} collides with the gateway's paths")
        return self

    @property
    def model_names(self) -> list[str]:
        names = list(self.args.get("served_model_names") or [])
        if not names and self.args.get("model"):
            names = [str(self.args["model"]).rstrip("/").split("/")[-1]]
        return [*names, *(self.args.get("aliases") or [])]

    @property
    def max_replicas(self) -> int:
        return self.autoscaling.max_replicas if self.autoscaling else self.replicas


@dataclass
class Card:
    """One GPU of a worker group, with the replicas `Fleet.card_plan()` put on it."""

    group: WorkerGroup
    index: int
    replicas: list[ModelService] = field(default_factory=list)

    @property
    def label(self) -> str:
        node = f" on {self.group.node}" if self.group.node else ""
        return f"card {self.index} of group {self.group.name!r}{node} ({self.group.card_name})"

    @property
    def fraction(self) -> float:
        return sum(m.gpu_fraction for m in self.replicas)

    @property
    def memory_gb(self) -> float:
        return sum(m.memory_gb or 0 for m in self.replicas)

    def describe(self) -> str:
        parts = []
        for m in self.replicas:
            mem = ""
            if self.group.gpu_memory_gb:
                budget = m.gpu_fraction * self.group.gpu_memory_gb
                used = f"~{m.memory_gb:g}" if m.memory_gb else "?"
                mem = f" {used}/{budget:g} GB"
            parts.append(f"{m.name} {m.gpu_fraction:g}{mem}")
        total = f"{self.fraction:g} GPU"
        if self.group.gpu_memory_gb:
            total += f", ~{self.memory_gb:g}/{self.group.gpu_memory_gb:g} GB"
        return f"{self.label}: {', '.join(parts) or 'free'} -> {total}"


class Fleet(_Strict):
    name: str
    description: str = ""
    cluster: Cluster = Field(default_factory=Cluster)
    groups: list[WorkerGroup] = Field(default_factory=list)
    models: list[ModelService] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Fleet:
        errors: list[str] = []
        groups: dict[str, WorkerGroup] = {}
        for g in self.groups:
            if g.name in groups:
                errors.append(f"duplicate worker group name {g.name!r}")
            groups[g.name] = g
        seen_names: set[str] = set()
        seen_routes: dict[str, str] = {}
        seen_model_names: dict[str, str] = {}
        for m in self.models:
            if m.name in seen_names:
                errors.append(f"duplicate model service name {m.name!r}")
            seen_names.add(m.name)
            assert m.route is not None
            if m.route in seen_routes:
                errors.append(
                    f"route {m.route} used by both {seen_routes[m.route]!r} and {m.name!r}"
                )
            seen_routes[m.route] = m.name
            for served in m.model_names:
                if served in seen_model_names and seen_model_names[served] != m.name:
                    errors.append(
                        f"model name {served!r} served by both {seen_model_names[served]!r} "
                        f"and {m.name!r}"
                    )
                seen_model_names[served] = m.name
            mg = groups.get(m.group) if m.group else None
            if m.group is not None and mg is None:
                errors.append(
                    f"model {m.name!r}: unknown group {m.group!r} "
                    f"(groups: {', '.join(groups) or 'none'})"
                )
            if m.gpu_fraction > 0 and m.group is None:
                errors.append(f"model {m.name!r} asks for a GPU fraction but names no group")
            if mg is not None and mg.gpus == 0 and m.gpu_fraction > 0:
                errors.append(f"model {m.name!r} asks for a GPU on CPU-only group {mg.name!r}")
            if (
                mg is not None
                and m.gpu_fraction > 0
                and m.memory_gb is not None
                and mg.gpu_memory_gb is None
            ):
                errors.append(
                    f"model {m.name!r} declares memory_gb but group {mg.name!r} has no "
                    "gpu_memory_gb to check it against"
                )
        if not errors:
            errors += self._card_fit()
        if errors:
            raise ValueError("\n".join(errors))
        return self

    def card_plan(self) -> tuple[list[Card], list[tuple[ModelService, WorkerGroup]]]:
        """Pack every GPU replica onto its group's cards, largest first (first fit).

        Ray places a fractional replica on one logical GPU, so this is the test that Ray can
        place them all. Returns the cards and the replicas that fit on none."""
        cards: list[Card] = []
        unplaced: list[tuple[ModelService, WorkerGroup]] = []
        for g in self.groups:
            if g.gpus == 0:
                continue
            group_cards = [Card(g, i) for i in range(g.cards)]
            replicas = [
                m
                for m in self.models
                if m.group == g.name and m.gpu_fraction > 0
                for _ in range(m.max_replicas)
            ]
            replicas.sort(key=lambda m: (-m.gpu_fraction, -(m.memory_gb or 0), m.name))
            for m in replicas:
                card = next(
                    (c for c in group_cards if c.fraction + m.gpu_fraction <= 1 + 1e-9), None
                )
                if card is None:
                    unplaced.append((m, g))
                else:
                    card.replicas.append(m)
            cards += group_cards
        return cards, unplaced

    def _card_fit(self) -> list[str]:
        errors: list[str] = []
        cards, unplaced = self.card_plan()
        for g in {g.name: g for _, g in unplaced}.values():
            wanted = [m for m in self.models if m.group == g.name and m.gpu_fraction > 0]
            total = sum(m.gpu_fraction * m.max_replicas for m in wanted)
            detail = ", ".join(
                f"{m.name} {m.gpu_fraction:g}"
                + (f" x{m.max_replicas}" if m.max_replicas > 1 else "")
                for m in wanted
            )
            left = ", ".join(sorted({m.name for m, gg in unplaced if gg is g}))
            errors.append(
                f"group {g.name!r} ({g.cards} x {g.card_name}): GPU fractions do not fit on its "
                f"card(s): {detail} (total {total:g}); no card left for {left}"
            )
        for c in cards:
            mem = c.group.gpu_memory_gb
            if mem is None or not c.replicas:
                continue
            for m in {m.name: m for m in c.replicas}.values():  # each model once per card
                if m.memory_gb is not None and m.memory_gb > m.gpu_fraction * mem + 1e-9:
                    errors.append(
                        f"model {m.name!r} needs ~{m.memory_gb:g} GB but its budget on "
                        f"{c.label} is {m.gpu_fraction * mem:g} GB "
                        f"({m.gpu_fraction:g} x {mem:g} GB): raise gpu_fraction or pick a "
                        "smaller model"
                    )
            if c.memory_gb > mem + 1e-9:
                names = " + ".join(f"{m.name} (~{m.memory_gb or 0:g} GB)" for m in c.replicas)
                errors.append(f"{c.label} cannot fit {names} = ~{c.memory_gb:g} GB in {mem:g} GB")
        return errors

    def group(self, name: str | None) -> WorkerGroup | None:
        return next((g for g in self.groups if g.name == name), None)

    def model(self, name: str) -> ModelService | None:
        return next((m for m in self.models if m.name == name), None)

    def arch_of(self, m: ModelService) -> Arch:
        """The arch a model's replicas run on (`cpu` without a group or a GPU share)."""
        g = self.group(m.group)
        return g.arch if g is not None else "cpu"

    def routing_table(self) -> dict[str, str]:
        """Model name or alias → application name (for the gateway)."""
        return {served: m.name for m in self.models for served in m.model_names}


class FleetError(ValueError):
    pass


def parse_fleet(raw: Any, source: str = "<fleet>") -> Fleet:
    """Validate a fleet mapping; errors become one FleetError listing every problem."""
    if not isinstance(raw, dict):
        raise FleetError(f"{source}: expected a mapping at the top level")
    try:
        return Fleet.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"])
            msg = str(e["msg"]).removeprefix("Value error, ")
            for line in msg.splitlines():
                lines.append(f"  - {loc}: {line}" if loc else f"  - {line}")
        raise FleetError(f"{source}: invalid fleet file:\n" + "\n".join(lines)) from None


def load_fleet(path: str | Path) -> Fleet:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FleetError(f"fleet file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise FleetError(f"{path}: not valid YAML: {exc}") from None
    return parse_fleet(raw, str(path))
