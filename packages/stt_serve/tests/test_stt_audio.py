"""`serve_common.audio.decode_audio`: every usual container in, float32 mono 16 kHz out; anything
else a clear 4xx, quickly (no hang on garbage)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
import pytest

from serve_common.audio import audio_duration_s, decode_audio
from serve_common.errors import InvalidRequestError, PayloadTooLargeError

SR = 16000


def tone(seconds: float, sample_rate: int = SR, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("container", ["wav", "mp3", "flac", "ogg", "webm", "m4a"])
def test_decodes_usual_containers(
    container: str, encode_audio: Callable[[np.ndarray, int, str], bytes]
) -> None:
    src = tone(1.5)
    data = encode_audio(src, SR, container)
    out = decode_audio(data)
    assert out.dtype == np.float32 and out.ndim == 1
    # Codecs add priming/padding (AAC: ~0.1 s): the duration holds within 0.15 s.
    assert abs(audio_duration_s(out) - 1.5) < 0.15, (container, audio_duration_s(out))
    # It is the same tone: the dominant frequency of one second of it is 440 Hz.
    window = out[:SR]
    peak_hz = np.argmax(np.abs(np.fft.rfft(window))) * SR / len(window)
    assert abs(peak_hz - 440) < 5, (container, peak_hz)
    assert 0.2 < float(np.max(np.abs(out))) < 0.6


def test_resamples_and_downmixes(make_wav: Callable[[np.ndarray, int], bytes]) -> None:
    import io
    import wave

    left = tone(1.0, 44100)
    stereo = np.stack([left, left], axis=1).reshape(-1)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes((stereo * 32767).astype("<i2").tobytes())
    out = decode_audio(buf.getvalue(), sample_rate=SR)
    assert abs(out.shape[0] - SR) < 50
    out8k = decode_audio(make_wav(tone(1.0), SR), sample_rate=8000)
    assert abs(out8k.shape[0] - 8000) < 20


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"just some text, definitely not audio\n" * 40, "not a supported audio format"),
        (b'{"model": "whisper-1"}', "not a supported audio format"),
        (
            b"1\n00:00:01,000 --> 00:00:02,000\nhello there\n\n2\n00:00:03,000 --> "
            b"00:00:04,000\nagain\n",
            "no audio stream",
        ),
    ],
)
def test_not_audio_is_400(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        decode_audio(data)
    err = info.value
    assert err.status_code == 400 and err.param == "file" and err.code == "invalid_audio"
    assert fragment in err.message


def test_truncated_header_is_400(make_wav: Callable[[np.ndarray, int], bytes]) -> None:
    with pytest.raises(InvalidRequestError):
        decode_audio(make_wav(tone(1.0), SR)[:30])


def test_garbage_never_hangs() -> None:
    rng = np.random.default_rng(1234)
    started = time.perf_counter()
    for i in range(150):
        blob = rng.integers(0, 256, size=1000 + 997 * i, dtype=np.uint8).tobytes()
        with pytest.raises(InvalidRequestError):
            decode_audio(blob)
    for _ in range(20):
        with pytest.raises(InvalidRequestError):
            decode_audio(os.urandom(64 * 1024))
    assert time.perf_counter() - started < 30


def test_over_duration_is_413(encode_audio: Callable[[np.ndarray, int, str], bytes]) -> None:
    data = encode_audio(tone(5.0), SR, "flac")
    assert abs(audio_duration_s(decode_audio(data, max_seconds=6.0)) - 5.0) < 0.05
    with pytest.raises(PayloadTooLargeError) as info:
        decode_audio(data, max_seconds=2.0)
    assert info.value.status_code == 413
    assert info.value.code == "audio_too_long" and info.value.param == "file"


def test_long_silence_stops_at_the_limit(
    encode_audio: Callable[[np.ndarray, int, str], bytes],
) -> None:
    # 10 minutes of silence compress to a small flac: decoding stops once past the limit.
    data = encode_audio(np.zeros(SR * 600, dtype=np.float32), SR, "flac")
    assert len(data) < 2_000_000
    started = time.perf_counter()
    with pytest.raises(PayloadTooLargeError):
        decode_audio(data, max_seconds=10.0)
    assert time.perf_counter() - started < 2.0
