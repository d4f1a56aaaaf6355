"""Audio encoding for `/v1/audio/speech`: mp3, opus, aac, flac, wav and pcm, chunk by chunk.

`create_encoder(fmt, input_rate, output_rate)` returns an `AudioEncoder`: feed it float32 mono
chunks as the engine produces them (`write`), send whatever bytes each call returns, and send
`close()`'s bytes last. Every format is streamable, so the first audio reaches the client as
soon as the first chunk is synthesized:

- mp3 (`libmp3lame`), aac (ADTS, FFmpeg's `aac`), opus (Ogg, `libopus`, short pages) and flac
  are muxed by PyAV (the FFmpeg it bundles; no system ffmpeg) into a write-only sink, with
  `flush_packets` so every encoded packet leaves the muxer at once. The FLAC header cannot be
  rewritten on a stream, so its STREAMINFO carries no total length (decoders read to the end).
- wav is written by hand: a 16-bit PCM header whose RIFF and data sizes are 0xFFFFFFFF while
  streaming (the length is unknown; readers take "until end of file"), exact in `encode_audio`.
- pcm is raw signed 16-bit little-endian mono.

Opus is always encoded at 48 kHz (the rate Opus decoders output); the other formats use
`output_rate` (default: the engine's own rate), resampled by FFmpeg's swresample when needed.
"""

from __future__ import annotations

import struct
from typing import Any, Literal

import numpy as np

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
FORMATS: tuple[str, ...] = ("mp3", "opus", "aac", "flac", "wav", "pcm")

MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg; codecs=opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

OPUS_RATE = 48000
# (container format, codec, sample format the codec takes)
_AV_CODECS: dict[str, tuple[str, str, str]] = {
    "mp3": ("mp3", "libmp3lame", "fltp"),
    "aac": ("adts", "aac", "fltp"),
    "opus": ("ogg", "libopus", "flt"),
    "flac": ("flac", "flac", "s16"),
}
_BITRATES = {"mp3": 64_000, "aac": 64_000, "opus": 48_000}
# LAME quality 5 ("good speed, reasonable quality"): ~2x faster than its default for speech
_CODEC_OPTIONS: dict[str, dict[str, str]] = {"mp3": {"compression_level": "5"}}
_UNKNOWN_SIZE = 0xFFFFFFFF


def output_rate_for(fmt: str, input_rate: int, output_rate: int | None) -> int:
    """The sample rate a client decodes from `fmt` (Opus: always 48 kHz)."""
    if fmt == "opus":
        return OPUS_RATE
    return int(output_rate or input_rate)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16 (clipped)."""
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).astype("<i2")


def wav_header(sample_rate: int, num_samples: int | None) -> bytes:
    """A 44-byte PCM16 mono WAV header; `num_samples=None` marks the length unknown."""
    if num_samples is None:
        riff_size = data_size = _UNKNOWN_SIZE
    else:
        data_size = num_samples * 2
        riff_size = min(36 + data_size, _UNKNOWN_SIZE)
        data_size = min(data_size, _UNKNOWN_SIZE)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )


class _Resampler:
    """Streaming float32 mono resampler (FFmpeg swresample via PyAV)."""

    def __init__(self, input_rate: int, output_rate: int) -> None:
        import av

        self.input_rate = input_rate
        self._av = av
        self._rs = av.AudioResampler(format="flt", layout="mono", rate=output_rate)

    def _frame(self, samples: np.ndarray) -> Any:
        frame = self._av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1),
            format="flt",
            layout="mono",
        )
        frame.sample_rate = self.input_rate
        return frame

    def _collect(self, frames: list[Any]) -> np.ndarray:
        parts = [f.to_ndarray().reshape(-1) for f in frames]
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def push(self, samples: np.ndarray) -> np.ndarray:
        if samples.size == 0:
            return np.zeros(0, dtype=np.float32)
        return self._collect(self._rs.resample(self._frame(samples)))

    def flush(self) -> np.ndarray:
        return self._collect(self._rs.resample(None))


class AudioEncoder:
    """Encode float32 mono chunks into one audio stream of a given format."""

    def __init__(self, fmt: str, input_rate: int, output_rate: int | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unsupported audio format {fmt!r}")
        self.format = fmt
        self.input_rate = int(input_rate)
        self.sample_rate = output_rate_for(fmt, self.input_rate, output_rate)
        self.media_type = MEDIA_TYPES[fmt]
        self.samples_in = 0
        self.samples_out = 0
        self._closed = False
        self._resampler = (
            _Resampler(self.input_rate, self.sample_rate)
            if self.sample_rate != self.input_rate
            else None
        )

    @property
    def duration_s(self) -> float:
        """Seconds of audio written so far (at the engine's rate)."""
        return self.samples_in / float(self.input_rate)

    def _resample(self, samples: np.ndarray) -> np.ndarray:
        if self._resampler is None:
            return samples
        return self._resampler.push(samples)

    def write(self, samples: np.ndarray) -> bytes:
        if self._closed:
            raise RuntimeError("encoder is closed")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.samples_in += samples.size
        out = self._resample(samples)
        self.samples_out += out.size
        return self._encode(out)

    def close(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        tail = self._resampler.flush() if self._resampler is not None else None
        data = b""
        if tail is not None and tail.size:
            self.samples_out += tail.size
            data = self._encode(tail)
        return data + self._finish()

    # subclasses
    def _encode(self, samples: np.ndarray) -> bytes:
        raise NotImplementedError

    def _finish(self) -> bytes:
        return b""


class PcmEncoder(AudioEncoder):
    def _encode(self, samples: np.ndarray) -> bytes:
        return to_int16(samples).tobytes()


class WavEncoder(AudioEncoder):
    """Streaming WAV: the header goes out first with the length marked unknown."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._header_sent = False

    def _head(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        return wav_header(self.sample_rate, None)

    def _encode(self, samples: np.ndarray) -> bytes:
        return self._head() + to_int16(samples).tobytes()

    def _finish(self) -> bytes:
        return self._head()


class _Sink:
    """A write-only file object PyAV muxes into; `take()` drains what was written."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self._buf)
        self._buf.clear()
        return data


class AvEncoder(AudioEncoder):
    """mp3 / aac / opus / flac through PyAV's encoders and muxers."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        import av

        self._av = av
        container_fmt, codec, sample_fmt = _AV_CODECS[self.format]
        self._sample_fmt = sample_fmt
        self._sink = _Sink()
        options = {"page_duration": "20000"} if container_fmt == "ogg" else {}
        self._container = av.open(
            self._sink,
            mode="w",
            format=container_fmt,
            options=options,
            container_options={"flush_packets": "1"},
            buffer_size=4096,
        )
        self._stream: Any = self._container.add_stream(
            codec, rate=self.sample_rate, layout="mono", options=_CODEC_OPTIONS.get(self.format)
        )
        if self.format in _BITRATES:
            self._stream.codec_context.bit_rate = _BITRATES[self.format]
        self._pts = 0

    def _frame(self, samples: np.ndarray) -> Any:
        if self._sample_fmt == "s16":
            frame = self._av.AudioFrame.from_ndarray(
                to_int16(samples).reshape(1, -1), format="s16", layout="mono"
            )
        else:
            frame = self._av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1),
                format=self._sample_fmt,
                layout="mono",
            )
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += samples.size
        return frame

    def _encode(self, samples: np.ndarray) -> bytes:
        if samples.size:
            for packet in self._stream.encode(self._frame(samples)):
                self._container.mux(packet)
        return self._sink.take()

    def _finish(self) -> bytes:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()


def create_encoder(fmt: str, input_rate: int, output_rate: int | None = None) -> AudioEncoder:
    """A streaming encoder for `fmt` taking float32 mono at `input_rate` Hz."""
    if fmt == "pcm":
        return PcmEncoder(fmt, input_rate, output_rate)
    if fmt == "wav":
        return WavEncoder(fmt, input_rate, output_rate)
    if fmt in _AV_CODECS:
        return AvEncoder(fmt, input_rate, output_rate)
    raise ValueError(f"unsupported audio format {fmt!r}")


def encode_audio(
    samples: np.ndarray, fmt: str, input_rate: int, output_rate: int | None = None
) -> bytes:
    """Encode a whole clip. WAV gets an exact header (not the streaming one)."""
    if fmt == "wav":
        pcm_enc = PcmEncoder("pcm", input_rate, output_rate)
        body = pcm_enc.write(samples) + pcm_enc.close()
        return wav_header(pcm_enc.sample_rate, len(body) // 2) + body
    encoder = create_encoder(fmt, input_rate, output_rate)
    return encoder.write(samples) + encoder.close()
