"""llm_serve."""
