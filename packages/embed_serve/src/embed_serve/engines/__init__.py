"""Embedding backends, one module each; heavy libraries are imported only inside them."""
