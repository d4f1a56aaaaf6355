"""TTS metrics (beside the shared request metrics)."""

from serve_common import metrics

CHARACTERS = metrics.Counter("tts_characters_total", "Input characters synthesized", ("model",))
AUDIO_SECONDS = metrics.Counter(
    "tts_audio_seconds_total", "Seconds of audio generated", ("model", "voice_kind")
)
TIME_TO_FIRST_AUDIO_MS = metrics.Histogram(
    "tts_time_to_first_audio_ms",
    "From request to the first audio chunk (ms)",
    metrics.LATENCY_BOUNDARIES_MS,
    ("model",),
)
REAL_TIME_FACTOR = metrics.Histogram(
    "tts_real_time_factor",
    "Synthesis time / audio duration per request (lower is faster)",
    [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0],
    ("model",),
)
CLONED_VOICES = metrics.Gauge("tts_cloned_voices", "Cloned voices stored", ("model",))
