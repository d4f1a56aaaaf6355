"""tts_serve."""
