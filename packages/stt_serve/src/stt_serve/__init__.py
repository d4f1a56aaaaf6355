"""Speech-to-text service: OpenAI /v1/audio/transcriptions and /v1/audio/translations, and
KServe V2, on faster-whisper (CTranslate2)."""
