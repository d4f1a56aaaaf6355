"""A multilingual whisper (base, CTranslate2; from PyPI, skipped when absent): language
detection on French speech, a forced language, translation to English, and the
server's language check for multilingual models."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest

from serve_common.audio import decode_audio
from serve_common.errors import InvalidRequestError
from stt_serve.config import SttConfig
from stt_serve.engine import TranscribeOptions, create_engine
from stt_serve.server import SttServer

FRENCH = "Bonjour, je voudrais un café et un croissant, s'il vous plaît."


def words(text: str) -> set[str]:
    return set(re.sub(r"[^a-zäöüßéèàçô ]", " ", text.lower()).split())


@pytest.fixture(scope="module")
def base(multilingual_model_dir: str) -> Any:
    loop = asyncio.new_event_loop()
    engine = create_engine(SttConfig(model=multilingual_model_dir, served_model_names=["base"]))
    loop.run_until_complete(engine.load())
    yield engine, loop
    loop.run_until_complete(engine.close())
    loop.close()


def test_detects_language(base: Any, speak: Callable[..., bytes]) -> None:
    engine, loop = base
    assert engine.multilingual and "fr" in engine.languages and len(engine.languages) > 90
    fr = loop.run_until_complete(
        engine.transcribe(decode_audio(speak(FRENCH, voice="fr")), TranscribeOptions())
    )
    assert fr.info.language == "fr", fr
    assert "bonjour" in words(fr.text), fr.text


def test_translate_to_english(base: Any, speak: Callable[..., bytes]) -> None:
    engine, loop = base
    result = loop.run_until_complete(
        engine.transcribe(
            decode_audio(speak(FRENCH, voice="fr")),
            TranscribeOptions(task="translate", language="fr"),
        )
    )
    assert "bonjour" not in words(result.text), result.text
    assert {"coffee", "croissant"} & words(result.text), result.text


def test_server_language_check(base: Any, multilingual_model_dir: str) -> None:
    engine, _ = base
    server = SttServer({"model": multilingual_model_dir, "served_model_names": ["base"]})
    assert server.check_language(engine, "fr") == "fr"
    assert server.check_language(engine, None) is None  # detect
    with pytest.raises(InvalidRequestError) as info:
        server.check_language(engine, "xx")
    assert info.value.param == "language" and "ISO-639-1" in info.value.message
