"""FlagEmbedding backend (`FlagModel`): BGE's own pooling (CLS by default) and normalization."""

from __future__ import annotations

from typing import Any

import numpy as np

from embed_serve.engine import EmbeddingEngine
from embed_serve.engines._torch import pad_batch, run_sorted
from serve_common.device import apply_memory_fraction, resolve_torch_device, supports_fp16
from serve_common.model_paths import resolve_model_path


class FlagEmbeddingEngine(EmbeddingEngine):
    flag: Any

    async def load(self) -> None:
        await self.run_blocking(self._load)

    def _load(self) -> None:
        from FlagEmbedding import FlagModel

        self.device = resolve_torch_device(self.config.device)
        apply_memory_fraction(self.device, self.config.gpu_memory_fraction)
        fp16 = self.config.fp16 if self.config.fp16 is not None else supports_fp16(self.device)
        self.flag = FlagModel(
            resolve_model_path(self.config.model),
            pooling_method=self.config.pooling,
            normalize_embeddings=False,  # run_sorted normalizes once, as configured
            use_fp16=fp16,
            devices=self.device,
        )
        self.flag.model.to(self.device)
        if self.device == "cpu":
            self.flag.model.float()
        self.flag.model.eval()
        self.set_tokenizer(self.flag.tokenizer)
        self.dimensions = int(self.flag.model.config.hidden_size)
        model_max = int(getattr(self.flag.model.config, "max_position_embeddings", 512))
        self.max_tokens = int(self.config.max_input_tokens or min(512, model_max))

    def _forward(self, batch: list[list[int]]) -> Any:
        features = pad_batch(self.tokenizer, batch, self.device)
        hidden = self.flag.model(**features, return_dict=True).last_hidden_state
        return self.flag.pooling(hidden, features["attention_mask"])

    def embed_ids(self, batch: list[list[int]]) -> np.ndarray:
        return run_sorted(
            batch, self.config.encode_batch_size, self._forward, normalize=self.config.normalize
        )

    async def close(self) -> None:
        self.flag = None
        await super().close()
