"""`TTSServer`: the Serve deployment for `/v1/audio/speech`, `/v1/audio/voices` and KServe V2.

Everything a client can get wrong (model, empty or over-long input, voice, language, format,
speed, reference clip) is checked before the response starts, so it gets a 4xx in the OpenAI
error shape. Audio is then streamed as it is generated: the engine yields float32 chunks per
sentence (XTTS: within a sentence too), each is encoded at once and sent as a chunk of the
HTTP body, or as a `speech.audio.delta` event with `stream_format=sse`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict
from ray import serve
from starlette.datastructures import UploadFile

from serve_common.audio import decode_audio
from serve_common.errors import (
    APIError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaError,
)
from serve_common.protocol.audio import (
    SpeechAudioDelta,
    SpeechAudioDone,
    SpeechRequest,
    Voice,
    VoiceList,
)
from serve_common.protocol.v2 import InferRequest, InferResponse, ModelMetadata, TensorMetadata
from serve_common.server import ModelServer
from serve_common.sse import SSE_HEADERS, SSE_MEDIA_TYPE, sse_error, sse_event
from serve_common.v2 import binary_tensor, bytes_as_text, find_input
from tts_serve import metrics as m
from tts_serve.config import TTSConfig
from tts_serve.encode import MEDIA_TYPES, create_encoder, encode_audio, output_rate_for
from tts_serve.engine import ResolvedVoice, SynthesisOptions, TTSEngine, create_engine
from tts_serve.text import clean_voice_name, split_sentences, voice_slug

logger = logging.getLogger("tts_serve.server")

_ENCODE_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tts-encode")


async def run_encoder(fn: Callable[..., bytes], *args: Any) -> bytes:
    """One encoder step on the encoding threads (a request's steps are awaited in order)."""
    return await asyncio.get_running_loop().run_in_executor(_ENCODE_POOL, fn, *args)


V2_FORMATS = ("wav", "flac", "mp3", "opus", "aac", "pcm")


class VoiceRef(BaseModel):
    """OpenAI's custom-voice form: `"voice": {"id": "..."}`."""

    model_config = ConfigDict(extra="ignore")
    id: str


class TTSSpeechRequest(SpeechRequest):
    voice: str | VoiceRef  # type: ignore[assignment]

    @property
    def voice_name(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice


class VoiceObject(Voice):
    """A created voice: our `Voice` plus the fields of OpenAI's `audio.voice` object."""

    id: str
    object: Literal["audio.voice"] = "audio.voice"
    created_at: int
    type: Literal["audio_sample"] = "audio_sample"


class VoiceDeleted(BaseModel):
    id: str
    object: Literal["audio.voice.deleted"] = "audio.voice.deleted"
    deleted: bool = True


class SpeechJob:
    """A validated speech request, ready to run."""

    def __init__(
        self,
        pieces: list[str],
        voice: ResolvedVoice,
        language: str,
        options: SynthesisOptions,
        characters: int,
    ) -> None:
        self.pieces = pieces
        self.voice = voice
        self.language = language
        self.options = options
        self.characters = characters


class TTSServer(ModelServer[TTSConfig, TTSEngine]):
    service = "tts"
    config_cls = TTSConfig

    def create_engine(self, config: TTSConfig) -> TTSEngine:
        return create_engine(config)

    # ---- request preparation --------------------------------------------------------------
    async def prepare(
        self,
        text: Any,
        voice_name: str,
        language: str | None,
        speed: float,
        param: str = "input",
    ) -> SpeechJob:
        engine = await self.ensure_loaded()
        cfg = self.config
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequestError(f"'{param}' must be non-empty text.", param=param)
        if len(text) > cfg.max_input_chars:
            raise InvalidRequestError(
                f"'{param}' has {len(text)} characters; the limit is {cfg.max_input_chars}.",
                param=param,
                code="input_too_long",
            )
        if not isinstance(voice_name, str) or not voice_name.strip():
            raise InvalidRequestError("'voice' must name a voice.", param="voice")
        if not (0.25 <= speed <= 4.0):
            raise InvalidRequestError("'speed' must be between 0.25 and 4.0.", param="speed")
        voice = engine.resolve_voice(voice_name, cfg.voice_aliases)
        lang = engine.resolve_language(language)
        pieces = split_sentences(text, cfg.max_sentence_chars or engine.max_piece_chars(lang))
        if not pieces:
            raise InvalidRequestError(f"'{param}' contains nothing to speak.", param=param)
        await engine.prepare_voice(voice)
        options = SynthesisOptions(
            speed=float(speed),
            stream=cfg.stream,
            stream_chunk_size=cfg.stream_chunk_size,
            temperature=cfg.temperature,
            seed=cfg.seed,
        )
        return SpeechJob(pieces, voice, lang, options, len(text))

    def _record(self, job: SpeechJob, seconds: float, elapsed: float) -> None:
        tags = {"model": self.config.primary_name}
        m.CHARACTERS.inc(job.characters, tags=tags)
        m.AUDIO_SECONDS.inc(seconds, tags={**tags, "voice_kind": job.voice.kind})
        if seconds > 0:
            m.REAL_TIME_FACTOR.observe(elapsed / seconds, tags=tags)

    async def speech_stream(
        self, job: SpeechJob, fmt: str, sse: bool
    ) -> tuple[AsyncIterator[bytes], int]:
        """Start synthesis, wait for the first chunk (errors still become a status code),
        then hand back the body iterator and the output sample rate."""
        engine = self.engine
        encoder = create_encoder(fmt, engine.sample_rate, self.config.output_sample_rate)
        started = time.perf_counter()
        chunks = engine.stream(job.pieces, job.voice, job.language, job.options)
        try:
            first: np.ndarray | None = await anext(chunks)
        except StopAsyncIteration:
            first = None
        except BaseException:
            await chunks.aclose()
            raise
        m.TIME_TO_FIRST_AUDIO_MS.observe(
            (time.perf_counter() - started) * 1000, tags={"model": self.config.primary_name}
        )

        def frame(data: bytes) -> bytes:
            if not sse:
                return data
            return sse_event(SpeechAudioDelta(audio=base64.b64encode(data).decode()))

        async def body() -> AsyncIterator[bytes]:
            # Encoding runs off the event loop (and beside the engine's worker thread).
            try:
                if first is not None:
                    data = await run_encoder(encoder.write, first)
                    if data:
                        yield frame(data)
                async for chunk in chunks:
                    data = await run_encoder(encoder.write, chunk)
                    if data:
                        yield frame(data)
                tail = await run_encoder(encoder.close)
                if tail:
                    yield frame(tail)
                if sse:
                    yield sse_event(SpeechAudioDone())
                self._record(job, encoder.duration_s, time.perf_counter() - started)
            except Exception:
                logger.exception("speech synthesis failed after the response started")
                if sse:
                    yield sse_error("Speech synthesis failed.", code="engine_error")
            finally:
                await chunks.aclose()

        return body(), encoder.sample_rate

    # ---- voices -------------------------------------------------------------------------------
    async def create_voice(self, request: Request) -> VoiceObject:
        engine = await self.ensure_loaded()
        cfg = self.config
        if not engine.supports_cloning:
            raise InvalidRequestError(
                f"The {engine.backend} backend has built-in voices only; voice cloning is not "
                "supported by this model.",
                code="cloning_not_supported",
            )
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise UnsupportedMediaError(
                "Send the voice as multipart/form-data with 'name' and 'audio_sample' (a file)."
            )
        try:
            form = await request.form(max_files=2, max_fields=16)
        except PayloadTooLargeError:
            raise
        except Exception as exc:
            raise InvalidRequestError(
                "The multipart body could not be parsed.", code="invalid_multipart"
            ) from exc
        try:
            name = form.get("name")
            if not isinstance(name, str) or not name.strip():
                raise InvalidRequestError(
                    "Missing required parameter: 'name'.",
                    param="name",
                    code="missing_required_parameter",
                )
            kind = form.get("type")
            if kind not in (None, "", "audio_sample"):
                raise InvalidRequestError(
                    "Only voices from an audio sample (type=audio_sample) can be created here.",
                    param="type",
                )
            upload = form.get("audio_sample") or form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidRequestError(
                    "Missing required file: 'audio_sample' (a reference recording).",
                    param="audio_sample",
                    code="missing_required_parameter",
                )
            data = await upload.read(cfg.max_reference_bytes + 1)
        finally:
            await form.close()
        if len(data) > cfg.max_reference_bytes:
            raise PayloadTooLargeError(
                f"The reference clip exceeds {cfg.max_reference_bytes} bytes.",
                param="audio_sample",
            )
        display = clean_voice_name(name)
        voice_id = voice_slug(display)
        if not voice_id:
            raise InvalidRequestError(
                "'name' must contain letters or digits.", param="name", code="invalid_name"
            )
        if engine.is_builtin_id(voice_id) or voice_id in cfg.voice_aliases:
            raise ConflictError(
                f"'{voice_id}' is the name of a built-in voice; choose another name.",
                param="name",
            )
        store = engine.store
        assert store is not None
        if store.exists(voice_id):
            raise ConflictError(f"A voice named '{voice_id}' already exists.", param="name")
        if store.count() >= cfg.max_cloned_voices:
            raise InvalidRequestError(
                f"The limit of {cfg.max_cloned_voices} cloned voices is reached; delete one first.",
                code="voice_limit_reached",
            )
        try:
            samples = await asyncio.to_thread(
                decode_audio,
                data,
                sample_rate=engine.clone_sample_rate,
                max_seconds=cfg.max_reference_seconds,
            )
        except APIError as exc:
            exc.param = "audio_sample"  # decode_audio names the STT upload field ("file")
            raise
        seconds = samples.shape[0] / engine.clone_sample_rate
        if seconds < cfg.min_reference_seconds:
            raise InvalidRequestError(
                f"The reference clip is {seconds:.2f} s long; at least "
                f"{cfg.min_reference_seconds:g} s of speech is needed.",
                param="audio_sample",
                code="audio_too_short",
            )
        if float(np.max(np.abs(samples))) < 1e-3:
            raise InvalidRequestError(
                "The reference clip is silent.", param="audio_sample", code="invalid_audio"
            )
        try:
            stored = await engine.create_voice(voice_id, display, samples)
        except FileExistsError as exc:
            raise ConflictError(
                f"A voice named '{voice_id}' already exists.", param="name"
            ) from exc
        m.CLONED_VOICES.set(store.count(), tags={"model": cfg.primary_name})
        logger.info("cloned voice %s created (%.1f s reference)", voice_id, seconds)
        return VoiceObject(
            id=stored.voice_id,
            voice_id=stored.voice_id,
            name=stored.name,
            kind="cloned",
            languages=stored.languages,
            created_at=stored.created_at,
        )

    async def delete_voice(self, voice_id: str) -> VoiceDeleted:
        engine = await self.ensure_loaded()
        if engine.is_builtin_id(voice_id):
            raise InvalidRequestError(
                f"'{voice_id}' is a built-in voice and cannot be deleted.", param="voice_id"
            )
        if not await engine.delete_voice(voice_id):
            raise NotFoundError(f"No cloned voice '{voice_id}'.", code="voice_not_found")
        if engine.store is not None:
            m.CLONED_VOICES.set(engine.store.count(), tags={"model": self.config.primary_name})
        return VoiceDeleted(id=voice_id)

    # ---- routes ---------------------------------------------------------------------------
    def routers(self) -> list[APIRouter]:
        router = APIRouter()

        @router.post("/v1/audio/speech", response_model=None)
        async def speech(body: TTSSpeechRequest, request: Request) -> StreamingResponse:
            self.check_model(body.model, request)
            job = await self.prepare(body.input, body.voice_name, body.language, body.speed)
            sse = body.stream_format == "sse"
            stream, rate = await self.speech_stream(job, body.response_format, sse)
            headers = {"X-Sample-Rate": str(rate), "X-Voice": job.voice.voice_id}
            if sse:
                return StreamingResponse(
                    stream, media_type=SSE_MEDIA_TYPE, headers={**SSE_HEADERS, **headers}
                )
            media = MEDIA_TYPES[body.response_format]
            return StreamingResponse(stream, media_type=media, headers=headers)

        @router.get("/v1/audio/voices")
        async def list_voices() -> VoiceList:
            engine = await self.ensure_loaded()
            voices = await engine.run_blocking(engine.list_voices)
            return VoiceList(data=voices)

        @router.post("/v1/audio/voices")
        async def create_voice(request: Request) -> VoiceObject:
            return await self.create_voice(request)

        @router.delete("/v1/audio/voices/{voice_id}")
        async def delete_voice(voice_id: str) -> VoiceDeleted:
            return await self.delete_voice(voice_id)

        return [router]

    # ---- KServe V2 --------------------------------------------------------------------------
    def v2_metadata(self, name: str) -> ModelMetadata:
        engine = self.engine
        return ModelMetadata(
            name=name,
            versions=[self.config.revision] if self.config.revision else [],
            platform=f"tts/{self.config.backend}",
            inputs=[TensorMetadata(name="text", datatype="BYTES", shape=[-1])],
            outputs=[TensorMetadata(name="audio", datatype="BYTES", shape=[-1])],
            parameters={
                "voice": "voice id (request parameter; default: the first built-in voice)",
                "language": f"request parameter; one of {', '.join(engine.languages())}",
                "speed": "0.25-4.0 (request parameter)",
                "response_format": f"{'|'.join(V2_FORMATS)} (request parameter, default wav)",
                "sample_rate": output_rate_for(
                    "wav", engine.sample_rate, self.config.output_sample_rate
                ),
                "audio_content_type": "base64",
            },
        )

    async def v2_infer(self, name: str, request: InferRequest) -> InferResponse:
        engine = await self.ensure_loaded()
        cfg = self.config
        params = request.parameters or {}
        texts = bytes_as_text(find_input(request, "text"))  # type: ignore[arg-type]
        if not texts:
            raise InvalidRequestError("input 'text' is empty", param="text")
        if len(texts) > cfg.max_v2_batch:
            raise InvalidRequestError(
                f"input 'text' has {len(texts)} items; the limit is {cfg.max_v2_batch}",
                param="text",
            )
        voice = params.get("voice")
        if voice is None:
            builtin = engine.builtin_voice_ids()
            if not builtin:
                raise InvalidRequestError("parameter 'voice' is required", param="voice")
            voice = builtin[0]
        if not isinstance(voice, str):
            raise InvalidRequestError("parameter 'voice' must be a string", param="voice")
        language = params.get("language")
        if language is not None and not isinstance(language, str):
            raise InvalidRequestError("parameter 'language' must be a string", param="language")
        speed = params.get("speed", 1.0)
        if isinstance(speed, bool) or not isinstance(speed, int | float):
            raise InvalidRequestError("parameter 'speed' must be a number", param="speed")
        fmt = params.get("response_format", "wav")
        if fmt not in V2_FORMATS:
            raise InvalidRequestError(
                f"parameter 'response_format' must be one of {', '.join(V2_FORMATS)}",
                param="response_format",
            )
        jobs = [
            await self.prepare(text, voice, language, float(speed), param="text") for text in texts
        ]
        audios: list[bytes] = []
        durations: list[float] = []
        for job in jobs:
            started = time.perf_counter()
            samples = await engine.synthesize(job.pieces, job.voice, job.language, job.options)
            seconds = samples.shape[0] / engine.sample_rate
            self._record(job, seconds, time.perf_counter() - started)
            durations.append(round(seconds, 3))
            audios.append(
                await run_encoder(
                    encode_audio, samples, fmt, engine.sample_rate, cfg.output_sample_rate
                )
            )
        return InferResponse(
            model_name=name,
            outputs=[binary_tensor("audio", audios)],
            parameters={
                "sample_rate": output_rate_for(fmt, engine.sample_rate, cfg.output_sample_rate),
                "response_format": fmt,
                "durations_s": durations,
            },
        )


# The Serve deployment (the class above stays importable and testable without Serve).
TTSDeployment = serve.deployment(
    name="TTSServer",
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=32,
    health_check_period_s=10,
    health_check_timeout_s=30,
)(serve.ingress()(TTSServer))
