"""App builders: what a Serve config's `import_path` points at (`pkg.app:build_app`)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from serve_common.config import ServiceConfig


class ConfigError(ValueError):
    """A service's `args` failed validation; the message lists every problem."""


def validate_args(config_cls: type[ServiceConfig], args: dict[str, Any]) -> ServiceConfig:
    try:
        return config_cls.model_validate(args)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid {config_cls.__name__}: {problems}") from None


def build_service_app(
    deployment: Any, config_cls: type[ServiceConfig], args: dict[str, Any]
) -> Any:
    """Validate `args`, then bind the deployment. A Serve config's `deployments:` entry
    (num_replicas, ray_actor_options, user_config, ...) overrides these defaults."""
    args = dict(args or {})
    user_config = args.pop("user_config", None) or {}
    config = validate_args(config_cls, args)
    if user_config:
        validate_args(config_cls, {**config.model_dump(), **user_config})
    return deployment.options(user_config=user_config).bind(config.model_dump())
