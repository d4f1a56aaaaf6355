"""`/v1/audio/transcriptions`, `/v1/audio/translations`, `/v1/audio/speech` (OpenAI)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from serve_common.protocol.base import StrictWireModel, WireModel

TranscriptionFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]


class TranscriptionWord(StrictWireModel):
    word: str
    start: float
    end: float


class TranscriptionSegment(StrictWireModel):
    id: int
    seek: int = 0
    start: float
    end: float
    text: str
    tokens: list[int] = Field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0


class TranscriptionResponse(StrictWireModel):
    text: str


class VerboseTranscriptionResponse(StrictWireModel):
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None


class TranscriptTextDelta(StrictWireModel):
    """One SSE event of a streamed transcription."""

    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str


class TranscriptTextDone(StrictWireModel):
    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str


class SpeechRequest(WireModel):
    model: str
    input: str
    voice: str
    response_format: SpeechFormat = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = None
    stream_format: Literal["audio", "sse"] = "audio"
    # Extension (XTTS): the language of `input`.
    language: str | None = None


class SpeechAudioDelta(StrictWireModel):
    type: Literal["speech.audio.delta"] = "speech.audio.delta"
    audio: str


class SpeechAudioDone(StrictWireModel):
    type: Literal["speech.audio.done"] = "speech.audio.done"


class Voice(StrictWireModel):
    voice_id: str
    name: str
    kind: Literal["builtin", "cloned"]
    languages: list[str] = Field(default_factory=list)


class VoiceList(StrictWireModel):
    object: Literal["list"] = "list"
    data: list[Voice]
