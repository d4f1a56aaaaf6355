"""Test support: a tiny random XTTS-v2 folder, an audio decoder and a reference-clip maker.

`build_tiny_xtts` builds a tiny random XTTS-v2 model folder locally from `XttsConfig` (no hub).

Same files as the real XTTS-v2 (`model.pth`, `config.json`, `vocab.json`, `speakers_xtts.pth`),
loaded by the real `Xtts.load_checkpoint`: a 1-layer, 32-wide GPT with the perceiver resampler
(as v2), the full-size HiFiGAN decoder and speaker encoder (their sizes are fixed in coqui), a
character-level vocabulary with XTTS's special and language tokens, and two built-in speakers
whose latents come from the model itself. `max_audio_tokens` caps generation: a random GPT
rarely samples the stop token, so each call yields about `max_audio_tokens * 1024 / 22050`
seconds of noise. Use it to test loading, voices, cloning, streaming and formats, not speech.
"""

from __future__ import annotations

import io
import json
import string
from pathlib import Path

import numpy as np

TINY_SPEAKERS = ("Ana Florence", "Claribel Dervla")
_EXTRA_CHARS = "áàâäãåçéèêëíìîïñóòôöõúùûüýÿßœæøąćęłńśźżčďěňřšťůžğış"


def build_tiny_xtts(path: str | Path, *, max_audio_tokens: int = 24, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig, XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    languages = XttsConfig().languages
    specials = ["[STOP]", "[UNK]", "[SPACE]", "[START]"] + [f"[{lang}]" for lang in languages]
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(specials)}
    for ch in string.ascii_lowercase + string.digits + ".,!?'-:;\"()" + _EXTRA_CHARS:
        vocab.setdefault(ch, len(vocab))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]"))
    tokenizer.add_special_tokens(specials)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(out / "vocab.json"))

    args = XttsArgs(
        gpt_layers=1,
        gpt_n_model_channels=32,
        gpt_n_heads=2,
        gpt_max_audio_tokens=max_audio_tokens,
        gpt_max_text_tokens=402,
        gpt_max_prompt_tokens=70,
        gpt_use_perceiver_resampler=True,
        gpt_num_audio_tokens=1026,
        gpt_start_audio_token=1024,
        gpt_stop_audio_token=1025,
        decoder_input_dim=32,
        d_vector_dim=512,
    )
    config = XttsConfig(
        model_args=args,
        audio=XttsAudioConfig(),
        gpt_cond_len=6,
        gpt_cond_chunk_len=6,
        max_ref_len=10,
    )
    torch.manual_seed(seed)
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(str(out / "vocab.json"))
    model.init_models()
    model.eval()
    torch.save({"model": model.state_dict()}, out / "model.pth")
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))

    speakers = {}
    with torch.inference_mode():
        for i, name in enumerate(TINY_SPEAKERS):
            gen = torch.Generator().manual_seed(seed + i)
            audio = torch.randn(1, 22050 * 2, generator=gen) * 0.1
            speakers[name] = {
                "gpt_cond_latent": model.get_gpt_cond_latents(
                    audio, 22050, length=6, chunk_length=6
                ).cpu(),
                "speaker_embedding": model.get_speaker_embedding(audio, 22050).cpu(),
            }
    torch.save(speakers, out / "speakers_xtts.pth")
    return out


def decode_any(data: bytes) -> tuple[np.ndarray, int]:
    """Decode any mono audio container with PyAV: (float32 samples, the stream's rate)."""
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate)
        parts = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
    if not parts:
        return np.zeros(0, dtype=np.float32), rate
    return np.concatenate(parts).astype(np.float32), rate


def tone_wav(seconds: float, rate: int = 22050, freq: float = 220.0) -> bytes:
    """A voiced-like reference clip (harmonics with a slow vibrato) as 16-bit WAV bytes."""
    from tts_serve.encode import encode_audio

    t = np.arange(int(seconds * rate)) / rate
    f = freq * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f) / rate
    sig = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2
    return encode_audio(np.asarray(sig, dtype=np.float32), "wav", rate)
