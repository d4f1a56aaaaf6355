"""Audio decoding shared by the speech services (STT uploads, TTS reference clips).

`decode_audio(data)` turns the bytes of any container FFmpeg knows (wav, mp3, flac, ogg/opus,
webm, m4a/aac, ...) into float32 mono samples at the requested rate, via PyAV (which bundles
FFmpeg; no system ffmpeg needed). Everything a client can get wrong becomes a 4xx:

- empty data, bytes that are no media container, a container with no audio stream, or audio
  that yields no decodable samples -> `InvalidRequestError` (400, param "file",
  code "invalid_audio");
- audio longer than `max_seconds` -> `PayloadTooLargeError` (413, param "file",
  code "audio_too_long"). Decoding stops as soon as the limit is passed, so a small file that
  expands to hours of audio costs no more than the limit.

Decoding reads from memory only, so it cannot block on I/O; its work is bounded by the size of
the data (and by `max_seconds`). It is CPU work: call it off the event loop
(`engine.run_blocking(decode_audio, data, ...)`). PyAV is imported inside the functions so that
importing `serve_common` does not need it (the `av` package is a dependency of the packages
that decode audio).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from serve_common.errors import InvalidRequestError, PayloadTooLargeError

#: decoding gives up after this many consecutive undecodable packets/frames.
MAX_CONSECUTIVE_ERRORS = 32


def _invalid(message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param="file", code="invalid_audio")


def audio_too_long(max_seconds: float) -> PayloadTooLargeError:
    """The error raised for audio over a duration limit (413, code "audio_too_long")."""
    return PayloadTooLargeError(
        f"The audio is longer than the limit of {max_seconds:g} seconds.",
        param="file",
        code="audio_too_long",
    )


def decode_audio(
    data: bytes,
    *,
    sample_rate: int = 16000,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Decode an audio file held in memory to a float32 mono array at `sample_rate` Hz.

    Raises `InvalidRequestError` (400) for empty, non-audio or undecodable data and
    `PayloadTooLargeError` (413, code "audio_too_long") when the audio is longer than
    `max_seconds`.
    """
    import av  # heavy-ish import kept out of `import serve_common`

    if sample_rate <= 0:
        raise ValueError("sample_rate must be positive")
    if not data:
        raise _invalid("The audio file is empty.")
    max_samples = None if max_seconds is None else int(max_seconds * sample_rate)

    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise _invalid(
            "The file is not a supported audio format "
            "(expected wav, mp3, flac, ogg/opus, webm, m4a, ...)."
        ) from exc

    chunks: list[np.ndarray] = []
    total = 0
    try:
        if not container.streams.audio:
            raise _invalid("The file contains no audio stream.")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)

        def take(frames: list[Any]) -> None:
            nonlocal total
            for out in frames:
                arr = out.to_ndarray().reshape(-1)
                if arr.size == 0:
                    continue
                chunks.append(arr.astype(np.float32, copy=False))
                total += arr.size
                if max_samples is not None and total > max_samples:
                    raise audio_too_long(max_seconds)  # type: ignore[arg-type]

        errors = 0
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except (av.FFmpegError, ValueError) as exc:
                errors += 1
                if errors > MAX_CONSECUTIVE_ERRORS:
                    raise _invalid("The audio stream could not be decoded.") from exc
                continue
            for frame in frames:
                try:
                    take(resampler.resample(frame))
                except (av.FFmpegError, ValueError) as exc:
                    errors += 1
                    if errors > MAX_CONSECUTIVE_ERRORS:
                        raise _invalid("The audio stream could not be decoded.") from exc
                    continue
                errors = 0
        with contextlib.suppress(av.FFmpegError, ValueError):
            take(resampler.resample(None))  # flush
    except (InvalidRequestError, PayloadTooLargeError):
        raise
    except (av.FFmpegError, ValueError, OSError, IndexError) as exc:
        raise _invalid("The audio stream could not be decoded.") from exc
    finally:
        container.close()

    if total == 0:
        raise _invalid("The file holds no decodable audio.")
    audio = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    return np.ascontiguousarray(audio, dtype=np.float32)


def audio_duration_s(samples: np.ndarray, sample_rate: int = 16000) -> float:
    """Duration in seconds of decoded mono samples."""
    return float(samples.shape[0]) / float(sample_rate)
