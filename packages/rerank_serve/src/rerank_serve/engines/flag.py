"""FlagEmbedding `FlagReranker`: the production backend (bge-reranker-large, -v2-m3, ...).

Scores come from `FlagReranker.compute_score` itself (its tokenization, its query/document
truncation rule and its own length-sorted forward passes), raw logits out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rerank_serve.engine import RerankEngine
from rerank_serve.engines._torch import model_token_limit


def _quiet_progress_bars() -> None:
    """FlagReranker draws two tqdm bars per call once a call holds >= batch_size pairs (it
    passes `disable=` itself, so TQDM_DISABLE does not help): a server would log them for every
    batch. Give its module bars that never draw."""
    from functools import wraps

    from FlagEmbedding.inference.reranker.encoder_only import base
    from tqdm import tqdm, trange

    @wraps(tqdm)
    def quiet_tqdm(*args: Any, **kwargs: Any) -> Any:
        return tqdm(*args, **{**kwargs, "disable": True})

    @wraps(trange)
    def quiet_trange(*args: Any, **kwargs: Any) -> Any:
        return trange(*args, **{**kwargs, "disable": True})

    if getattr(base, "tqdm", None) is tqdm:
        base.tqdm = quiet_tqdm
    if getattr(base, "trange", None) is trange:
        base.trange = quiet_trange


class FlagRerankEngine(RerankEngine):
    scoring = "cross-encoder logit (FlagEmbedding FlagReranker)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reranker: Any = None

    def load_model(self, path: str, device: str, fp16: bool) -> int:
        from FlagEmbedding import FlagReranker

        _quiet_progress_bars()
        self.reranker = FlagReranker(
            path,
            use_fp16=fp16,
            devices=device,
            trust_remote_code=self.config.trust_remote_code,
            batch_size=self.config.batch_size,
            normalize=False,
        )
        model = self.reranker.model
        if int(getattr(model.config, "num_labels", 1)) != 1:
            raise ValueError(
                f"{self.config.model} is not a 1-logit reranker "
                f"(num_labels={model.config.num_labels})"
            )
        # compute_score moves the model on its first call; do it now so the first request
        # (and the memory budget) sees the model where it will run.
        if fp16:
            model.half()
        model.to(device)
        model.eval()
        return model_token_limit(self.reranker.tokenizer, model.config)

    def score_pairs(self, pairs: Sequence[tuple[str, str]], batch_size: int) -> list[float]:
        if not pairs:
            return []
        scores = self.reranker.compute_score(
            [list(p) for p in pairs],
            batch_size=batch_size,
            max_length=self.max_length,
            query_max_length=self.query_limit(),
            normalize=False,
        )
        if isinstance(scores, float | int):
            scores = [scores]
        return [float(s) for s in scores]

    def release(self) -> None:
        if self.reranker is not None:
            self.reranker.model = None
            self.reranker = None
        super().release()
