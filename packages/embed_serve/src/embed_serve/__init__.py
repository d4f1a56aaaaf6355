"""embed_serve."""
