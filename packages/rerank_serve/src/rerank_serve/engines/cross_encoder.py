"""sentence-transformers `CrossEncoder`: any 1-logit sequence-classification reranker.

`CrossEncoder.predict` with an identity activation gives raw logits; it tokenizes pairs with
`longest_first` truncation at `max_length` and runs length-sorted forward passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rerank_serve.engine import RerankEngine
from rerank_serve.engines._torch import model_token_limit


class CrossEncoderEngine(RerankEngine):
    scoring = "cross-encoder logit (sentence-transformers CrossEncoder)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model: Any = None
        self._identity: Any = None

    def load_model(self, path: str, device: str, fp16: bool) -> int:
        import torch
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(
            path,
            device=device,
            trust_remote_code=self.config.trust_remote_code,
            revision=self.config.revision,
            local_files_only=True,
        )
        if self.model.num_labels != 1:
            raise ValueError(
                f"{self.config.model} is not a 1-logit reranker "
                f"(num_labels={self.model.num_labels})"
            )
        if fp16:
            self.model.half()
        self.model.eval()
        self._identity = torch.nn.Identity()
        hf = self.model[0].auto_model if hasattr(self.model, "__getitem__") else None
        config = getattr(hf, "config", None) or getattr(self.model, "config", None)
        return model_token_limit(self.model.tokenizer, config)

    def apply_lengths(self) -> None:
        self.model.max_seq_length = self.max_length

    def score_pairs(self, pairs: Sequence[tuple[str, str]], batch_size: int) -> list[float]:
        if not pairs:
            return []
        scores = self.model.predict(
            [list(p) for p in pairs],
            batch_size=batch_size,
            activation_fn=self._identity,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [float(s) for s in scores.reshape(-1)]

    def release(self) -> None:
        self.model = None
        super().release()
