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


@pytest.mark.parametrize(
    ("ctype", "body", "expected"),
    [
        ("application/json", b'{"model": "minilm", "input": "x"}', ("minilm", False)),
        ("application/json", b'{"model": "m", "stream": true}', ("m", True)),
        ("application/json", b'{"model": "m", "stream": "yes"}', ("m", False)),
        ("application/json", b"[1, 2]", (None, False)),
        ("application/json", b"not json", (None, False)),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
            b'--b\r\nContent-Disposition: form-data; name="stream"\r\n\r\ntrue\r\n--b--\r\n',
            ("whisper-1", True),
        ),
        ("multipart/form-data; boundary=b", b"garbage", (None, False)),
    ],
)
def test_inspect_body_finds_model_and_stream(
    ctype: str, body: bytes, expected: tuple[str | None, bool]
) -> None:
    """What the gateway reads from a body: the model to route by, and whether the client
    streams (a streamed response goes through a streaming handle call, others in one call)."""
    import asyncio

    from starlette.requests import Request

    from ingress.gateway import _inspect_body

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/x",
        "headers": [(b"content-type", ctype.encode())],
        "query_string": b"",
    }
    assert asyncio.run(_inspect_body(Request(scope), body)) == expected
