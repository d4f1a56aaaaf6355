"""Cross-package tests: the local fleet end to end on the session's embedded Ray."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serve_common.testkit import TEST_API_KEY, LocalServe, ServiceConformance

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def keyed(config: dict[str, Any]) -> dict[str, Any]:
    """The rendered Serve config with the conformance API key and body limit on every app."""
    config = copy.deepcopy(config)
    for app in config["applications"]:
        app["args"]["api_keys"] = [TEST_API_KEY]
        app["args"]["max_body_bytes"] = ServiceConformance.max_body_bytes
    return config


@pytest.fixture(scope="session")
def local_platform_config() -> dict[str, Any]:
    """The Serve config the local platform runs (rendered from `fleets/local.yaml`, keyed)."""
    from ingress.fleet import load_fleet
    from ingress.render_serve import render_serve_config

    return keyed(render_serve_config(load_fleet(ROOT / "fleets" / "local.yaml")))


@pytest.fixture(scope="session")
def local_platform(local_serve: LocalServe, local_platform_config: dict[str, Any]) -> Iterator[str]:
    """`fleets/local.yaml` deployed the way `just serve` deploys it (declarative Serve config,
    gateway at `/`), on the session's Ray. Yields the base URL (no route)."""
    from ingress.local import deploy_config, wait_ready

    config = local_platform_config
    deploy_config(config)
    states = wait_ready(config, timeout_s=1500)
    failed = {n: s for n, s in states.items() if s[0] != "RUNNING"}
    assert not failed, f"local fleet did not come up: {failed}"
    yield local_serve.base_url
