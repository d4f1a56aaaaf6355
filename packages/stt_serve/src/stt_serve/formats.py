"""Transcription results in OpenAI's response formats: json, text, srt, vtt, verbose_json."""

from __future__ import annotations

from typing import get_args

from serve_common.protocol.audio import (
    TranscriptionFormat,
    TranscriptionResponse,
    TranscriptionSegment,
    TranscriptionWord,
    VerboseTranscriptionResponse,
)
from stt_serve.engine import Segment, Task, Transcription

RESPONSE_FORMATS: tuple[str, ...] = get_args(TranscriptionFormat)


def timestamp(seconds: float, separator: str) -> str:
    """`HH:MM:SS<sep>mmm` (srt uses ",", vtt uses ".")."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def _cues(segments: list[Segment]) -> list[tuple[float, float, str]]:
    cues = []
    for seg in segments:
        text = seg.text.strip()
        if text:
            cues.append((seg.start, max(seg.end, seg.start), text.replace("-->", "->")))
    return cues


def to_srt(segments: list[Segment]) -> str:
    blocks = [
        f"{i}\n{timestamp(start, ',')} --> {timestamp(end, ',')}\n{text}\n"
        for i, (start, end, text) in enumerate(_cues(segments), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: list[Segment]) -> str:
    blocks = [
        f"{timestamp(start, '.')} --> {timestamp(end, '.')}\n{text}\n"
        for start, end, text in _cues(segments)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_verbose(
    result: Transcription, task: Task, *, segments: bool = True, words: bool = False
) -> VerboseTranscriptionResponse:
    return VerboseTranscriptionResponse(
        task=task,
        language=result.info.language,
        duration=round(result.info.duration, 3),
        text=result.text,
        segments=[
            TranscriptionSegment(
                id=i,
                seek=s.seek,
                start=s.start,
                end=s.end,
                text=s.text,
                tokens=s.tokens,
                temperature=s.temperature,
                avg_logprob=s.avg_logprob,
                compression_ratio=s.compression_ratio,
                no_speech_prob=s.no_speech_prob,
            )
            for i, s in enumerate(result.segments)
        ]
        if segments
        else None,
        words=[
            TranscriptionWord(word=w.word.strip(), start=w.start, end=w.end)
            for s in result.segments
            for w in s.words
        ]
        if words
        else None,
    )


def to_json(result: Transcription) -> TranscriptionResponse:
    return TranscriptionResponse(text=result.text)


def to_text(result: Transcription) -> str:
    return result.text + "\n"
