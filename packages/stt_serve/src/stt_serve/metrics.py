"""Speech-to-text metrics (on Ray's Prometheus endpoint; no-ops outside Ray)."""

from __future__ import annotations

from serve_common.metrics import Counter, Histogram

AUDIO_SECONDS = Counter(
    "stt_audio_seconds_total", "Seconds of audio transcribed", ("model", "task")
)
TRANSCRIPTIONS = Counter(
    "stt_transcriptions_total", "Transcriptions by task and mode", ("model", "task", "stream")
)
REAL_TIME_FACTOR = Histogram(
    "stt_real_time_factor",
    "Decode time divided by audio duration (lower is faster)",
    [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0],
    ("model",),
)
DECODE_MS = Histogram(
    "stt_audio_decode_ms",
    "Time to decode the uploaded container to 16 kHz samples (ms)",
    [1, 5, 10, 25, 50, 100, 250, 500, 1000, 5000],
    ("model",),
)
