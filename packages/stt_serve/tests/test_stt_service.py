"""The STT service on a local Serve, through the official `openai` SDK (and httpx for raw
checks): real speech from espeak-ng transcribed by whisper tiny.en in every response format,
streamed and not, translations, KServe V2, the conformance suite, and bad files -> 4xx while
the replica keeps serving."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from serve_common.testkit import TEST_API_KEY, ServiceConformance
from serve_common.testkit.conformance import assert_openai_error

ESPEAK = shutil.which("espeak-ng")
pytestmark = pytest.mark.skipif(
    ESPEAK is None,
    reason="espeak-ng is not installed (apt-get install -y espeak-ng): "
    "the STT tests need real synthesized speech",
)

DOOR = "Open the door and turn on the lights."
PARAGRAPH = (
    "Open the door and turn on the lights. "
    "The weather today is sunny and warm. "
    "Please send the report to the office before noon."
)
# Words tiny.en gets right however many threads it runs on ("weather" does not survive
# OMP_NUM_THREADS=1 before CTranslate2 loads).
PARA_WORDS = {"door", "lights", "report", "office", "noon"}


def _speak(text: str) -> bytes:
    if ESPEAK is None:
        return b""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run([ESPEAK, "-w", str(path), text], check=True, capture_output=True)
        return path.read_bytes()


DOOR_WAV = _speak(DOOR)  # module level: the conformance class attributes need it


def words(text: str) -> set[str]:
    return set(re.sub(r"[^a-z ]", " ", text.lower()).split())


def assert_door(text: str) -> None:
    assert {"open", "door", "lights"} <= words(text), text


SRT_TIME = r"(\d{2}):(\d{2}):(\d{2}),(\d{3})"
VTT_TIME = r"(\d{2}):(\d{2}):(\d{2})\.(\d{3})"


def _seconds(groups: tuple[str, ...]) -> float:
    h, m, s, ms = (int(g) for g in groups)
    return h * 3600 + m * 60 + s + ms / 1000


def cue_times(body: str, pattern: str) -> list[tuple[float, float]]:
    out = []
    for match in re.finditer(rf"^{pattern} --> {pattern}$", body, flags=re.M):
        g = match.groups()
        out.append((_seconds(g[:4]), _seconds(g[4:])))
    return out


def assert_increasing(times: list[tuple[float, float]], duration: float) -> None:
    assert times, "no cues"
    prev_end = 0.0
    for start, end in times:
        assert start <= end, times
        assert start >= prev_end - 1e-6, times
        prev_end = end
    assert prev_end <= duration + 0.5, (times, duration)


@pytest.fixture(scope="module")
def client(stt_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{stt_url}/v1", api_key=TEST_API_KEY, max_retries=0, timeout=120
    ) as c:
        yield c


@pytest.fixture(scope="module")
def http(stt_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=stt_url, timeout=120, headers={"Authorization": f"Bearer {TEST_API_KEY}"}
    ) as c:
        yield c


@pytest.fixture(scope="module")
def paragraph_wav(speak: Callable[..., bytes]) -> bytes:
    return speak(PARAGRAPH)


# ---- the SDK, every response format ---------------------------------------------------------
def test_json_with_alias(client: openai.OpenAI) -> None:
    result = client.audio.transcriptions.create(
        model="whisper-1", file=("door.wav", DOOR_WAV, "audio/wav")
    )
    assert_door(result.text)


def test_text(client: openai.OpenAI) -> None:
    text = client.audio.transcriptions.create(
        model="tiny.en", file=("door.wav", DOOR_WAV, "audio/wav"), response_format="text"
    )
    assert isinstance(text, str)
    assert_door(text)


def test_srt_and_vtt(client: openai.OpenAI, paragraph_wav: bytes) -> None:
    srt = client.audio.transcriptions.create(
        model="tiny.en", file=("p.wav", paragraph_wav, "audio/wav"), response_format="srt"
    )
    assert isinstance(srt, str)
    assert srt.startswith("1\n"), srt
    times = cue_times(srt, SRT_TIME)
    assert len(times) >= 2, srt
    assert_increasing(times, 15.0)
    numbers = [int(n) for n in re.findall(r"^(\d+)$", srt, flags=re.M)]
    assert numbers == list(range(1, len(times) + 1)), srt
    assert words(srt) >= PARA_WORDS, srt

    vtt = client.audio.transcriptions.create(
        model="tiny.en", file=("p.wav", paragraph_wav, "audio/wav"), response_format="vtt"
    )
    assert isinstance(vtt, str)
    assert vtt.startswith("WEBVTT\n\n"), vtt
    assert cue_times(vtt, VTT_TIME) == times  # same segments, the other notation
    assert words(vtt) >= PARA_WORDS


def test_verbose_json_segments_and_words(client: openai.OpenAI, paragraph_wav: bytes) -> None:
    result = client.audio.transcriptions.create(
        model="tiny.en",
        file=("p.wav", paragraph_wav, "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
    )
    assert result.language in ("en", "english")
    assert 5.0 < result.duration < 15.0
    assert words(result.text) >= PARA_WORDS
    assert result.segments and len(result.segments) >= 2
    assert_increasing([(s.start, s.end) for s in result.segments], result.duration)
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    assert result.words
    assert_increasing([(w.start, w.end) for w in result.words], result.duration)
    assert words(" ".join(w.word for w in result.words)) >= PARA_WORDS

    only_words = client.audio.transcriptions.create(
        model="tiny.en",
        file=("door.wav", DOOR_WAV, "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert only_words.words and not only_words.segments


STORY = " ".join(
    [
        "Open the door and turn on the lights.",
        "The train leaves the station at seven in the morning.",
        "Please send the report to the office before noon.",
        "My brother plays the guitar every evening.",
        "We bought apples, bread and milk at the market.",
        "The children are reading books in the library.",
        "Turn left at the bank and walk to the river.",
        "The meeting will start after lunch on Friday.",
        "She opened the window because the room was hot.",
        "The dog is sleeping under the kitchen table.",
        "Our neighbours painted their fence green last summer.",
        "The airplane landed safely despite the strong wind.",
    ]
)


@pytest.fixture(scope="module")
def story_mp3(
    speak: Callable[..., bytes], encode_audio: Callable[[np.ndarray, int, str], bytes]
) -> bytes:
    from serve_common.audio import decode_audio

    samples = decode_audio(speak(STORY))
    assert len(samples) > 31 * 16000  # two whisper windows
    return encode_audio(samples, 16000, "mp3")


def test_stream_flushes_as_segments_decode(client: openai.OpenAI, story_mp3: bytes) -> None:
    """SDK streaming over 30+ s of speech: one delta per decoded segment, and the first
    window's text reaches the client before the second window is decoded."""
    started = time.perf_counter()
    stream = client.audio.transcriptions.create(
        model="tiny.en", file=("story.mp3", story_mp3, "audio/mpeg"), stream=True
    )
    deltas: list[tuple[float, str]] = []
    done: list[tuple[float, str]] = []
    for event in stream:
        if event.type == "transcript.text.delta":
            assert not done, "delta after done"
            deltas.append((time.perf_counter() - started, event.delta))
        elif event.type == "transcript.text.done":
            done.append((time.perf_counter() - started, event.text))
    assert len(done) == 1 and len(deltas) >= 3, deltas
    text = done[0][1]
    assert "".join(d for _, d in deltas).strip() == text
    assert {"door", "station", "guitar", "kitchen"} <= words(text), text
    assert done[0][0] - deltas[0][0] > 0.2, (deltas, done)  # not one burst at the end


def test_stream_raw_sse(http: httpx.Client) -> None:
    with http.stream(
        "POST",
        "/v1/audio/transcriptions",
        data={"model": "tiny.en", "stream": "true"},
        files={"file": ("door.wav", DOOR_WAV, "audio/wav")},
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    assert '"transcript.text.done"' in lines[-1]
    assert_door(lines[-1])


def test_translation(client: openai.OpenAI) -> None:
    result = client.audio.translations.create(
        model="tiny.en", file=("door.wav", DOOR_WAV, "audio/wav")
    )
    assert_door(result.text)
    verbose = client.audio.translations.create(
        model="tiny.en", file=("door.wav", DOOR_WAV, "audio/wav"), response_format="verbose_json"
    )
    assert_door(verbose.text)


def test_compressed_upload(
    client: openai.OpenAI, encode_audio: Callable[[np.ndarray, int, str], bytes]
) -> None:
    from serve_common.audio import decode_audio

    samples = decode_audio(DOOR_WAV)
    mp3 = encode_audio(samples, 16000, "mp3")
    result = client.audio.transcriptions.create(
        model="tiny.en", file=("door.mp3", mp3, "audio/mpeg")
    )
    assert_door(result.text)


def test_v2_infer_text(http: httpx.Client) -> None:
    resp = http.post(
        "/v2/models/tiny.en/infer",
        json={
            "inputs": [
                {
                    "name": "audio",
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": [base64.b64encode(DOOR_WAV).decode()],
                }
            ],
            "parameters": {"language": "en"},
        },
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()["outputs"][0]
    assert out["name"] == "text" and out["datatype"] == "BYTES" and out["shape"] == [1]
    assert_door(out["data"][0])
    assert resp.json()["parameters"]["language"] == ["en"]


# ---- bad input -> 4xx, and the replica keeps serving ----------------------------------------
def _post(http: httpx.Client, data: dict[str, Any], file: bytes | None, name: str = "a.wav"):
    files = {"file": (name, file, "application/octet-stream")} if file is not None else None
    return http.post("/v1/audio/transcriptions", data={"model": "tiny.en", **data}, files=files)


def test_bad_files(
    http: httpx.Client, encode_audio: Callable[[np.ndarray, int, str], bytes]
) -> None:
    rng = np.random.default_rng(7)
    # 70 s (over the app's 60 s limit) of silence: a small flac, so the body limit passes.
    silence = encode_audio(np.zeros(16000 * 70, dtype=np.float32), 16000, "flac")
    cases: list[tuple[bytes, int, str]] = [
        (rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes(), 400, "invalid_audio"),
        (b"", 400, "invalid_audio"),
        (b"Dear team,\nplease find the minutes attached.\n" * 20, 400, "invalid_audio"),
        (silence, 413, "audio_too_long"),
    ]
    for blob, status, code in cases:
        err = assert_openai_error(_post(http, {}, blob), status)
        assert err["param"] == "file" and err["code"] == code, err
    assert assert_openai_error(_post(http, {}, None), 400)["param"] == "file"


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"response_format": "docx"}, "response_format"),
        ({"language": "xx"}, "language"),
        ({"language": "fr"}, "language"),  # tiny.en is English-only
        ({"temperature": "2"}, "temperature"),
        ({"temperature": "warm"}, "temperature"),
        ({"stream": "maybe"}, "stream"),
        ({"stream": "true", "response_format": "srt"}, "stream"),
        ({"timestamp_granularities[]": "word"}, "timestamp_granularities"),
        ({"timestamp_granularities[]": "char", "response_format": "verbose_json"}, None),
    ],
)
def test_bad_params(http: httpx.Client, data: dict[str, str], param: str | None) -> None:
    err = assert_openai_error(_post(http, data, DOOR_WAV), 400)
    if param is not None:
        assert err["param"] == param, err


def test_sdk_raises_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(
            model="tiny.en", file=("notes.txt", b"not audio at all", "text/plain")
        )
    assert info.value.status_code == 400
    with pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(
            model="whisper-large", file=("door.wav", DOOR_WAV, "audio/wav")
        )


def test_json_body_is_415(http: httpx.Client) -> None:
    err = assert_openai_error(
        http.post("/v1/audio/transcriptions", json={"model": "tiny.en", "file": "x"}), 415
    )
    assert "multipart" in err["message"]


def test_client_disconnect_mid_stream(http: httpx.Client, paragraph_wav: bytes) -> None:
    with http.stream(
        "POST",
        "/v1/audio/transcriptions",
        data={"model": "tiny.en", "stream": "true"},
        files={"file": ("p.wav", paragraph_wav, "audio/wav")},
    ) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if "transcript.text.delta" in line:
                break  # leave after the first segment
    result = _post(http, {}, DOOR_WAV)
    assert result.status_code == 200
    assert_door(result.json()["text"])


# ---- the shared contract ------------------------------------------------------------------------
class TestSttConformance(ServiceConformance):
    model_name = "tiny.en"
    openai_path = "/v1/audio/transcriptions"
    valid_multipart = ({}, {"file": ("door.wav", DOOR_WAV, "audio/wav")})
    bad_requests = [({"file": "door.wav"}, 415), (b"{not json", 415)]
    v2_valid_inputs = [
        {
            "name": "audio",
            "shape": [1],
            "datatype": "BYTES",
            "data": [base64.b64encode(DOOR_WAV).decode()],
        }
    ]
    v2_output_names = ["text"]
    v2_bad_inputs = [
        [{"name": "audio", "shape": [1], "datatype": "BYTES", "data": ["not base64!"]}],
        [{"name": "audio", "shape": [1], "datatype": "FP32", "data": [1.0]}],
        [
            {
                "name": "audio",
                "shape": [1],
                "datatype": "BYTES",
                "data": [base64.b64encode(b"random bytes, not audio").decode()],
            }
        ],
        [{"name": "audio", "shape": [0], "datatype": "BYTES", "data": []}],
    ]

    @pytest.fixture(scope="class")
    def service_url(self, stt_url: str) -> str:
        return stt_url
