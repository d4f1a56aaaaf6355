"""Fuzzing the running local platform: schemathesis against every service's (and the gateway's)
own OpenAPI schema, valid and invalid cases, and random bytes at the audio and multipart
routes. Nothing a client sends may produce a 5xx or take a replica down.

The example counts are modest so the suite stays within its time budget on two cores; raise
`AI_FUZZ_EXAMPLES` for a longer run (docs/reliability.md records one).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections import Counter
from typing import Any

import httpx
import pytest

from serve_common.testkit import TEST_API_KEY

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {TEST_API_KEY}"}
EXAMPLES = int(os.environ.get("AI_FUZZ_EXAMPLES", "8"))
# (route prefix, operations not fuzzed with generated bodies and why)
TARGETS = ["embeddings", "reranker", "whisper", "tts", "llm", ""]
# Every other generated case names the served model, so fuzzing reaches the engines instead
# of stopping at 404 model_not_found.
SERVED = {
    "embeddings": "all-minilm-l6-v2",
    "reranker": "minilm-bi-encoder-reranker",
    "whisper": "whisper-tiny.en",
    "tts": "piper-joe-en-us",
    "llm": "smollm2-135m-instruct",
    "": "all-minilm-l6-v2",
}
# Generated text for speech is synthesized in full (seconds per case on CPU): fewer cases.
SLOW_OPERATIONS = {"POST /v1/audio/speech": 3}


def _name_served_model(case: Any, model: str, turn: int) -> None:
    if turn % 2:
        return
    if isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = model
    if case.path_parameters and "name" in case.path_parameters:
        case.path_parameters["name"] = model


def _fuzz_operation(
    operation: Any,
    mode: Any,
    base: str,
    model: str,
    statuses: Counter[int],
    failures: list[str],
) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable

    label = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=SLOW_OPERATIONS.get(label, EXAMPLES),
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        _name_served_model(case, model, sum(statuses.values()))
        response = case.call(base_url=base, headers=AUTH, timeout=180)
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(
                f"{label} ({mode}) -> {response.status_code}: "
                f"{response.text[:300]!r}; body={case.body!r:.300}"
            )

    # e.g. no invalid request exists for an operation without inputs
    with contextlib.suppress(Unsatisfiable):
        run()


def _fuzz(base: str, model: str) -> tuple[Counter[int], list[str]]:
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", headers=AUTH, timeout=60)
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            _fuzz_operation(result.ok(), mode, base, model, statuses, failures)
    return statuses, failures


@pytest.mark.parametrize("route", TARGETS, ids=[t or "gateway" for t in TARGETS])
def test_openapi_fuzz_gives_no_5xx(local_platform: str, route: str) -> None:
    base = f"{local_platform}/{route}" if route else local_platform
    statuses, failures = _fuzz(base, SERVED[route])
    print(f"\nfuzz {route or 'gateway'}: {sum(statuses.values())} cases, {dict(statuses)}")
    assert not failures, "\n".join(failures[:10])
    assert sum(statuses.values()) > 0
    health = f"{base}/health" if route else f"{local_platform}/healthz"
    assert httpx.get(health, timeout=60).status_code == 200


def _random_blobs(seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    blobs = [
        ("empty.wav", b""),
        ("zeros.wav", bytes(4096)),
        ("noise.bin", rng.randbytes(50_000)),
        ("fake-riff.wav", b"RIFF\xff\xff\xff\x7fWAVEfmt " + rng.randbytes(2000)),
        ("fake-mp3.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00" + rng.randbytes(3000)),
        ("fake-ogg.ogg", b"OggS" + rng.randbytes(3000)),
        ("text.wav", "not audio at all ✓".encode()),
    ]
    blobs += [(f"random-{i}.wav", rng.randbytes(rng.randint(1, 20_000))) for i in range(8)]
    return blobs


@pytest.mark.parametrize(
    "path",
    [
        "/whisper/v1/audio/transcriptions",
        "/whisper/v1/audio/translations",
        "/v1/audio/transcriptions",
        "/tts/v1/audio/voices",
    ],
)
def test_random_bytes_at_multipart_routes(local_platform: str, path: str) -> None:
    model = "piper-joe-en-us" if "voices" in path else "whisper-1"
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=local_platform, headers=AUTH, timeout=180) as client:
        for name, blob in _random_blobs(seed=len(path)):
            for content_type in ("audio/wav", "application/octet-stream"):
                files = {"file": (name, blob, content_type)}
                data = {"model": model, "name": "fuzz-voice"}
                resp = client.post(path, data=data, files=files)
                statuses[resp.status_code] += 1
                assert resp.status_code < 500, (name, resp.status_code, resp.text[:300])
            # the raw bytes as the whole body, under several content types
            for content_type in ("multipart/form-data; boundary=xyz", "audio/wav", "text/plain"):
                resp = client.post(path, content=blob, headers={"content-type": content_type})
                statuses[resp.status_code] += 1
                assert resp.status_code < 500, (name, content_type, resp.status_code)
    print(f"\nrandom bytes at {path}: {dict(statuses)}")
    assert set(statuses) <= {400, 404, 413, 415} | ({200} if "voices" in path else set())
