"""faster-whisper (CTranslate2) backend: `WhisperModel`, optionally `BatchedInferencePipeline`.

faster-whisper returns segments from a generator that decodes lazily. The generator is
iterated on the engine's worker thread; each segment is handed to the event loop through an
`asyncio.Queue` as soon as it is decoded, so a streamed response flushes segment by segment.
When the consumer stops (client gone), a flag stops the worker at the next segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any

import numpy as np

from serve_common import metrics
from serve_common.model_paths import resolve_model_path
from stt_serve.config import SttConfig
from stt_serve.engine import (
    Segment,
    SttEngine,
    TranscribeOptions,
    TranscriptionInfo,
    Word,
)
from stt_serve.engines._whisper_batching import ChunkBatcher, request_pipeline

logger = logging.getLogger("stt_serve.faster_whisper")

#: OpenAI: temperature 0 means "start at 0 and raise it while the output fails the
#: compression-ratio / log-prob thresholds" — faster-whisper's fallback schedule.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

_END = object()


def resolve_device(preference: str) -> str:
    """CTranslate2 device name for a ServiceConfig device ("rocm" builds answer to "cuda")."""
    import ctranslate2

    try:
        gpus = ctranslate2.get_cuda_device_count()
    except Exception:  # no CUDA runtime at all
        gpus = 0
    if preference == "auto":
        return "cuda" if gpus > 0 else "cpu"
    if preference in ("cuda", "rocm"):
        if gpus == 0:
            raise RuntimeError(
                f"device={preference} but CTranslate2 sees no GPU (a CPU-only build, or no "
                "visible device)"
            )
        return "cuda"
    return "cpu"


def cpu_threads(configured: int, workers: int) -> int:
    """Threads per transcription: the configured count, else this process's CPUs / workers."""
    if configured > 0:
        return configured
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus // max(1, workers)))


def _raise_omp_threads(threads: int) -> None:
    """Ray sets OMP_NUM_THREADS to the replica's num_cpus (1 by default); CTranslate2's OpenMP
    runtime then runs parts of the model single-threaded whatever `intra_threads` says (slower,
    and even different int8 results). Raise it before CTranslate2 is first imported."""
    current = os.environ.get("OMP_NUM_THREADS", "")
    if "ctranslate2" in sys.modules or not current.isdigit() or int(current) >= threads:
        return
    logger.info("OMP_NUM_THREADS %s -> %d for CTranslate2", current, threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


class FasterWhisperEngine(SttEngine):
    def gpu_memory_used(self) -> int | None:
        """CTranslate2 allocates outside torch and has no memory query: not measurable here
        (the budget gauge still shows the fraction)."""
        return None

    def __init__(self, config: SttConfig) -> None:
        super().__init__(config)
        self.model: Any = None
        self.batcher: ChunkBatcher | None = None
        self._languages: list[str] = ["en"]
        if config.batched:
            # Requests wait in the shared batcher on their own threads: one per batch slot.
            self.worker_threads = max(config.num_workers, config.batch_size)

    @property
    def languages(self) -> list[str]:
        return self._languages

    async def load(self) -> None:
        cfg = self.config
        try:
            path = resolve_model_path(cfg.model)
        except ValueError as exc:
            raise RuntimeError(f"cannot resolve model {cfg.model!r}: {exc}") from exc
        await self.run_blocking(self._load_blocking, path)
        self.loaded = True

    def _load_blocking(self, path: str) -> None:
        threads = cpu_threads(self.config.cpu_threads, self.config.num_workers)
        _raise_omp_threads(threads)
        import ctranslate2
        from faster_whisper import BatchedInferencePipeline, WhisperModel
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        cfg = self.config
        device = resolve_device(cfg.device)
        compute_type = cfg.resolve_compute_type(device)
        supported = ctranslate2.get_supported_compute_types(device, cfg.device_index)
        if compute_type not in ("default", "auto") and compute_type not in supported:
            raise RuntimeError(
                f"compute_type {compute_type!r} is not supported on {device} "
                f"(supported: {sorted(supported)})"
            )
        if cfg.gpu_memory_fraction is not None and device == "cuda":
            # CTranslate2 has no per-process memory cap; the fleet validator sizes the card.
            logger.info(
                "gpu_memory_fraction=%s is advisory for CTranslate2 (no allocator cap)",
                cfg.gpu_memory_fraction,
            )
        self.model = WhisperModel(
            path,
            device=device,
            device_index=cfg.device_index,
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=cfg.num_workers,
            download_root=cfg.download_root,
            local_files_only=cfg.local_files_only,
            revision=cfg.revision,
        )
        self.device = device
        self.compute_type = compute_type
        self.multilingual = bool(self.model.model.is_multilingual)
        self._languages = sorted(_LANGUAGE_CODES) if self.multilingual else ["en"]
        if cfg.batched and cfg.cross_request_batching:
            shared = BatchedInferencePipeline(self.model)
            tags = {"service": "stt", "model": cfg.primary_name}
            self.batcher = ChunkBatcher(
                shared.generate_segment_batched,
                max_chunks=cfg.batch_size,
                wait_s=cfg.batch_wait_ms / 1000,
                on_batch=lambda _requests, chunks: metrics.BATCH_SIZE.observe(chunks, tags=tags),
            )

    async def close(self) -> None:
        self.batcher = None
        self.model = None
        await super().close()
        gc.collect()

    async def check_health(self) -> None:
        await super().check_health()
        if self.model is None:
            raise RuntimeError("whisper model is not loaded")

    # ---- transcription -------------------------------------------------------------------
    def _kwargs(self, options: TranscribeOptions) -> dict[str, Any]:
        cfg = self.config
        temperature: float | tuple[float, ...] = (
            FALLBACK_TEMPERATURES if options.temperature == 0 else options.temperature
        )
        kwargs: dict[str, Any] = {
            "language": options.language,
            "task": options.task,
            "initial_prompt": options.prompt or None,
            "temperature": temperature,
            "beam_size": cfg.beam_size,
            "word_timestamps": options.word_timestamps,
            "condition_on_previous_text": cfg.condition_on_previous_text,
            "vad_filter": cfg.use_vad,
            "vad_parameters": dict(cfg.vad_parameters) or None,
        }
        if cfg.batched:
            kwargs["batch_size"] = cfg.batch_size
        return kwargs

    def _run(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        emit: Callable[[Any], None],
        cancelled: threading.Event,
    ) -> None:
        """Worker thread: decode and emit the info, then each segment, then `_END`."""
        pipeline: Any = None
        try:
            if cancelled.is_set():  # the client left while this waited for a worker
                return
            if self.model is None:
                raise RuntimeError("whisper model is closed")
            if self.config.batched:
                batcher = None if options.word_timestamps else self.batcher
                runner = pipeline = request_pipeline(self.model, batcher)
            else:
                runner = self.model
            segments, info = runner.transcribe(audio, **self._kwargs(options))
            emit(
                TranscriptionInfo(
                    language=str(info.language),
                    language_probability=float(info.language_probability),
                    duration=float(info.duration),
                    duration_after_vad=float(info.duration_after_vad),
                )
            )
            try:
                for seg in segments:
                    emit(_segment(seg))
                    if cancelled.is_set():
                        break
            finally:
                close = getattr(segments, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # handed to the consumer, raised there
            emit(exc)
        finally:
            if pipeline is not None:
                pipeline.release()
            emit(_END)

    async def stream(
        self, audio: np.ndarray, options: TranscribeOptions
    ) -> AsyncGenerator[TranscriptionInfo | Segment, None]:
        if audio.ndim != 1 or audio.dtype != np.float32:
            raise ValueError("audio must be float32 mono samples at 16 kHz")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: Any) -> None:
            if cancelled.is_set() and item is not _END:
                return
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                loop.call_soon_threadsafe(queue.put_nowait, item)

        work = asyncio.ensure_future(self.run_blocking(self._run, audio, options, emit, cancelled))
        finished = False
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    finished = True
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()
            if finished:
                await asyncio.shield(work)  # the worker is returning: a moment at most
            elif not work.done():
                # The consumer left: the worker stops after its current segment, unawaited.
                work.add_done_callback(_swallow)
            else:
                _swallow(work)


def _swallow(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def _segment(seg: Any) -> Segment:
    words = [
        Word(
            word=str(w.word),
            start=round(float(w.start), 3),
            end=round(float(w.end), 3),
            probability=float(w.probability),
        )
        for w in (seg.words or [])
    ]
    return Segment(
        id=int(seg.id),
        seek=int(seg.seek or 0),
        start=round(float(seg.start), 3),
        end=round(float(seg.end), 3),
        text=str(seg.text),
        tokens=[int(t) for t in (seg.tokens or [])],
        temperature=float(seg.temperature or 0.0),
        avg_logprob=float(seg.avg_logprob or 0.0),
        compression_ratio=float(seg.compression_ratio or 0.0),
        no_speech_prob=float(seg.no_speech_prob or 0.0),
        words=words,
    )
