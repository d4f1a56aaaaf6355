"""One module per TTS backend; each imports its library inside."""
