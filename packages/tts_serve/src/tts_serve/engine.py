"""`TTSEngine`: text in, float32 mono audio chunks out. One subclass per backend in `engines/`.

The engine knows its voices (built-in ones from the model, cloned ones from the `VoiceStore`),
its languages and its native sample rate. `stream()` synthesizes the pieces of a request one
after another on the engine's worker thread and yields audio as soon as the library produces
it; a producer task keeps generating while the consumer encodes and sends, and is cancelled if
the client goes away. Backends whose model keeps per-generation state (XTTS) set
`exclusive_generation`, so two requests never interleave inside one sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from abc import abstractmethod
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from serve_common.engine import Engine
from serve_common.errors import InvalidRequestError
from serve_common.protocol.audio import Voice
from tts_serve.config import TTSConfig
from tts_serve.text import voice_slug
from tts_serve.voices import StoredVoice, VoiceStore, default_voices_dir

logger = logging.getLogger("tts_serve.engine")

_END = object()


@dataclass(frozen=True)
class SynthesisOptions:
    """Per-request generation settings (from the request and the runtime config)."""

    speed: float = 1.0
    stream: bool = True
    stream_chunk_size: int = 20
    temperature: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class ResolvedVoice:
    voice_id: str
    kind: Literal["builtin", "cloned"]
    key: str  # the backend's own handle: XTTS speaker name, Piper speaker id, cloned voice id


class TTSEngine(Engine):
    backend: ClassVar[str]
    supports_cloning: ClassVar[bool] = False
    exclusive_generation: ClassVar[bool] = False
    #: rate reference clips are decoded at for cloning
    clone_sample_rate: ClassVar[int] = 22050
    default_piece_chars: ClassVar[int] = 400

    def __init__(self, config: TTSConfig) -> None:
        super().__init__()
        self.config = config
        self.sample_rate = 0
        self.device = "cpu"
        self.model_path = ""
        self.store: VoiceStore | None = None
        self._builtin: dict[str, str] = {}  # voice id -> backend key
        self._builtin_names: dict[str, str] = {}  # voice id -> display name
        self._lookup: dict[str, str] = {}  # accepted spellings -> voice id
        self._gen_lock = asyncio.Lock()
        self._active_streams = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # ---- what a backend provides ----------------------------------------------------------
    @abstractmethod
    def languages(self) -> list[str]:
        """Languages the model speaks (codes clients send)."""

    @abstractmethod
    def synthesize_piece(
        self, text: str, voice: ResolvedVoice, language: str, options: SynthesisOptions
    ) -> Iterator[np.ndarray]:
        """Blocking generator: float32 mono chunks at `sample_rate` for one piece of text."""

    def normalize_language(self, language: str) -> str | None:
        """The model's code for `language` ("en-US" -> "en"), or None if not spoken."""
        wanted = language.strip().lower().replace("_", "-")
        langs = {lang.lower(): lang for lang in self.languages()}
        if wanted in langs:
            return langs[wanted]
        base = wanted.split("-")[0]
        if base in langs:
            return langs[base]
        for code, lang in langs.items():
            if code.split("-")[0] == base:
                return lang
        return None

    def max_piece_chars(self, language: str) -> int:
        return self.default_piece_chars

    def model_fingerprint(self) -> str:
        """Identifies the model for cached cloning latents (latents are per model)."""
        return hashlib.sha1(self.model_path.encode()).hexdigest()[:12]

    def compute_latents(self, samples: np.ndarray) -> dict[str, np.ndarray]:
        """Blocking: speaker latents from a reference clip at `clone_sample_rate`."""
        raise NotImplementedError

    # ---- voices ---------------------------------------------------------------------------
    def register_builtin(self, name: str, key: str) -> None:
        voice_id = voice_slug(name) or key
        self._builtin[voice_id] = key
        self._builtin_names[voice_id] = name
        for spelling in (name, name.lower(), voice_id, key):
            self._lookup.setdefault(spelling, voice_id)

    def open_store(self) -> None:
        root = self.config.voices_dir or default_voices_dir()
        self.store = VoiceStore(root, self.model_fingerprint())

    def builtin_voice_ids(self) -> list[str]:
        return list(self._builtin)

    def list_voices(self) -> list[Voice]:
        langs = self.languages()
        voices = [
            Voice(voice_id=vid, name=self._builtin_names[vid], kind="builtin", languages=langs)
            for vid in self._builtin
        ]
        if self.supports_cloning and self.store is not None:
            voices += [
                Voice(voice_id=v.voice_id, name=v.name, kind="cloned", languages=v.languages)
                for v in self.store.all()
            ]
        return voices

    def is_builtin_id(self, value: str) -> bool:
        return value in self._lookup or voice_slug(value) in self._builtin

    def resolve_voice(self, name: str, aliases: dict[str, str] | None = None) -> ResolvedVoice:
        requested = name
        name = (aliases or {}).get(name, name).strip()
        voice_id = self._lookup.get(name) or self._lookup.get(name.lower())
        if voice_id is None and voice_slug(name) in self._builtin:
            voice_id = voice_slug(name)
        if voice_id is not None:
            return ResolvedVoice(voice_id, "builtin", self._builtin[voice_id])
        if self.supports_cloning and self.store is not None:
            for candidate in (name, voice_slug(name)):
                if candidate and self.store.exists(candidate):
                    return ResolvedVoice(candidate, "cloned", candidate)
        available = [*self._builtin, *(aliases or {})]
        if self.supports_cloning and self.store is not None:
            available += [v.voice_id for v in self.store.all()]
        shown = ", ".join(available[:20]) + (", ..." if len(available) > 20 else "")
        raise InvalidRequestError(
            f"Unknown voice '{requested}'. Available voices: {shown or 'none'}.",
            param="voice",
            code="voice_not_found",
        )

    def resolve_language(self, language: str | None) -> str:
        if language is None:
            # no language given: the configured default, or the model's own (a Piper voice)
            code = self.normalize_language(self.config.default_language)
            langs = self.languages()
            if code is None and langs:
                code = langs[0]
            if code is not None:
                return code
        wanted = language if language is not None else self.config.default_language
        code = self.normalize_language(wanted) if wanted.strip() else None
        if code is None:
            raise InvalidRequestError(
                f"Unsupported language '{wanted}'. Supported: {', '.join(self.languages())}.",
                param="language",
                code="unsupported_language",
            )
        return code

    async def create_voice(self, voice_id: str, name: str, samples: np.ndarray) -> StoredVoice:
        """Clone a voice from a decoded reference clip (float32 mono at clone_sample_rate)."""
        if not self.supports_cloning or self.store is None:
            raise InvalidRequestError(
                f"The {self.backend} backend has built-in voices only; voice cloning is not "
                "supported by this model.",
                code="cloning_not_supported",
            )
        latents = await self.run_blocking(self.compute_latents, samples)
        return await self.run_blocking(
            self.store.create,
            voice_id,
            name,
            samples,
            self.clone_sample_rate,
            latents,
            self.languages(),
        )

    async def cloned_latents(self, voice_id: str) -> dict[str, np.ndarray]:
        """Latents of a cloned voice: cached, or computed from its stored reference clip."""
        assert self.store is not None
        latents = await self.run_blocking(self.store.latents, voice_id)
        if latents is not None:
            return latents
        from serve_common.audio import decode_audio

        path = self.store.reference(voice_id)
        data = await self.run_blocking(path.read_bytes)
        samples = await self.run_blocking(decode_audio, data, sample_rate=self.clone_sample_rate)
        latents = await self.run_blocking(self.compute_latents, samples)
        await self.run_blocking(self.store.save_latents, voice_id, latents)
        return latents

    async def delete_voice(self, voice_id: str) -> bool:
        if self.store is None:
            return False
        return await self.run_blocking(self.store.delete, voice_id)

    async def prepare_voice(self, voice: ResolvedVoice) -> None:
        """Make sure a voice can be used before the response starts (latents loaded)."""

    # ---- synthesis ------------------------------------------------------------------------
    async def stream(
        self,
        pieces: Sequence[str],
        voice: ResolvedVoice,
        language: str,
        options: SynthesisOptions,
    ) -> AsyncIterator[np.ndarray]:
        """Audio chunks for `pieces`, in order, as they are generated."""
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def produce() -> None:
            try:
                for piece in pieces:
                    lock = self._gen_lock if self.exclusive_generation else None
                    async with lock if lock is not None else contextlib.nullcontext():
                        gen = await self.run_blocking(
                            self.synthesize_piece, piece, voice, language, options
                        )
                        try:
                            while True:
                                chunk = await self.run_blocking(next, gen, None)
                                if chunk is None:
                                    break
                                if chunk.size:
                                    queue.put_nowait(chunk)
                        finally:
                            await self.run_blocking(gen.close)
                queue.put_nowait(_END)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                queue.put_nowait(exc)

        self._active_streams += 1
        self._idle.clear()
        task = asyncio.create_task(produce())
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._active_streams -= 1
            if self._active_streams == 0:
                self._idle.set()

    async def close(self) -> None:
        """Let streams still running on this engine (a hot reload swapped it out) finish,
        up to the request timeout, then release it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=self.config.request_timeout_s)
        await super().close()

    async def synthesize(
        self,
        pieces: Sequence[str],
        voice: ResolvedVoice,
        language: str,
        options: SynthesisOptions,
    ) -> np.ndarray:
        """The whole clip at once (KServe V2, benchmarks)."""
        chunks = [c async for c in self.stream(pieces, voice, language, options)]
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "backend": self.backend,
            "sample_rate": self.sample_rate,
            "device": self.device,
            "languages": self.languages() if self.loaded else [],
            "cloning": self.supports_cloning,
        }


def create_engine(config: TTSConfig) -> TTSEngine:
    if config.backend == "piper":
        from tts_serve.engines.piper import PiperEngine

        return PiperEngine(config)
    from tts_serve.engines.xtts import XttsEngine

    return XttsEngine(config)
