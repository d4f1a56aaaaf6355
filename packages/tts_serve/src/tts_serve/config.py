"""`TTSConfig`: the model, its backend, voice storage and the request limits of the TTS service."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from serve_common.config import ServiceConfig


class TTSConfig(ServiceConfig):
    backend: Literal["xtts", "piper"] = Field(
        default="xtts",
        description="xtts: coqui-tts XTTS-v2 (multilingual, built-in speakers, cloning); "
        "piper: a Piper ONNX voice (built-in voices only).",
    )
    default_language: str = Field(
        default="en", description="Language assumed when a request gives none (XTTS)."
    )
    voice_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Extra voice names mapped to voice ids, e.g. {'alloy': 'ana-florence'}.",
    )
    output_sample_rate: int | None = Field(
        default=24000,
        ge=8000,
        le=48000,
        description="Rate of mp3/aac/flac/wav/pcm output (OpenAI's is 24 kHz); None keeps the "
        "model's own rate. Opus is always 48 kHz.",
    )
    voices_dir: str | None = Field(
        default=None,
        description="Where cloned voices are stored (survives restarts; share it between "
        "replicas). Default: $TTS_SERVE_VOICES_DIR or ~/.local/share/tts_serve/voices.",
    )
    # ---- limits ------------------------------------------------------------------------------
    max_input_chars: int = Field(default=4096, ge=1, description="Characters per request.")
    max_sentence_chars: int | None = Field(
        default=None,
        ge=16,
        description="Longest piece sent to the engine at once; default: the XTTS tokenizer's "
        "limit for the language, 400 for Piper.",
    )
    max_reference_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Size limit of a reference clip upload."
    )
    max_reference_seconds: float = Field(default=30.0, gt=0)
    min_reference_seconds: float = Field(default=1.0, ge=0.35)
    max_cloned_voices: int = Field(default=256, ge=0)
    max_v2_batch: int = Field(default=8, ge=1, description="Texts per KServe V2 infer call.")
    # ---- XTTS generation -------------------------------------------------------------------
    stream: bool = Field(
        default=True,
        description="XTTS: stream within a sentence with `inference_stream` (first audio "
        "sooner); False synthesizes each sentence whole with `inference` (less decoder work).",
    )
    stream_chunk_size: int = Field(
        default=20, ge=1, le=400, description="XTTS: GPT tokens per streamed audio chunk."
    )
    temperature: float | None = Field(
        default=None, gt=0, le=2.0, description="XTTS sampling temperature (default: the model's)."
    )
    seed: int | None = Field(
        default=None, description="Seed sampling per request (reproducible output)."
    )
    torch_threads: int | None = Field(
        default=None, ge=1, description="torch intra-op threads on CPU (default: torch's)."
    )
    use_deepspeed: bool = Field(default=False, description="XTTS DeepSpeed inference (CUDA).")

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = ServiceConfig.RUNTIME_FIELDS | {
        "default_language",
        "voice_aliases",
        "output_sample_rate",
        "max_input_chars",
        "max_sentence_chars",
        "max_reference_bytes",
        "max_reference_seconds",
        "min_reference_seconds",
        "max_cloned_voices",
        "max_v2_batch",
        "stream",
        "stream_chunk_size",
        "temperature",
        "seed",
    }

    @field_validator("voice_aliases")
    @classmethod
    def _aliases(cls, v: dict[str, str]) -> dict[str, str]:
        for alias, target in v.items():
            if not alias.strip() or not target.strip():
                raise ValueError("voice aliases and their targets must be non-empty")
        return v

    @field_validator("default_language")
    @classmethod
    def _language(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("default_language must not be empty")
        return v

    @model_validator(mode="after")
    def _reference_limits(self) -> TTSConfig:
        if self.min_reference_seconds > self.max_reference_seconds:
            raise ValueError("min_reference_seconds must not exceed max_reference_seconds")
        return self
