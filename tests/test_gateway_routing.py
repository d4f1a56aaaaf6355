"""Gateway routing decisions (unit level, no Ray)."""

from __future__ import annotations

import pytest

from ingress.gateway import Gateway
from serve_common.errors import InvalidRequestError, ModelNotFoundError, NotFoundError


@pytest.fixture
def gw() -> Gateway:
    return Gateway(
        {
            "routes": {
                "minilm": "embeddings",
                "text-embedding-3-small": "embeddings",
                "whisper-1": "whisper",
                "tiny.en": "whisper",
            },
            "apps": {"embeddings": "embeddings", "whisper": "stt"},
        }
    )


def test_routes_by_model_and_alias(gw: Gateway) -> None:
    assert gw.app_for("/v1/embeddings", "minilm") == "embeddings"
    assert gw.app_for("/v1/audio/transcriptions", "whisper-1") == "whisper"


def test_unknown_model_is_404(gw: Gateway) -> None:
    with pytest.raises(ModelNotFoundError):
        gw.app_for("/v1/embeddings", "nope")


def test_missing_model_falls_back_to_the_only_app_of_that_kind(gw: Gateway) -> None:
    assert gw.app_for("/v1/embeddings", None) == "embeddings"
    with pytest.raises(InvalidRequestError):
        gw.app_for("/v1/chat/completions", None)  # no LLM in this fleet
    with pytest.raises(NotFoundError):
        gw.app_for("/v1/unknown-api", None)
