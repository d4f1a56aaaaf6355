"""Fast checks without a model: sentence splitting, voice names, every encoder, the voice store."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf

from tts_serve.encode import FORMATS, create_encoder, encode_audio, output_rate_for
from tts_serve.testing import decode_any, tone_wav
from tts_serve.text import clean_voice_name, is_voice_id, split_sentences, voice_slug
from tts_serve.voices import VoiceStore

RATE = 22050


def tone(seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_split_sentences_keeps_order_and_limit() -> None:
    text = "Hello there. This is Mr. Smith speaking, how are you? Fine!  Thanks\n\nbye."
    pieces = split_sentences(text, 250)
    assert pieces[0] == "Hello there."
    assert "Mr. Smith" in pieces[1]  # a short fragment is joined to what follows
    assert " ".join(pieces).replace("  ", " ").startswith("Hello there. This is Mr. Smith")
    long = ("one two three four five six seven, " * 30).strip()
    pieces = split_sentences(long, 60)
    assert all(0 < len(p) <= 60 for p in pieces)
    assert " ".join(pieces).split() == long.split()
    assert split_sentences("   \n\t ", 100) == []
    # CJK full stops need no space after them
    assert split_sentences("\u4f60\u597d\u3002\u6211\u5f88\u597d\uff01", 100)
    assert all(len(p) <= 20 for p in split_sentences("x" * 95, 20))


def test_voice_names_are_sanitized() -> None:
    assert voice_slug("Ana Florence") == "ana-florence"
    assert voice_slug("Zoë's voice #2") == "zoe-s-voice-2"
    assert voice_slug("../../etc/passwd") == "etc-passwd"
    assert voice_slug("!!!") == ""
    assert len(voice_slug("a" * 200)) == 48
    assert clean_voice_name("  My\x00 Voice\n ") == "My Voice"
    assert is_voice_id("my-voice") and not is_voice_id("My Voice") and not is_voice_id("")


@pytest.mark.parametrize("fmt", FORMATS)
def test_streaming_encoders_decode_to_declared_rate_and_duration(fmt: str) -> None:
    audio = tone(1.5)
    encoder = create_encoder(fmt, RATE, 24000)
    assert encoder.sample_rate == output_rate_for(fmt, RATE, 24000)
    parts = [encoder.write(chunk) for chunk in np.array_split(audio, 7)]
    parts.append(encoder.close())
    assert encoder.duration_s == pytest.approx(1.5, abs=1e-3)
    data = b"".join(parts)
    if fmt != "pcm":
        # bytes leave the encoder while audio comes in (streaming), not only at close
        assert sum(1 for p in parts[:-1] if p) >= 3, [len(p) for p in parts]
    if fmt == "pcm":
        samples, rate = np.frombuffer(data, "<i2").astype(np.float32) / 32767, 24000
    else:
        samples, rate = decode_any(data)
    assert rate == encoder.sample_rate
    # mp3/aac add encoder delay and frame padding; the rest are sample-exact (after resampling)
    tolerance = 0.1 if fmt in ("mp3", "aac") else 0.01
    assert samples.shape[0] / rate == pytest.approx(1.5, abs=tolerance)
    assert float(np.abs(samples).max()) > 0.1


def test_wav_stream_header_and_whole_clip() -> None:
    audio = tone(0.5)
    enc = create_encoder("wav", RATE)  # keep the native rate
    data = enc.write(audio) + enc.close()
    assert data[:4] == b"RIFF" and data[40:44] == b"\xff\xff\xff\xff"  # length unknown
    samples, rate = sf.read(io.BytesIO(data))
    assert rate == RATE and len(samples) == len(audio)
    whole = encode_audio(audio, "wav", RATE)
    assert int.from_bytes(whole[40:44], "little") == 2 * len(audio)
    samples, rate = sf.read(io.BytesIO(whole))
    assert rate == RATE and len(samples) == len(audio)
    assert encode_audio(np.zeros(0, np.float32), "mp3", RATE) is not None  # empty is valid


def test_voice_store_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = VoiceStore(tmp_path, "fp1")
    ref = tone(2.0)
    latents = {"a": np.ones((1, 4), np.float32), "b": np.zeros(3, np.float32)}
    voice = store.create("my-voice", "My Voice", ref, RATE, latents, ["en"])
    assert voice.duration_s == pytest.approx(2.0)
    with pytest.raises(FileExistsError):
        store.create("my-voice", "again", ref, RATE, None, ["en"])
    # a fresh store (a restarted replica) finds the voice and its cached latents
    again = VoiceStore(tmp_path, "fp1")
    assert [v.voice_id for v in again.all()] == ["my-voice"]
    got = again.latents("my-voice")
    assert got is not None and np.array_equal(got["a"], latents["a"])
    assert json.loads((tmp_path / "my-voice" / "voice.json").read_text())["name"] == "My Voice"
    samples, rate = sf.read(tmp_path / "my-voice" / "reference.wav")
    assert rate == RATE and len(samples) == len(ref)
    # another model: latents must be computed again
    assert VoiceStore(tmp_path, "fp2").latents("my-voice") is None
    assert again.get("../x") is None and not again.exists("..")
    assert store.delete("my-voice") and not store.delete("my-voice")
    assert again.latents("my-voice") is None and again.all() == []


def test_tone_wav_is_decodable() -> None:
    samples, rate = decode_any(tone_wav(1.0))
    assert rate == RATE and samples.shape[0] == RATE
