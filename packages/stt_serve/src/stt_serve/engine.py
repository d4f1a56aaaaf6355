"""`SttEngine`: 16 kHz mono samples in, timed segments out. One subclass per backend.

`stream()` yields the `TranscriptionInfo` first, then each `Segment` as the backend decodes
it; `transcribe()` collects the same stream. Backends decode on the engine's worker thread and
stop at the next segment when the consumer goes away (client disconnect).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from serve_common.engine import Engine
from stt_serve.config import SttConfig

SAMPLE_RATE = 16000
Task = Literal["transcribe", "translate"]


@dataclass(frozen=True)
class TranscribeOptions:
    task: Task = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    probability: float = 0.0


@dataclass(frozen=True)
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int] = field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: list[Word] = field(default_factory=list)


@dataclass(frozen=True)
class TranscriptionInfo:
    language: str
    language_probability: float
    duration: float
    duration_after_vad: float


@dataclass(frozen=True)
class Transcription:
    info: TranscriptionInfo
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()


class SttEngine(Engine):
    def __init__(self, config: SttConfig) -> None:
        super().__init__()
        self.config = config
        self.device = "cpu"
        self.compute_type = "default"
        self.multilingual = False
        # Parallel transcriptions (each on its own worker thread).
        self.worker_threads = config.num_workers

    @property
    @abstractmethod
    def languages(self) -> list[str]:
        """Language codes the model accepts (["en"] for English-only models)."""

    @abstractmethod
    def stream(
        self, audio: np.ndarray, options: TranscribeOptions
    ) -> AsyncGenerator[TranscriptionInfo | Segment, None]:
        """Yield the info, then segments as they are decoded (decoding off the event loop)."""

    async def transcribe(self, audio: np.ndarray, options: TranscribeOptions) -> Transcription:
        info: TranscriptionInfo | None = None
        segments: list[Segment] = []
        async for item in self.stream(audio, options):
            if isinstance(item, TranscriptionInfo):
                info = item
            else:
                segments.append(item)
        assert info is not None, "engine stream yielded no info"
        return Transcription(info=info, segments=segments)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "backend": self.config.backend,
            "device": self.device,
            "compute_type": self.compute_type,
            "multilingual": self.multilingual,
            "batched": self.config.batched,
            "cross_request_batching": self.config.batched and self.config.cross_request_batching,
            "vad_filter": self.config.use_vad,
        }


def create_engine(config: SttConfig) -> SttEngine:
    from stt_serve.engines.faster_whisper import FasterWhisperEngine

    return FasterWhisperEngine(config)
