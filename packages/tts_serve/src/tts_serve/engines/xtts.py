"""coqui-tts XTTS-v2: multilingual, built-in speakers, voice cloning, streaming.

The model folder is the one XTTS-v2 ships (`model.pth`, `config.json`, `vocab.json`,
`speakers_xtts.pth`), loaded with `Xtts.load_checkpoint`. Built-in voices are the speakers in
`speakers_xtts.pth`. Cloning decodes the reference clip with PyAV (serve_common.audio) and
computes the latents with the model's own `get_gpt_cond_latents` / `get_speaker_embedding`, so
torchaudio is used only for its pure-torch resampling and mel transforms (no torchaudio or
torchcodec file I/O, no system FFmpeg). Streaming uses `Xtts.inference_stream`; with
`stream: false` each sentence is synthesized whole by `Xtts.inference`.

`model` is a local folder, `package:<module>`, or a Hugging Face repo id (e.g.
`coqui/XTTS-v2`, downloaded by huggingface_hub unless HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from serve_common.device import apply_memory_fraction, resolve_torch_device
from serve_common.model_paths import resolve_model_path
from tts_serve.engine import ResolvedVoice, SynthesisOptions, TTSEngine

logger = logging.getLogger("tts_serve.engines.xtts")

REQUIRED_FILES = ("model.pth", "config.json", "vocab.json")


def resolve_xtts_dir(spec: str, revision: str | None = None) -> Path:
    path = Path(os.path.expanduser(resolve_model_path(spec)))
    if path.is_dir():
        missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
        if missing:
            raise FileNotFoundError(f"XTTS folder {path} lacks {', '.join(missing)}")
        return path
    if path.exists() or spec.startswith((".", "/", "~")):
        raise FileNotFoundError(f"XTTS model folder not found: {spec}")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=spec, revision=revision))


class XttsEngine(TTSEngine):
    backend = "xtts"
    supports_cloning = True
    exclusive_generation = True  # the GPT keeps the prompt embedding of the current generation
    clone_sample_rate = 22050

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.model: Any = None
        self._languages: list[str] = []
        self._speakers: dict[str, tuple[Any, Any]] = {}
        self._fingerprint = ""

    async def load(self) -> None:
        await self.run_blocking(self._load)
        self.open_store()

    def _load(self) -> None:
        import torch
        from TTS.tts.configs.xtts_config import XttsConfig
        from TTS.tts.models.xtts import Xtts

        cfg = self.config
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        folder = resolve_xtts_dir(cfg.model, cfg.revision)
        self.model_path = str(folder)
        self.device = resolve_torch_device(cfg.device)
        apply_memory_fraction(self.device, cfg.gpu_memory_fraction)
        xcfg = XttsConfig()
        xcfg.load_json(str(folder / "config.json"))
        model = Xtts(xcfg)
        model.load_checkpoint(
            xcfg, checkpoint_dir=str(folder), eval=True, use_deepspeed=cfg.use_deepspeed
        )
        model.to(self.device)
        self.model = model
        self.xtts_config = xcfg
        self.sample_rate = int(xcfg.model_args.output_sample_rate)
        self._languages = list(xcfg.languages)
        if model.speaker_manager is not None:
            for name, data in model.speaker_manager.speakers.items():
                self._speakers[name] = (
                    data["gpt_cond_latent"].to(self.device),
                    data["speaker_embedding"].to(self.device),
                )
                self.register_builtin(name, name)
        digest = hashlib.sha1((folder / "config.json").read_bytes())
        digest.update(str((folder / "model.pth").stat().st_size).encode())
        self._fingerprint = digest.hexdigest()[:12]
        logger.info(
            "XTTS loaded from %s on %s: %d speakers, %d languages",
            folder,
            self.device,
            len(self._speakers),
            len(self._languages),
        )

    async def close(self) -> None:
        await super().close()  # waits for streams still running on this engine
        model, self.model = self.model, None
        self._speakers.clear()
        del model
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    def model_fingerprint(self) -> str:
        return self._fingerprint

    def languages(self) -> list[str]:
        return list(self._languages)

    def max_piece_chars(self, language: str) -> int:
        limits = getattr(self.model.tokenizer, "char_limits", {})
        return int(limits.get(language.split("-")[0], 250))

    # ---- cloning --------------------------------------------------------------------------
    def compute_latents(self, samples: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        model, xcfg = self.model, self.xtts_config
        sr = self.clone_sample_rate
        with torch.inference_mode():
            audio = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None, :]
            audio = audio[:, : sr * int(xcfg.max_ref_len)].to(self.device)
            speaker_embedding = model.get_speaker_embedding(audio, sr)
            gpt_cond_latent = model.get_gpt_cond_latents(
                audio, sr, length=int(xcfg.gpt_cond_len), chunk_length=int(xcfg.gpt_cond_chunk_len)
            )
        return {
            "gpt_cond_latent": gpt_cond_latent.float().cpu().numpy(),
            "speaker_embedding": speaker_embedding.float().cpu().numpy(),
        }

    async def prepare_voice(self, voice: ResolvedVoice) -> None:
        if voice.kind == "cloned":
            import torch

            latents = await self.cloned_latents(voice.key)
            self._speakers[f"cloned:{voice.key}"] = (
                torch.from_numpy(latents["gpt_cond_latent"]).to(self.device),
                torch.from_numpy(latents["speaker_embedding"]).to(self.device),
            )

    async def delete_voice(self, voice_id: str) -> bool:
        self._speakers.pop(f"cloned:{voice_id}", None)
        return await super().delete_voice(voice_id)

    # ---- synthesis ------------------------------------------------------------------------
    def _conditioning(self, voice: ResolvedVoice) -> tuple[Any, Any]:
        key = voice.key if voice.kind == "builtin" else f"cloned:{voice.key}"
        cond = self._speakers.get(key)
        if cond is None:
            raise RuntimeError(f"voice {voice.voice_id} is not prepared")
        return cond

    def synthesize_piece(
        self, text: str, voice: ResolvedVoice, language: str, options: SynthesisOptions
    ) -> Iterator[np.ndarray]:
        import torch

        gpt_cond_latent, speaker_embedding = self._conditioning(voice)
        kwargs: dict[str, Any] = {
            "temperature": options.temperature or self.xtts_config.temperature,
            "length_penalty": self.xtts_config.length_penalty,
            "repetition_penalty": self.xtts_config.repetition_penalty,
            "top_k": self.xtts_config.top_k,
            "top_p": self.xtts_config.top_p,
            "speed": options.speed,
            "enable_text_splitting": False,
        }
        if options.seed is not None:
            torch.manual_seed(options.seed)
        if options.stream:
            for chunk in self.model.inference_stream(
                text,
                language,
                gpt_cond_latent,
                speaker_embedding,
                stream_chunk_size=options.stream_chunk_size,
                **kwargs,
            ):
                yield chunk.detach().float().cpu().numpy().reshape(-1)
        else:
            with torch.inference_mode():
                out = self.model.inference(
                    text, language, gpt_cond_latent, speaker_embedding, **kwargs
                )
            yield np.asarray(out["wav"], dtype=np.float32).reshape(-1)
