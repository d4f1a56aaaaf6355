"""`SttServer`: the Serve deployment for `/v1/audio/transcriptions`, `/v1/audio/translations`
(OpenAI multipart) and KServe V2 (`audio` BYTES -> `text` BYTES).

A request is parsed and validated (model, response_format, language, temperature, stream,
timestamp_granularities[]), its file decoded to 16 kHz mono off the event loop, then
transcribed by the engine; with `stream=true` each decoded segment is sent at once as a
`transcript.text.delta` event, ending with `transcript.text.done`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from ray import serve
from starlette.datastructures import FormData, UploadFile

from serve_common.audio import decode_audio
from serve_common.errors import (
    APIError,
    EngineError,
    InvalidRequestError,
    UnsupportedMediaError,
)
from serve_common.protocol.audio import TranscriptTextDelta, TranscriptTextDone
from serve_common.protocol.v2 import InferRequest, InferResponse, ModelMetadata, TensorMetadata
from serve_common.server import ModelServer
from serve_common.sse import SSE_HEADERS, SSE_MEDIA_TYPE, sse_error, sse_event
from serve_common.v2 import bytes_as_binary, find_input, text_tensor
from stt_serve import formats
from stt_serve import metrics as m
from stt_serve.config import SttConfig
from stt_serve.engine import (
    SAMPLE_RATE,
    Segment,
    SttEngine,
    Task,
    TranscribeOptions,
    Transcription,
    TranscriptionInfo,
    create_engine,
)

logger = logging.getLogger("stt_serve.server")

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
GRANULARITIES = ("word", "segment")
TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off", "")
MAX_V2_INPUTS = 16


@dataclass(frozen=True)
class TranscriptionParams:
    response_format: str
    language: str | None
    prompt: str | None
    temperature: float
    stream: bool
    granularities: frozenset[str]


def _invalid(message: str, param: str, code: str = "invalid_value") -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code=code)


def _field(form: FormData, key: str) -> str | None:
    value = form.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"'{key}' must be a text field, not a file.", key)
    return value


def _float(value: Any, param: str, lo: float, hi: float) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise _invalid(f"'{param}' must be a number between {lo:g} and {hi:g}.", param) from None
    if not lo <= out <= hi:
        raise _invalid(f"'{param}' must be between {lo:g} and {hi:g}.", param)
    return out


class SttServer(ModelServer[SttConfig, SttEngine]):
    service = "stt"
    config_cls = SttConfig

    def create_engine(self, config: SttConfig) -> SttEngine:
        return create_engine(config)

    # ---- request parsing ----------------------------------------------------------------------
    def parse_params(self, form: FormData, task: Task) -> TranscriptionParams:
        fmt = (_field(form, "response_format") or "json").strip()
        if fmt not in formats.RESPONSE_FORMATS:
            raise _invalid(
                f"Unknown response_format '{fmt}'; use one of "
                f"{', '.join(formats.RESPONSE_FORMATS)}.",
                "response_format",
            )
        language = (_field(form, "language") or "").strip().lower() or None
        prompt = _field(form, "prompt") or None
        if prompt is not None and len(prompt) > self.config.max_prompt_chars:
            raise _invalid(
                f"'prompt' is longer than {self.config.max_prompt_chars} characters.", "prompt"
            )
        raw_temp = _field(form, "temperature")
        temperature = 0.0 if raw_temp in (None, "") else _float(raw_temp, "temperature", 0, 1)
        raw_stream = (_field(form, "stream") or "").strip().lower()
        if raw_stream not in TRUE + FALSE:
            raise _invalid("'stream' must be true or false.", "stream")
        stream = raw_stream in TRUE
        grans: set[str] = set()
        for key in ("timestamp_granularities[]", "timestamp_granularities"):
            for value in form.getlist(key):
                if not isinstance(value, str) or value not in GRANULARITIES:
                    raise _invalid(
                        "'timestamp_granularities[]' values must be 'word' or 'segment'.",
                        "timestamp_granularities",
                    )
                grans.add(value)
        if grans and fmt != "verbose_json":
            raise _invalid(
                "timestamp_granularities needs response_format=verbose_json.",
                "timestamp_granularities",
            )
        if stream and fmt not in ("json", "text"):
            raise _invalid(
                f"stream=true sends transcript events; it cannot be combined with "
                f"response_format={fmt} (use json or text).",
                "stream",
            )
        return TranscriptionParams(
            response_format=fmt,
            language=language,
            prompt=prompt,
            temperature=temperature,
            stream=stream,
            granularities=frozenset(grans or {"segment"}),
        )

    def check_language(self, engine: SttEngine, language: str | None) -> str | None:
        language = language or self.config.default_language
        if language is None:
            return None
        if language not in engine.languages:
            if engine.multilingual:
                msg = f"Unsupported language '{language}'; use an ISO-639-1 code such as 'en'."
            else:
                msg = f"Unsupported language '{language}': this model is English-only ('en')."
            raise _invalid(msg, "language", "unsupported_language")
        return language

    async def decode(self, engine: SttEngine, data: bytes) -> np.ndarray:
        started = time.perf_counter()
        audio = await engine.run_blocking(
            decode_audio,
            data,
            sample_rate=SAMPLE_RATE,
            max_seconds=self.config.max_audio_seconds,
        )
        m.DECODE_MS.observe(
            (time.perf_counter() - started) * 1000, tags={"model": self.config.primary_name}
        )
        return audio

    # ---- transcription --------------------------------------------------------------------------
    async def transcribe(
        self, engine: SttEngine, audio: np.ndarray, options: TranscribeOptions
    ) -> Transcription:
        started = time.perf_counter()
        try:
            result = await engine.transcribe(audio, options)
        except APIError:
            raise
        except Exception as exc:
            logger.exception("transcription failed")
            raise EngineError("The transcription failed.") from exc
        self._record(options, result.info.duration, time.perf_counter() - started, stream=False)
        return result

    def _record(
        self, options: TranscribeOptions, duration: float, elapsed: float, stream: bool
    ) -> None:
        model = self.config.primary_name
        m.AUDIO_SECONDS.inc(duration, tags={"model": model, "task": options.task})
        m.TRANSCRIPTIONS.inc(
            tags={"model": model, "task": options.task, "stream": str(stream).lower()}
        )
        if duration > 0:
            m.REAL_TIME_FACTOR.observe(elapsed / duration, tags={"model": model})

    async def stream_events(
        self, engine: SttEngine, audio: np.ndarray, options: TranscribeOptions
    ) -> AsyncIterator[bytes]:
        """SSE bytes; the first engine item is awaited before the response starts, so a
        failure to start is still an HTTP error."""
        started = time.perf_counter()
        events = engine.stream(audio, options)
        try:
            first = await anext(events)
        except APIError:
            raise
        except Exception as exc:
            logger.exception("transcription failed to start")
            raise EngineError("The transcription failed.") from exc
        assert isinstance(first, TranscriptionInfo)
        info = first

        async def body() -> AsyncIterator[bytes]:
            parts: list[str] = []
            try:
                async for item in events:
                    if not isinstance(item, Segment):
                        continue
                    delta = item.text if parts else item.text.lstrip()
                    if not delta:
                        continue
                    parts.append(delta)
                    yield sse_event(TranscriptTextDelta(delta=delta))
                yield sse_event(TranscriptTextDone(text="".join(parts).strip()))
                self._record(options, info.duration, time.perf_counter() - started, stream=True)
            except Exception:
                logger.exception("streamed transcription failed")
                yield sse_error("The transcription failed.", code="engine_error")
            finally:
                await events.aclose()

        return body()

    async def handle(self, request: Request, task: Task) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in FORM_TYPES:
            raise UnsupportedMediaError(
                "Send the audio as multipart/form-data with a 'file' field "
                f"(got content-type '{ctype or 'none'}')."
            )
        async with request.form(max_files=1, max_fields=64) as form:
            self.check_model(_field(form, "model"), request)
            params = self.parse_params(form, task)
            upload = form.get("file")
            if upload is None:
                raise _invalid(
                    "Missing required parameter: 'file'.", "file", "missing_required_parameter"
                )
            if not isinstance(upload, UploadFile):
                raise _invalid("'file' must be a file upload (multipart/form-data).", "file")
            data = await upload.read()
        engine = await self.ensure_loaded()
        language = self.check_language(engine, params.language)
        audio = await self.decode(engine, data)
        options = TranscribeOptions(
            task=task,
            language=language,
            prompt=params.prompt,
            temperature=params.temperature,
            word_timestamps="word" in params.granularities,
        )
        if params.stream:
            return StreamingResponse(
                await self.stream_events(engine, audio, options),
                media_type=SSE_MEDIA_TYPE,
                headers=SSE_HEADERS,
            )
        result = await self.transcribe(engine, audio, options)
        fmt = params.response_format
        if fmt == "json":
            return JSONResponse(formats.to_json(result).model_dump())
        if fmt == "verbose_json":
            verbose = formats.to_verbose(
                result,
                task,
                segments="segment" in params.granularities,
                words="word" in params.granularities,
            )
            return JSONResponse(verbose.model_dump(exclude_none=True))
        if fmt == "srt":
            return PlainTextResponse(formats.to_srt(result.segments))
        if fmt == "vtt":
            return PlainTextResponse(formats.to_vtt(result.segments))
        return PlainTextResponse(formats.to_text(result))

    # ---- routes -------------------------------------------------------------------------------
    def routers(self) -> list[APIRouter]:
        router = APIRouter()
        form_body = {
            "requestBody": {
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file", "model"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "model": {"type": "string"},
                                "language": {"type": "string"},
                                "prompt": {"type": "string"},
                                "temperature": {"type": "number"},
                                "response_format": {
                                    "type": "string",
                                    "enum": list(formats.RESPONSE_FORMATS),
                                },
                                "timestamp_granularities[]": {
                                    "type": "array",
                                    "items": {"type": "string", "enum": list(GRANULARITIES)},
                                },
                                "stream": {"type": "boolean"},
                            },
                        }
                    }
                },
                "required": True,
            }
        }

        @router.post("/v1/audio/transcriptions", openapi_extra=form_body)
        async def transcriptions(request: Request) -> Response:
            return await self.handle(request, "transcribe")

        @router.post("/v1/audio/translations", openapi_extra=form_body)
        async def translations(request: Request) -> Response:
            return await self.handle(request, "translate")

        return [router]

    # ---- KServe V2 ------------------------------------------------------------------------------
    def v2_metadata(self, name: str) -> ModelMetadata:
        return ModelMetadata(
            name=name,
            versions=[self.config.revision] if self.config.revision else [],
            platform=f"stt/{self.config.backend}",
            inputs=[TensorMetadata(name="audio", datatype="BYTES", shape=[-1])],
            outputs=[TensorMetadata(name="text", datatype="BYTES", shape=[-1])],
            parameters={
                "audio": "the bytes of an audio file (wav, mp3, flac, ogg, webm, m4a), base64",
                "language": "ISO-639-1 code (request parameter; default: detect)",
                "task": "transcribe|translate (request parameter)",
                "prompt": "text (request parameter)",
                "temperature": "0..1 (request parameter)",
            },
        )

    async def v2_infer(self, name: str, request: InferRequest) -> InferResponse:
        params = request.parameters or {}
        files = bytes_as_binary(find_input(request, "audio"))  # type: ignore[arg-type]
        if not files:
            raise _invalid("input 'audio' is empty", "audio")
        if len(files) > MAX_V2_INPUTS:
            raise _invalid(f"input 'audio' holds more than {MAX_V2_INPUTS} files", "audio")
        task = params.get("task", "transcribe")
        if task not in ("transcribe", "translate"):
            raise _invalid("parameter 'task' must be transcribe or translate", "task")
        language = params.get("language")
        if language is not None and not isinstance(language, str):
            raise _invalid("parameter 'language' must be a string", "language")
        prompt = params.get("prompt")
        if prompt is not None and (
            not isinstance(prompt, str) or len(prompt) > self.config.max_prompt_chars
        ):
            raise _invalid("parameter 'prompt' must be a short string", "prompt")
        temperature = _float(params.get("temperature", 0.0), "temperature", 0, 1)
        engine = await self.ensure_loaded()
        language = self.check_language(engine, (language or "").strip().lower() or None)
        texts: list[str] = []
        languages: list[str] = []
        durations: list[float] = []
        for data in files:
            audio = await self.decode(engine, data)
            options = TranscribeOptions(
                task=task, language=language, prompt=prompt, temperature=temperature
            )
            result = await self.transcribe(engine, audio, options)
            texts.append(result.text)
            languages.append(result.info.language)
            durations.append(round(result.info.duration, 3))
        return InferResponse(
            model_name=name,
            outputs=[text_tensor("text", texts)],
            parameters={"language": languages, "duration": durations},
        )


# The Serve deployment (the class above stays importable and testable without Serve).
SttDeployment = serve.deployment(
    name="SttServer",
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=32,
    health_check_period_s=10,
    health_check_timeout_s=30,
)(serve.ingress()(SttServer))
