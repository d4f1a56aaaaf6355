"""`SttConfig`: the whisper model, its faster-whisper options and the request limits."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from serve_common.config import ServiceConfig

DEFAULT_COMPUTE_TYPES = {"cuda": "float16", "cpu": "int8"}


class SttConfig(ServiceConfig):
    backend: Literal["faster-whisper"] = Field(
        default="faster-whisper", description="Speech-to-text engine (CTranslate2 whisper)."
    )
    compute_type: str = Field(
        default="auto",
        description="CTranslate2 compute type (int8, int8_float16, float16, float32, ...); "
        "auto: compute_type_by_device for the device the model lands on.",
    )
    compute_type_by_device: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_COMPUTE_TYPES),
        description="compute_type=auto per device: float16 on CUDA, int8 on CPU by default.",
    )
    device_index: int = Field(default=0, ge=0, description="GPU index (after visible devices).")
    cpu_threads: int = Field(
        default=0,
        ge=0,
        description="Threads per transcription on CPU. 0: the CPUs this process may use divided "
        "by num_workers, at most 4 (set explicitly because Ray sets OMP_NUM_THREADS to the "
        "replica's num_cpus, which would otherwise make CTranslate2 single-threaded).",
    )
    num_workers: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Transcriptions run in parallel in this replica (CTranslate2 workers and "
        "engine threads). 1 serializes the model (best on one GPU).",
    )
    batched: bool = Field(
        default=False,
        description="Use faster-whisper's BatchedInferencePipeline: a file's speech chunks "
        "(found by VAD) are decoded as one batch; much faster on long audio.",
    )
    batch_size: int = Field(default=8, ge=1, le=128, description="Chunks per batch (batched).")
    cross_request_batching: bool = Field(
        default=True,
        description="With the batched pipeline: merge the chunks of concurrent requests into "
        "shared model calls (up to batch_size chunks), not only the chunks of one file.",
    )
    batch_wait_ms: float = Field(
        default=250.0,
        ge=0,
        le=5000,
        description="Longest a batch waits for requests that are still preparing their chunks "
        "(VAD, features); it never waits when no other request is on the way.",
    )
    vad_filter: bool | None = Field(
        default=None,
        description="Silero VAD drops silence before decoding. Default: on with the batched "
        "pipeline (which needs it to cut long audio), off otherwise.",
    )
    vad_parameters: dict[str, float | int] = Field(
        default_factory=dict,
        description="faster_whisper.vad.VadOptions fields, e.g. min_silence_duration_ms.",
    )
    beam_size: int = Field(default=5, ge=1, le=16)
    condition_on_previous_text: bool = True
    default_language: str | None = Field(
        default=None,
        description="Language assumed when a request names none (None: detect it; English-only "
        "models always use en).",
    )
    download_root: str | None = Field(
        default=None, description="Cache folder for models named by hub id (e.g. large-v3)."
    )
    local_files_only: bool = Field(
        default=False, description="Never download: the model must be cached or a local folder."
    )
    max_body_bytes: int = Field(
        default=26 * 1024 * 1024,
        ge=1024,
        description="Largest upload (the file plus multipart framing); OpenAI allows 25 MB.",
    )
    max_audio_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="Longest audio accepted; longer files get 413 (code audio_too_long).",
    )
    max_prompt_chars: int = Field(default=4096, ge=0)

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = ServiceConfig.RUNTIME_FIELDS | {
        "max_audio_seconds",
        "max_prompt_chars",
        "default_language",
    }

    @field_validator("device")
    @classmethod
    def _ct2_device(cls, v: str) -> str:
        if v in ("xpu", "mps"):
            raise ValueError(
                f"faster-whisper (CTranslate2) cannot run on {v}; use cpu, cuda, rocm or auto"
            )
        return v

    @field_validator("default_language")
    @classmethod
    def _lang(cls, v: str | None) -> str | None:
        return v.strip().lower() if v else None

    @model_validator(mode="after")
    def _vad(self) -> SttConfig:
        if self.batched and self.vad_filter is False:
            raise ValueError(
                "the batched pipeline needs vad_filter (it cuts audio into speech chunks); "
                "set vad_filter to true or leave it unset"
            )
        return self

    @property
    def use_vad(self) -> bool:
        return self.batched if self.vad_filter is None else self.vad_filter

    def resolve_compute_type(self, device: str) -> str:
        if self.compute_type != "auto":
            return self.compute_type
        return self.compute_type_by_device.get(device, "default")
