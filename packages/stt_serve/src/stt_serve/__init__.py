"""stt_serve."""
