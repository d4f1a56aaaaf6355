"""What the two torch backends share: padding token ids and running a forward pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def pad_batch(tokenizer: Any, batch: list[list[int]], device: str) -> dict[str, torch.Tensor]:
    features = tokenizer.pad({"input_ids": batch}, padding=True, return_tensors="pt")
    return {k: v.to(device) for k, v in features.items()}


def run_sorted(
    batch: list[list[int]],
    chunk: int,
    forward: Callable[[list[list[int]]], torch.Tensor],
    normalize: bool,
) -> np.ndarray:
    """Forward in length-sorted chunks (little padding), then restore the caller's order."""
    order = sorted(range(len(batch)), key=lambda i: len(batch[i]))
    out: list[np.ndarray] = [np.empty(0)] * len(batch)
    with torch.inference_mode():
        for start in range(0, len(order), chunk):
            idx = order[start : start + chunk]
            emb = forward([batch[i] for i in idx]).float()
            if normalize:
                emb = torch.nn.functional.normalize(emb, p=2, dim=-1)
            rows = emb.cpu().numpy().astype(np.float32)
            for j, i in enumerate(idx):
                out[i] = rows[j]
    return np.stack(out) if out else np.zeros((0, 0), dtype=np.float32)
