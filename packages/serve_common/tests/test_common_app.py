"""serve_common unit tests: the app factory, middleware, errors, hot reload and forwarding,
on a fake engine in-process (no Ray, no model: this is protocol code)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Request

from serve_common.config import ServiceConfig
from serve_common.engine import Engine
from serve_common.errors import InvalidRequestError
from serve_common.protocol.embeddings import EmbeddingRequest
from serve_common.protocol.v2 import InferRequest, InferResponse, ModelMetadata, TensorMetadata
from serve_common.server import ModelServer
from serve_common.v2 import bytes_as_text, find_input, text_tensor

KEY = "k-123"


class FakeEngine(Engine):
    loads = 0
    closes = 0

    def __init__(self, config: ServiceConfig) -> None:
        super().__init__()
        self.model = config.model

    async def load(self) -> None:
        FakeEngine.loads += 1
        await asyncio.sleep(0.01)

    async def close(self) -> None:
        FakeEngine.closes += 1
        await super().close()


class FakeServer(ModelServer[ServiceConfig, FakeEngine]):
    service = "fake"
    config_cls = ServiceConfig
    gate: asyncio.Event | None = None

    def create_engine(self, config: ServiceConfig) -> FakeEngine:
        return FakeEngine(config)

    def routers(self) -> list[APIRouter]:
        router = APIRouter()

        @router.post("/v1/embeddings")
        async def embed(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
            self.check_model(body.model, request)
            engine = await self.ensure_loaded()
            if body.input == "boom":
                raise RuntimeError("secret internal detail")
            if body.input == "bad":
                raise InvalidRequestError("bad input", param="input")
            if body.input == "wait" and self.gate is not None:
                await self.gate.wait()
            return {"model": engine.model}

        @router.get("/v1/stream")
        async def stream() -> Any:
            from fastapi.responses import StreamingResponse

            async def gen() -> Any:
                for i in range(3):
                    yield f"chunk{i};".encode()

            return StreamingResponse(gen())

        return [router]

    def v2_metadata(self, name: str) -> ModelMetadata:
        return ModelMetadata(
            name=name,
            platform="fake",
            inputs=[TensorMetadata(name="text", datatype="BYTES", shape=[-1])],
            outputs=[TensorMetadata(name="echo", datatype="BYTES", shape=[-1])],
        )

    async def v2_infer(self, name: str, request: InferRequest) -> InferResponse:
        texts = bytes_as_text(find_input(request, "text"))  # type: ignore[arg-type]
        return InferResponse(model_name=name, outputs=[text_tensor("echo", texts)])


def make(**cfg: Any) -> FakeServer:
    server = FakeServer({"model": "org/fake-model", "api_keys": [KEY], **cfg})
    asyncio.run(server.reconfigure({}))
    return server


async def call(server: FakeServer, method: str, path: str, **kw: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=server.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        kw.setdefault("headers", {"Authorization": f"Bearer {KEY}"})
        return await client.request(method, path, **kw)


def req(server: FakeServer, method: str, path: str, **kw: Any) -> httpx.Response:
    return asyncio.run(call(server, method, path, **kw))


def error(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def test_ok_and_default_name() -> None:
    server = make()
    resp = req(server, "POST", "/v1/embeddings", json={"model": "fake-model", "input": "x"})
    assert resp.status_code == 200 and resp.json() == {"model": "org/fake-model"}
    assert resp.headers["x-request-id"]


def test_error_mapping() -> None:
    server = make()
    e = error(req(server, "POST", "/v1/embeddings", json={"model": "nope", "input": "x"}))
    assert e["code"] == "model_not_found" and e["param"] == "model"
    resp = req(server, "POST", "/v1/embeddings", json={"model": "fake-model"})
    assert resp.status_code == 400 and error(resp)["param"] == "input"
    resp = req(server, "POST", "/v1/embeddings", json={"model": "fake-model", "input": "bad"})
    assert resp.status_code == 400 and error(resp)["message"] == "bad input"
    resp = req(server, "POST", "/v1/embeddings", json={"model": "fake-model", "input": "boom"})
    assert resp.status_code == 500
    assert "secret" not in resp.text and error(resp)["type"] == "server_error"
    resp = req(server, "GET", "/v1/embeddings")
    assert resp.status_code == 405 and error(resp)
    assert req(server, "GET", "/nowhere").status_code == 404


def test_auth_and_open_health() -> None:
    server = make()
    anon = req(server, "GET", "/v1/models", headers={})
    assert anon.status_code == 401 and anon.headers["www-authenticate"] == "Bearer"
    assert error(anon)["type"] == "authentication_error"
    assert (
        req(server, "GET", "/v1/models", headers={"Authorization": "Bearer no"}).status_code == 401
    )
    assert req(server, "GET", "/v1/models", headers={"api-key": KEY}).status_code == 200
    for path in ("/health", "/v2/health/live", "/v2/health/ready"):
        assert req(server, "GET", path, headers={}).status_code == 200, path


def test_api_keys_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEYS", "a1, b2")
    server = make(api_keys=[], api_keys_env="FAKE_KEYS")
    assert (
        req(server, "GET", "/v1/models", headers={"Authorization": "Bearer b2"}).status_code == 200
    )
    assert req(server, "GET", "/v1/models", headers={}).status_code == 401


def test_body_limit() -> None:
    server = make(max_body_bytes=2048)
    resp = req(
        server,
        "POST",
        "/v1/embeddings",
        content=b"x" * 5000,
        headers={"Authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    assert resp.status_code == 413 and error(resp)["code"] == "payload_too_large"


def test_overload_is_503_with_retry_after() -> None:
    server = make(max_concurrent_requests=2, retry_after_s=3)

    async def scenario() -> list[int]:
        server.gate = asyncio.Event()
        body = {"model": "fake-model", "input": "wait"}
        slow = [
            asyncio.create_task(call(server, "POST", "/v1/embeddings", json=body)) for _ in range(2)
        ]
        await asyncio.sleep(0.05)
        rejected = await call(server, "POST", "/v1/embeddings", json=body)
        assert rejected.headers["retry-after"] == "3"
        assert error(rejected)["type"] == "server_overloaded"
        server.gate.set()
        return [rejected.status_code] + [(await t).status_code for t in slow]

    assert asyncio.run(scenario()) == [503, 200, 200]


def test_v2_routes_and_error_shape() -> None:
    server = make()
    assert req(server, "GET", "/v2").json()["name"] == "ai-inference"
    assert req(server, "GET", "/v2/models/fake-model").json()["outputs"][0]["name"] == "echo"
    ok = req(
        server,
        "POST",
        "/v2/models/fake-model/infer",
        json={
            "id": "1",
            "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}],
        },
    )
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == ["a", "b"]
    assert ok.json()["id"] == "1"
    bad = req(
        server,
        "POST",
        "/v2/models/fake-model/infer",
        json={"inputs": [{"name": "text", "shape": [5], "datatype": "BYTES", "data": ["a"]}]},
    )
    assert bad.status_code == 400 and isinstance(bad.json()["error"], str)
    missing = req(server, "GET", "/v2/models/nope")
    assert missing.status_code == 404 and isinstance(missing.json()["error"], str)


def test_hot_reload_swaps_only_when_the_model_changes() -> None:
    server = make()
    loads, closes = FakeEngine.loads, FakeEngine.closes
    asyncio.run(server.reconfigure({}))  # unchanged: nothing happens
    asyncio.run(server.reconfigure({"max_body_bytes": 4096}))  # runtime field: no reload
    assert (FakeEngine.loads, FakeEngine.closes) == (loads, closes)
    assert server.config.max_body_bytes == 4096
    asyncio.run(server.reconfigure({"model": "org/other", "served_model_names": ["fake-model"]}))
    assert FakeEngine.loads == loads + 1 and FakeEngine.closes == closes + 1
    resp = req(server, "POST", "/v1/embeddings", json={"model": "fake-model", "input": "x"})
    assert resp.json() == {"model": "org/other"}
    with pytest.raises(ValueError):
        asyncio.run(server.reconfigure({"max_body_bytes": -1}))
    # A rejected config leaves the running one in place.
    assert (
        req(
            server, "POST", "/v1/embeddings", json={"model": "fake-model", "input": "x"}
        ).status_code
        == 200
    )


@pytest.mark.parametrize("strategy", ["swap", "replace"])
def test_reload_drains_requests_on_the_old_model(strategy: str) -> None:
    """A request running on the old engine finishes on it; the old engine is closed only then."""
    server = make(reload_strategy=strategy)

    async def scenario() -> tuple[httpx.Response, int, int]:
        server.gate = asyncio.Event()
        old = server._engine
        assert old is not None
        slow = asyncio.create_task(
            call(server, "POST", "/v1/embeddings", json={"model": "fake-model", "input": "wait"})
        )
        await asyncio.sleep(0.05)  # the request is now waiting inside the handler
        reload = asyncio.create_task(server.reconfigure({"model": "org/other"}))
        await asyncio.sleep(0.2)
        closed_early = int(not old.loaded)
        server.gate.set()
        resp = await slow
        await reload
        return resp, closed_early, int(not old.loaded)

    resp, closed_early, closed_after = asyncio.run(scenario())
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"model": "org/fake-model"}  # finished on the model it started on
    assert (closed_early, closed_after) == (0, 1)
    assert server._generations.running(server._generations.current) == 0


def test_reload_drain_is_bounded() -> None:
    server = make(reload_drain_timeout_s=0.2)

    async def scenario() -> None:
        server.gate = asyncio.Event()
        slow = asyncio.create_task(
            call(server, "POST", "/v1/embeddings", json={"model": "fake-model", "input": "wait"})
        )
        await asyncio.sleep(0.05)
        await asyncio.wait_for(server.reconfigure({"model": "org/other"}), timeout=5)
        server.gate.set()
        await slow

    asyncio.run(scenario())
    assert server.config.model == "org/other"


def test_api_keys_from_a_file(tmp_path: Any) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# rotated 2026-11\nfile-key-1\n\n  file-key-2  \n")
    server = make(api_keys=[], api_keys_file=str(keys))
    for key in ("file-key-1", "file-key-2"):
        headers = {"Authorization": f"Bearer {key}"}
        assert req(server, "GET", "/v1/models", headers=headers).status_code == 200
    assert (
        req(server, "GET", "/v1/models", headers={"Authorization": "Bearer #"}).status_code == 401
    )
    keys.write_text("# nothing here\n")
    with pytest.raises(ValueError, match="refusing to serve without authentication"):
        make(api_keys=[], api_keys_file=str(keys))
    with pytest.raises(ValueError, match="api_keys_file"):
        make(api_keys=[], api_keys_file=str(tmp_path / "missing"))


def test_forward_streams_head_then_chunks() -> None:
    server = make()

    async def run() -> list[Any]:
        items = []
        async for item in server.forward(
            {
                "method": "GET",
                "path": "/v1/stream",
                "headers": [[b"authorization", f"Bearer {KEY}".encode()]],
            }
        ):
            items.append(item)
        return items

    items = asyncio.run(run())
    assert items[0]["status"] == 200
    assert b"".join(items[1:]) == b"chunk0;chunk1;chunk2;"
    whole = asyncio.run(
        server.forward_buffered(
            {
                "method": "GET",
                "path": "/v1/stream",
                "headers": [[b"authorization", f"Bearer {KEY}".encode()]],
            }
        )
    )
    assert (whole["status"], whole["body"]) == (200, b"chunk0;chunk1;chunk2;")
    denied = asyncio.run(server.forward_buffered({"method": "GET", "path": "/v1/models"}))
    assert denied["status"] == 401 and b"invalid_api_key" in denied["body"]


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        ServiceConfig(model="m", served_model_names=["a"], aliases=["a"])
    with pytest.raises(ValueError):
        ServiceConfig(model="m", served_model_names=[" a"])
    with pytest.raises(ValueError):
        ServiceConfig(model="m", unknown_option=1)  # type: ignore[call-arg]
    assert ServiceConfig(model="BAAI/bge-large-en-v1.5").names == ["bge-large-en-v1.5"]
