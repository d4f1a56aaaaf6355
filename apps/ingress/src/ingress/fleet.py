"""The fleet file (`fleets/<name>.yaml`): the single source of truth for what runs where.

Validated with pydantic; errors name the offending model, group or card. From a `Fleet` the
renderers produce the Serve config, the RayService and the KServe-style aliases.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ingress.services import GATEWAY_APP, SERVICE_KINDS

Arch = Literal["cpu", "cuda", "rocm", "xpu"]
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class Images(_Strict):
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
    ray_version: str = "2.60.0"
    images: Images = Field(default_factory=Images)
    request_timeout_s: float = Field(default=300, gt=0)
    api_keys_env: str | None = Field(
        default=None, description="Env var (from a Secret) with comma-separated API keys."
    )
    head_cpus: int = Field(default=2, ge=1)
    head_memory_gb: float = Field(default=4, gt=0)


class WorkerGroup(_Strict):
    """One GPU node (or a set of identical ones) of one architecture."""

    name: str
    arch: Arch
    node: str | None = Field(default=None, description="kubernetes.io/hostname to pin to.")
    gpu_model: str | None = None
    gpus: int = Field(default=1, ge=0)
    gpu_memory_gb: float | None = Field(default=None, gt=0, description="Memory per card.")
    cpus: int = Field(default=4, ge=1)
    memory_gb: float = Field(default=16, gt=0)
    replicas: int = Field(default=1, ge=0)
    labels: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _dns(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"group name {v!r} must be a DNS label (a-z, 0-9, -)")
        return v

    @property
    def resource(self) -> str:
        """The custom Ray resource every node of this group advertises."""
        return f"accel_{self.name.replace('-', '_')}"


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
    max_ongoing_requests: int = Field(default=64, ge=1)
    max_queued_requests: int = Field(default=256, ge=-1)
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
        if not _NAME.match(v):
            raise ValueError(f"model name {v!r} must be a DNS label (a-z, 0-9, -)")
        if v == GATEWAY_APP:
            raise ValueError(f"'{GATEWAY_APP}' is reserved for the gateway")
        return v

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in SERVICE_KINDS:
            raise ValueError(f"unknown kind {v!r}; known: {', '.join(SERVICE_KINDS)}")
        return v

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


class Fleet(_Strict):
    name: str
    description: str = ""
    cluster: Cluster = Field(default_factory=Cluster)
    groups: list[WorkerGroup] = Field(default_factory=list)
    models: list[ModelService] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Fleet:
        errors: list[str] = []
        groups = {g.name: g for g in self.groups}
        if len(groups) != len(self.groups):
            errors.append("duplicate worker group names")
        seen_names: dict[str, str] = {}
        seen_routes: dict[str, str] = {}
        seen_model_names: dict[str, str] = {}
        for m in self.models:
            if m.name in seen_names:
                errors.append(f"duplicate model service name {m.name!r}")
            seen_names[m.name] = m.name
            assert m.route is not None
            if m.route in seen_routes:
                errors.append(f"route {m.route} used by both {seen_routes[m.route]} and {m.name}")
            seen_routes[m.route] = m.name
            for served in m.model_names:
                if served in seen_model_names:
                    errors.append(
                        f"model name {served!r} served by both {seen_model_names[served]} "
                        f"and {m.name}"
                    )
                seen_model_names[served] = m.name
            if m.group is not None and m.group not in groups:
                errors.append(
                    f"model {m.name!r}: unknown group {m.group!r} "
                    f"(groups: {', '.join(groups) or 'none'})"
                )
            if m.gpu_fraction > 0 and m.group is None:
                errors.append(f"model {m.name!r} asks for a GPU fraction but names no group")
            if m.group in groups and groups[m.group].gpus == 0 and m.gpu_fraction > 0:
                errors.append(f"model {m.name!r} asks for a GPU on CPU-only group {m.group!r}")
        errors += self._card_fit(groups)
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def _card_fit(self, groups: dict[str, WorkerGroup]) -> list[str]:
        """Models sharing a card: fractions must sum to ≤ 1 and footprints must fit memory.

        A model replica with a fraction < 1 sits on one card; the worst case is every replica
        placed on the same card, so the check is per card of the group."""
        errors: list[str] = []
        for g in groups.values():
            on_card = [m for m in self.models if m.group == g.name and 0 < m.gpu_fraction < 1]
            if not on_card:
                continue
            total = sum(m.gpu_fraction * self._max_replicas(m) for m in on_card)
            capacity = max(g.gpus, 1)
            if total > capacity + 1e-9:
                detail = ", ".join(f"{m.name}={m.gpu_fraction}" for m in on_card)
                errors.append(
                    f"group {g.name!r}: GPU fractions add up to {total:g} on {capacity} card(s) "
                    f"({detail})"
                )
            if g.gpu_memory_gb is not None:
                for m in on_card:
                    if m.memory_gb is not None and m.memory_gb > g.gpu_memory_gb * m.gpu_fraction:
                        errors.append(
                            f"model {m.name!r} needs ~{m.memory_gb:g} GB but its share of "
                            f"{g.name!r}'s {g.gpu_model or 'card'} is "
                            f"{g.gpu_memory_gb * m.gpu_fraction:g} GB "
                            f"({m.gpu_fraction:g} x {g.gpu_memory_gb:g} GB)"
                        )
                need = sum((m.memory_gb or 0) for m in on_card)
                if g.gpus <= 1 and need > g.gpu_memory_gb:
                    names = ", ".join(m.name for m in on_card)
                    errors.append(
                        f"card of group {g.name!r} ({g.gpu_model or g.arch}, "
                        f"{g.gpu_memory_gb:g} GB) cannot fit {names} (~{need:g} GB)"
                    )
        return errors

    @staticmethod
    def _max_replicas(m: ModelService) -> int:
        return m.autoscaling.max_replicas if m.autoscaling else m.replicas

    def group(self, name: str | None) -> WorkerGroup | None:
        return next((g for g in self.groups if g.name == name), None)

    def routing_table(self) -> dict[str, str]:
        """Model name or alias → application name (for the gateway)."""
        return {served: m.name for m in self.models for served in m.model_names}


class FleetError(ValueError):
    pass


def load_fleet(path: str | Path) -> Fleet:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FleetError(f"fleet file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise FleetError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise FleetError(f"{path}: expected a mapping at the top level")
    try:
        return Fleet.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"]) or "<fleet>"
            msg = str(e["msg"]).removeprefix("Value error, ")
            lines.append(f"  {loc}: {msg}")
        raise FleetError(f"{path}: invalid fleet file:\n" + "\n".join(lines)) from None
