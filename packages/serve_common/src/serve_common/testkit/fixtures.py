"""pytest plugin (entry point `pytest11`): the `local_serve` session fixture."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from serve_common.embedded_ray import prepare_embedded_ray

prepare_embedded_ray()  # before anything imports ray

from serve_common.testkit.local_serve import OFFLINE_ENV, LocalServe  # noqa: E402

os.environ.update(OFFLINE_ENV)


@pytest.fixture(scope="session")
def local_serve() -> Iterator[LocalServe]:
    """The session's embedded Ray + Serve (started on first use, shared by all packages)."""
    yield LocalServe.shared()
