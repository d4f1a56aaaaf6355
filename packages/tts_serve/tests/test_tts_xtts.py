"""The XTTS-v2 code path on a tiny random XTTS built in the session (real `Xtts.load_checkpoint`,
`inference_stream`, speaker latents): built-in speakers, cloning, streaming, every output
format, bad inputs. Its audio is noise: shapes, rates, durations and errors are checked, not
words. Inputs are kept short; the model generates at most 16 audio tokens (~0.7 s) per call."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from openai import ConflictError, NotFoundError, OpenAI

from serve_common.testkit import TEST_API_KEY
from serve_common.testkit.conformance import assert_openai_error
from tts_serve.testing import decode_any, tone_wav
from tts_serve.voices import VoiceStore

MODEL = "xtts-tiny"
HEADERS = {"Authorization": f"Bearer {TEST_API_KEY}"}


@pytest.fixture(scope="module")
def client(xtts_url: str) -> OpenAI:
    return OpenAI(base_url=f"{xtts_url}/v1", api_key=TEST_API_KEY, max_retries=0)


@pytest.fixture(scope="module")
def http(xtts_url: str) -> httpx.Client:
    with httpx.Client(base_url=xtts_url, headers=HEADERS, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def reference_pcm(http: httpx.Client) -> tuple[np.ndarray, float]:
    """The seeded reference output as pcm (24 kHz) and its duration from KServe V2."""
    resp = http.post(
        f"/v2/models/{MODEL}/infer",
        json={
            "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["Hi there."]}],
            "parameters": {"voice": "ana-florence", "response_format": "pcm"},
        },
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["parameters"]["sample_rate"] == 24000
    pcm = np.frombuffer(base64.b64decode(body["outputs"][0]["data"][0]), "<i2")
    seconds = body["parameters"]["durations_s"][0]
    assert pcm.shape[0] / 24000 == pytest.approx(seconds, abs=1e-3)
    assert 0.2 < seconds < 2.0
    return pcm, seconds


def test_builtin_voices_listed(http: httpx.Client) -> None:
    data = http.get("/v1/audio/voices").json()["data"]
    builtin = {v["voice_id"]: v for v in data if v["kind"] == "builtin"}
    assert set(builtin) == {"ana-florence", "claribel-dervla"}
    assert builtin["ana-florence"]["name"] == "Ana Florence"
    assert {"en", "fr", "zh-cn", "ja"} <= set(builtin["ana-florence"]["languages"])


@pytest.mark.parametrize("fmt", ["wav", "mp3", "opus", "aac", "flac", "pcm"])
def test_every_format_decodes_to_declared_rate_and_duration(
    client: OpenAI, reference_pcm: tuple[np.ndarray, float], fmt: str
) -> None:
    _, seconds = reference_pcm
    with client.audio.speech.with_streaming_response.create(
        model=MODEL, voice="Ana Florence", input="Hi there.", response_format=fmt
    ) as resp:
        rate = int(resp.headers["x-sample-rate"])
        data = resp.read()
    if fmt == "pcm":
        samples = np.frombuffer(data, "<i2")
    else:
        samples, decoded_rate = decode_any(data)
        assert decoded_rate == rate
    assert rate == (48000 if fmt == "opus" else 24000)
    # seeded sampling: the same audio every time; lossy codecs pad a frame or two
    tolerance = 0.1 if fmt in ("mp3", "aac") else 0.01
    assert samples.shape[0] / rate == pytest.approx(seconds, abs=tolerance)


def test_streaming_sends_chunks_as_generated(
    xtts_url: str, reference_pcm: tuple[np.ndarray, float]
) -> None:
    pcm, _ = reference_pcm
    body = {"model": MODEL, "voice": "ana-florence", "input": "Hi there.", "response_format": "pcm"}
    with (
        httpx.Client(headers=HEADERS, timeout=120) as http,
        http.stream("POST", f"{xtts_url}/v1/audio/speech", json=body) as resp,
    ):
        assert resp.status_code == 200
        chunks = [c for c in resp.iter_raw() if c]
    # 16 tokens at stream_chunk_size=8: inference_stream yields two chunks, each sent at once
    assert len(chunks) >= 2
    assert np.array_equal(np.frombuffer(b"".join(chunks), "<i2"), pcm)
    sse = httpx.post(
        f"{xtts_url}/v1/audio/speech",
        json={**body, "stream_format": "sse"},
        headers=HEADERS,
        timeout=120,
    )
    events = [json.loads(x[6:]) for x in sse.text.splitlines() if x.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done" and len(events) >= 3
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert np.array_equal(np.frombuffer(audio, "<i2"), pcm)


def test_language_is_checked(http: httpx.Client) -> None:
    base = {"model": MODEL, "voice": "ana-florence", "input": "Hola.", "response_format": "pcm"}
    err = assert_openai_error(http.post("/v1/audio/speech", json={**base, "language": "xx"}), 400)
    assert err["param"] == "language" and "es" in err["message"]
    ok = http.post("/v1/audio/speech", json={**base, "language": "es-ES"})
    assert ok.status_code == 200 and len(ok.content) > 1000


def test_clone_use_and_delete_a_voice(
    client: OpenAI, http: httpx.Client, xtts_voices_dir: Path
) -> None:
    created = client.audio.voices.create(
        name="Zoë's Test Voice", audio_sample=("ref.wav", tone_wav(2.0)), consent="none"
    )
    assert created.id == "zoe-s-test-voice" and created.name == "Zoë's Test Voice"
    assert created.object == "audio.voice" and created.type == "audio_sample"
    listed = http.get("/v1/audio/voices").json()["data"]
    assert {"voice_id": "zoe-s-test-voice", "kind": "cloned"}.items() <= next(
        v for v in listed if v["voice_id"] == "zoe-s-test-voice"
    ).items()

    # stored on disk with its latents: a restarted replica finds it
    folder = xtts_voices_dir / "zoe-s-test-voice"
    assert (folder / "voice.json").is_file() and (folder / "reference.wav").is_file()
    assert len(list(folder.glob("latents-*.npz"))) == 1
    fingerprint = next(folder.glob("latents-*.npz")).stem.split("-", 1)[1]
    restarted = VoiceStore(xtts_voices_dir, fingerprint)
    latents = restarted.latents("zoe-s-test-voice")
    assert latents is not None and latents["speaker_embedding"].shape == (1, 512, 1)

    audio = client.audio.speech.create(
        model=MODEL, voice="zoe-s-test-voice", input="Hello.", response_format="wav"
    ).content
    samples, rate = decode_any(audio)
    assert rate == 24000 and samples.shape[0] > 0.2 * rate

    with pytest.raises(ConflictError):  # the same id again: 409
        client.audio.voices.create(
            name="zoe's test voice", audio_sample=("r.wav", tone_wav(2.0)), consent="x"
        )

    deleted = client.audio.voices.delete("zoe-s-test-voice")
    assert deleted.deleted and deleted.id == "zoe-s-test-voice"
    assert not folder.exists()
    with pytest.raises(NotFoundError):
        client.audio.voices.delete("zoe-s-test-voice")
    err = assert_openai_error(
        http.post(
            "/v1/audio/speech",
            json={"model": MODEL, "voice": "zoe-s-test-voice", "input": "Hello."},
        ),
        400,
    )
    assert err["param"] == "voice"


def test_bad_reference_audio(http: httpx.Client) -> None:
    def post(name: str | None, content: bytes | None, **kw: object) -> httpx.Response:
        data = {"name": name} if name is not None else {}
        # without a clip, another part keeps the body multipart
        files = {"audio_sample": ("ref.wav", content)} if content else {"x": ("x.txt", b"x")}
        return http.post("/v1/audio/voices", data=data, files=files, **kw)  # type: ignore[arg-type]

    assert assert_openai_error(post("x", b"not audio at all"), 400)["code"] == "invalid_audio"
    assert assert_openai_error(post("x", tone_wav(0.4)), 400)["code"] == "audio_too_short"
    silent = tone_wav(2.0, freq=0.0)
    assert assert_openai_error(post("x", silent), 400)["param"] == "audio_sample"
    assert_openai_error(post("x", tone_wav(9.0)), 413)  # over max_reference_seconds
    assert_openai_error(post("x", b"\0" * (600 * 1024)), 413)  # over max_reference_bytes
    assert assert_openai_error(post(None, tone_wav(2.0)), 400)["param"] == "name"
    assert assert_openai_error(post("x", None), 400)["param"] == "audio_sample"
    assert assert_openai_error(post("!!!", tone_wav(2.0)), 400)["param"] == "name"
    assert_openai_error(post("Ana Florence", tone_wav(2.0)), 409)  # a built-in voice's name
    assert_openai_error(http.post("/v1/audio/voices", json={"name": "x"}), 415)
    # and the replica still serves
    ok = http.post(
        "/v1/audio/speech",
        json={"model": MODEL, "voice": "claribel-dervla", "input": "Hi.", "response_format": "pcm"},
    )
    assert ok.status_code == 200 and len(ok.content) > 1000
