"""One module per speech-to-text backend (heavy imports stay inside them)."""
