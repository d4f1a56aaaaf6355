"""`ServiceConformance`: the contract every model service keeps, as a test base class.

Subclass it in a package's tests::

    class TestEmbeddingsConformance(ServiceConformance):
        model_name = "minilm"
        openai_path = "/v1/embeddings"
        valid_request = {"input": "hello"}
        bad_requests = [({"input": ""}, 400), ...]
        v2_valid_inputs = [...]
        v2_output_names = ["embedding"]

        @pytest.fixture
        def service_url(self, my_module_scoped_deployment: str) -> str:
            return my_module_scoped_deployment  # e.g. http://127.0.0.1:PORT/embeddings

The service under test must be deployed with `api_keys=[TEST_API_KEY]` and
`max_body_bytes=max_body_bytes`. Multipart services set `valid_multipart` instead of
`valid_request`.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import httpx
import pytest

TEST_API_KEY = "conformance-test-key"


def assert_openai_error(resp: httpx.Response, status: int | tuple[int, ...]) -> dict[str, Any]:
    statuses = (status,) if isinstance(status, int) else status
    assert resp.status_code in statuses, f"expected {statuses}, got {resp.status_code}: {resp.text}"
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"], err
    assert isinstance(err["type"], str) and err["type"], err
    assert "Traceback" not in err["message"], err
    return err


def assert_v2_error(resp: httpx.Response, status: int | tuple[int, ...]) -> str:
    statuses = (status,) if isinstance(status, int) else status
    assert resp.status_code in statuses, f"expected {statuses}, got {resp.status_code}: {resp.text}"
    body = resp.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    return body["error"]


class ServiceConformance:
    model_name: ClassVar[str]
    openai_path: ClassVar[str]
    valid_request: ClassVar[dict[str, Any] | None] = None
    valid_multipart: ClassVar[tuple[dict[str, str], dict[str, Any]] | None] = None
    bad_requests: ClassVar[list[tuple[Any, int]]] = []
    max_body_bytes: ClassVar[int] = 1024 * 1024
    v2_valid_inputs: ClassVar[list[dict[str, Any]] | None] = None
    v2_output_names: ClassVar[list[str]] = []
    v2_bad_inputs: ClassVar[list[list[dict[str, Any]]]] = []
    timeout_s: ClassVar[float] = 120.0

    # ---- helpers -----------------------------------------------------------------------------
    @pytest.fixture
    def client(self, service_url: str) -> Any:
        with httpx.Client(
            base_url=service_url,
            timeout=self.timeout_s,
            headers={"Authorization": f"Bearer {TEST_API_KEY}"},
        ) as c:
            yield c

    def _post_valid(self, client: httpx.Client, model: str | None = None) -> httpx.Response:
        model = model or self.model_name
        if self.valid_multipart is not None:
            data, files = self.valid_multipart
            return client.post(self.openai_path, data={**data, "model": model}, files=files)
        assert self.valid_request is not None
        return client.post(self.openai_path, json={**self.valid_request, "model": model})

    # ---- health and metadata -----------------------------------------------------------------
    def test_health_is_open(self, service_url: str) -> None:
        for path in ("/health", "/v2/health/live", "/v2/health/ready"):
            resp = httpx.get(service_url + path, timeout=self.timeout_s)
            assert resp.status_code == 200, (path, resp.text)

    def test_models_list(self, client: httpx.Client) -> None:
        resp = client.get("/v1/models")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["object"] == "list"
        ids = [m["id"] for m in body["data"]]
        assert self.model_name in ids
        assert all(m["object"] == "model" for m in body["data"])

    def test_valid_request(self, client: httpx.Client) -> None:
        resp = self._post_valid(client)
        assert resp.status_code == 200, resp.text
        assert resp.headers.get("x-request-id")

    def test_request_id_echoed(self, client: httpx.Client) -> None:
        resp = client.get("/v1/models", headers={"x-request-id": "conformance-123"})
        assert resp.headers.get("x-request-id") == "conformance-123"

    # ---- auth -------------------------------------------------------------------------------
    def test_auth_required(self, service_url: str) -> None:
        with httpx.Client(base_url=service_url, timeout=self.timeout_s) as anon:
            err = assert_openai_error(anon.get("/v1/models"), 401)
            assert err["type"] == "authentication_error"
            bad = anon.get("/v1/models", headers={"Authorization": "Bearer wrong"})
            assert_openai_error(bad, 401)

    # ---- errors -------------------------------------------------------------------------------
    def test_unknown_model_is_404(self, client: httpx.Client) -> None:
        err = assert_openai_error(self._post_valid(client, model="no-such-model"), 404)
        assert err["code"] == "model_not_found"
        assert err["param"] == "model"

    def test_invalid_json_is_400(self, client: httpx.Client) -> None:
        if self.valid_multipart is not None:
            pytest.skip("multipart endpoint")
        resp = client.post(
            self.openai_path, content=b"{not json", headers={"content-type": "application/json"}
        )
        assert_openai_error(resp, 400)

    def test_missing_model_is_400(self, client: httpx.Client) -> None:
        if self.valid_multipart is not None:
            data, files = self.valid_multipart
            resp = client.post(self.openai_path, data=data, files=files)
        else:
            resp = client.post(self.openai_path, json=dict(self.valid_request or {}))
        err = assert_openai_error(resp, 400)
        assert err["param"] == "model"

    def test_bad_requests_are_4xx(self, client: httpx.Client) -> None:
        for payload, status in self.bad_requests:
            if isinstance(payload, dict):
                resp = client.post(self.openai_path, json={"model": self.model_name, **payload})
            else:
                resp = client.post(
                    self.openai_path, content=payload, headers={"content-type": "application/json"}
                )
            err = assert_openai_error(resp, status)
            assert 400 <= resp.status_code < 500, (payload, err)

    def test_body_too_large_is_413(self, client: httpx.Client) -> None:
        blob = b"x" * (self.max_body_bytes + 1)
        resp = client.post(
            self.openai_path, content=blob, headers={"content-type": "application/json"}
        )
        assert_openai_error(resp, 413)

    def test_unknown_route_is_404(self, client: httpx.Client) -> None:
        assert_openai_error(client.get("/v1/definitely-not-here"), 404)

    # ---- KServe V2 ------------------------------------------------------------------------------
    def test_v2_server_metadata(self, client: httpx.Client) -> None:
        resp = client.get("/v2")
        assert resp.status_code == 200, resp.text
        assert {"name", "version", "extensions"} <= set(resp.json())

    def test_v2_model_metadata_and_ready(self, client: httpx.Client) -> None:
        meta = client.get(f"/v2/models/{self.model_name}")
        assert meta.status_code == 200, meta.text
        body = meta.json()
        assert body["name"] == self.model_name
        assert body["inputs"] and body["outputs"]
        assert [o["name"] for o in body["outputs"]] == self.v2_output_names
        ready = client.get(f"/v2/models/{self.model_name}/ready")
        assert ready.status_code == 200, ready.text
        assert_v2_error(client.get("/v2/models/no-such-model"), 404)

    def test_v2_infer(self, client: httpx.Client) -> None:
        assert self.v2_valid_inputs is not None
        resp = client.post(
            f"/v2/models/{self.model_name}/infer",
            json={"id": "req-1", "inputs": self.v2_valid_inputs},
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["model_name"] == self.model_name
        assert body["id"] == "req-1"
        assert [o["name"] for o in body["outputs"]] == self.v2_output_names
        for out in body["outputs"]:
            count = 1
            for dim in out["shape"]:
                count *= dim
            assert len(out["data"]) == count, out["name"]

    def test_v2_bad_infer_is_4xx(self, client: httpx.Client) -> None:
        url = f"/v2/models/{self.model_name}/infer"
        assert_v2_error(client.post(url, json={"inputs": []}), 400)
        assert_v2_error(
            client.post(url, content=b"nope", headers={"content-type": "application/json"}), 400
        )
        assert_v2_error(
            client.post(
                url,
                json={
                    "inputs": [{"name": "wrong", "shape": [1], "datatype": "BYTES", "data": ["x"]}]
                },
            ),
            400,
        )
        for inputs in self.v2_bad_inputs:
            assert_v2_error(client.post(url, json={"inputs": inputs}), 400)
        assert_v2_error(
            client.post("/v2/models/no-such-model/infer", json={"inputs": self.v2_valid_inputs}),
            404,
        )

    # ---- survival ------------------------------------------------------------------------------
    def test_zz_still_serving_after_bad_input(self, client: httpx.Client) -> None:
        """Runs last in the class: the replica answered every bad request and is still up."""
        resp = self._post_valid(client)
        assert resp.status_code == 200, resp.text
        assert client.get("/health").status_code == 200


def dump(obj: Any) -> str:  # pragma: no cover - debugging aid for failing assertions
    return json.dumps(obj, indent=2, default=str)[:2000]
