"""sentence-transformers backend: the model folder's own modules (pooling, Normalize) apply."""

from __future__ import annotations

from typing import Any

import numpy as np

from embed_serve.engine import EmbeddingEngine
from embed_serve.engines._torch import pad_batch, run_sorted
from serve_common.device import apply_memory_fraction, resolve_torch_device, supports_fp16
from serve_common.model_paths import resolve_model_path


class SentenceTransformerEngine(EmbeddingEngine):
    model: Any

    async def load(self) -> None:
        await self.run_blocking(self._load)

    def _load(self) -> None:
        from sentence_transformers import SentenceTransformer

        self.device = resolve_torch_device(self.config.device)
        apply_memory_fraction(self.device, self.config.gpu_memory_fraction)
        self.model = SentenceTransformer(
            resolve_model_path(self.config.model),
            device=self.device,
            revision=self.config.revision,
        )
        fp16 = self.config.fp16 if self.config.fp16 is not None else supports_fp16(self.device)
        if fp16:
            self.model.half()
        self.model.eval()
        self.set_tokenizer(self.model.tokenizer)
        self.dimensions = int(self.model.get_sentence_embedding_dimension())
        self.max_tokens = int(self.config.max_input_tokens or self.model.max_seq_length)
        # Does the model end with a Normalize module? Then don't normalize twice.
        self._normalized = any(type(m).__name__ == "Normalize" for m in self.model)

    def _forward(self, batch: list[list[int]]) -> Any:
        features = pad_batch(self.tokenizer, batch, self.device)
        return self.model.forward(features)["sentence_embedding"]

    def embed_ids(self, batch: list[list[int]]) -> np.ndarray:
        return run_sorted(
            batch,
            self.config.encode_batch_size,
            self._forward,
            normalize=self.config.normalize and not self._normalized,
        )

    async def close(self) -> None:
        self.model = None
        await super().close()
