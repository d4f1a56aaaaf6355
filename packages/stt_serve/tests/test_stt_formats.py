"""Response formats rendered from engine segments (no model needed)."""

from __future__ import annotations

import re

from stt_serve import formats
from stt_serve.engine import Segment, Transcription, TranscriptionInfo, Word

SEGMENTS = [
    Segment(
        id=1,
        seek=0,
        start=0.0,
        end=2.5,
        text=" Hello there.",
        words=[Word(word=" Hello", start=0.0, end=0.9), Word(word=" there.", start=0.9, end=2.5)],
    ),
    Segment(id=2, seek=0, start=2.5, end=3661.0456, text=" A --> B"),
    Segment(id=3, seek=0, start=3661.05, end=3662.0, text="   "),
]
RESULT = Transcription(
    info=TranscriptionInfo(
        language="en", language_probability=1.0, duration=3662.0, duration_after_vad=3662.0
    ),
    segments=SEGMENTS,
)


def test_timestamp() -> None:
    assert formats.timestamp(0, ",") == "00:00:00,000"
    assert formats.timestamp(3661.0456, ".") == "01:01:01.046"
    assert formats.timestamp(59.9996, ",") == "00:01:00,000"
    assert formats.timestamp(-1, ",") == "00:00:00,000"


def test_srt() -> None:
    srt = formats.to_srt(SEGMENTS)
    assert srt == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n"
        "2\n00:00:02,500 --> 01:01:01,046\nA -> B\n"
    )


def test_vtt() -> None:
    vtt = formats.to_vtt(SEGMENTS)
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n")
    assert len(re.findall(r"-->", vtt)) == 2  # the arrow inside the text is escaped


def test_json_text_verbose() -> None:
    assert formats.to_json(RESULT).model_dump() == {"text": "Hello there. A --> B"}
    assert formats.to_text(RESULT) == "Hello there. A --> B\n"
    verbose = formats.to_verbose(RESULT, "translate", segments=True, words=True)
    body = verbose.model_dump(exclude_none=True)
    assert body["task"] == "translate" and body["language"] == "en"
    assert [s["id"] for s in body["segments"]] == [0, 1, 2]
    assert body["words"] == [
        {"word": "Hello", "start": 0.0, "end": 0.9},
        {"word": "there.", "start": 0.9, "end": 2.5},
    ]
    only_segments = formats.to_verbose(RESULT, "transcribe").model_dump(exclude_none=True)
    assert "words" not in only_segments and len(only_segments["segments"]) == 3
