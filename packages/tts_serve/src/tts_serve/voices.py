"""Cloned voices on disk: one folder per voice under the configured `voices_dir`.

    <voices_dir>/<voice_id>/voice.json          name, created_at, duration, languages
    <voices_dir>/<voice_id>/reference.wav       the decoded reference clip (16-bit mono)
    <voices_dir>/<voice_id>/latents-<fp>.npz    speaker latents for the model with fingerprint fp

The reference clip is kept so latents can be computed again for another model (another
fingerprint) without asking for the upload again. Folders are written to a temporary name and
renamed, so a reader (another replica sharing the folder) never sees half a voice. Every lookup
checks the folder still exists, so a voice deleted by one replica disappears from the others.
This module has no torch: latents are numpy arrays.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tts_serve.encode import encode_audio
from tts_serve.text import is_voice_id

logger = logging.getLogger("tts_serve.voices")

_savez: Any = np.savez  # numpy's stub mistypes **arrays
META = "voice.json"
REFERENCE = "reference.wav"


def default_voices_dir() -> Path:
    env = os.environ.get("TTS_SERVE_VOICES_DIR")
    if env:
        return Path(env)
    return Path.home() / ".local" / "share" / "tts_serve" / "voices"


@dataclass
class StoredVoice:
    voice_id: str
    name: str
    created_at: int
    duration_s: float
    sample_rate: int
    languages: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "voice_id": self.voice_id,
            "name": self.name,
            "created_at": self.created_at,
            "duration_s": self.duration_s,
            "sample_rate": self.sample_rate,
            "languages": self.languages,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoredVoice:
        return cls(
            voice_id=str(data["voice_id"]),
            name=str(data["name"]),
            created_at=int(data.get("created_at", 0)),
            duration_s=float(data.get("duration_s", 0.0)),
            sample_rate=int(data.get("sample_rate", 0)),
            languages=[str(x) for x in data.get("languages", [])],
        )


class VoiceStore:
    """Cloned voices of one service: a folder on disk plus an in-memory latent cache."""

    def __init__(self, root: str | Path, fingerprint: str) -> None:
        self.root = Path(root).expanduser()
        self.fingerprint = fingerprint
        self.root.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, dict[str, np.ndarray]] = {}
        self._lock = threading.Lock()

    def _dir(self, voice_id: str) -> Path:
        if not is_voice_id(voice_id):
            raise KeyError(voice_id)
        return self.root / voice_id

    def _latents_path(self, voice_id: str) -> Path:
        return self._dir(voice_id) / f"latents-{self.fingerprint}.npz"

    def all(self) -> list[StoredVoice]:
        voices: list[StoredVoice] = []
        for meta in sorted(self.root.glob(f"*/{META}")):
            if meta.parent.name.startswith("."):
                continue  # being written or deleted
            try:
                voices.append(StoredVoice.from_json(json.loads(meta.read_text())))
            except (OSError, ValueError, KeyError):
                logger.warning("skipping unreadable voice folder %s", meta.parent)
        return voices

    def count(self) -> int:
        return sum(1 for m in self.root.glob(f"*/{META}") if not m.parent.name.startswith("."))

    def get(self, voice_id: str) -> StoredVoice | None:
        try:
            meta = self._dir(voice_id) / META
        except KeyError:
            return None
        try:
            return StoredVoice.from_json(json.loads(meta.read_text()))
        except FileNotFoundError:
            with self._lock:
                self._cache.pop(voice_id, None)
            return None
        except (OSError, ValueError, KeyError):
            logger.warning("unreadable voice %s", voice_id)
            return None

    def exists(self, voice_id: str) -> bool:
        try:
            return (self._dir(voice_id) / META).is_file()
        except KeyError:
            return False

    def reference(self, voice_id: str) -> Path:
        return self._dir(voice_id) / REFERENCE

    def latents(self, voice_id: str) -> dict[str, np.ndarray] | None:
        """Cached latents for this model, from memory or disk; None if not computed yet."""
        if not self.exists(voice_id):
            with self._lock:
                self._cache.pop(voice_id, None)
            return None
        with self._lock:
            cached = self._cache.get(voice_id)
        if cached is not None:
            return cached
        path = self._latents_path(voice_id)
        if not path.is_file():
            return None
        with np.load(path) as data:
            latents = {k: np.array(data[k]) for k in data.files}
        with self._lock:
            self._cache[voice_id] = latents
        return latents

    def save_latents(self, voice_id: str, latents: dict[str, np.ndarray]) -> None:
        path = self._latents_path(voice_id)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp.npz")
        _savez(tmp, **latents)
        os.replace(tmp, path)
        with self._lock:
            self._cache[voice_id] = latents

    def create(
        self,
        voice_id: str,
        name: str,
        reference: np.ndarray,
        sample_rate: int,
        latents: dict[str, np.ndarray] | None,
        languages: list[str],
    ) -> StoredVoice:
        """Write a new voice atomically. Raises FileExistsError if the id is taken."""
        final = self._dir(voice_id)
        if final.exists():
            raise FileExistsError(voice_id)
        voice = StoredVoice(
            voice_id=voice_id,
            name=name,
            created_at=int(time.time()),
            duration_s=round(reference.shape[0] / float(sample_rate), 3),
            sample_rate=sample_rate,
            languages=languages,
        )
        tmp = self.root / f".tmp-{voice_id}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            (tmp / REFERENCE).write_bytes(encode_audio(reference, "wav", sample_rate))
            if latents is not None:
                _savez(tmp / f"latents-{self.fingerprint}.npz", **latents)
            (tmp / META).write_text(json.dumps(voice.to_json(), indent=2))
            try:
                tmp.rename(final)
            except OSError as exc:
                if final.exists():
                    raise FileExistsError(voice_id) from exc
                raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        if latents is not None:
            with self._lock:
                self._cache[voice_id] = latents
        return voice

    def delete(self, voice_id: str) -> bool:
        try:
            folder = self._dir(voice_id)
        except KeyError:
            return False
        with self._lock:
            self._cache.pop(voice_id, None)
        if not (folder / META).is_file():
            return False
        # Rename first so other readers stop seeing it at once, then remove.
        trash = self.root / f".deleted-{voice_id}-{uuid.uuid4().hex}"
        try:
            folder.rename(trash)
        except FileNotFoundError:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True
