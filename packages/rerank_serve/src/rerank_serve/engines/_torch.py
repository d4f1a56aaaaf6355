"""torch helpers the backends share: device, fp16, threads, memory budget, tokenizer copy."""

from __future__ import annotations

import gc
import logging
from typing import Any

from rerank_serve.config import RerankConfig
from serve_common.device import apply_memory_fraction, resolve_torch_device, supports_fp16

logger = logging.getLogger("rerank_serve.engines")


def prepare_device(config: RerankConfig) -> tuple[str, bool]:
    """Resolve the configured device, apply the GPU budget and CPU threads; return
    (torch device, use fp16)."""
    import torch

    device = resolve_torch_device(config.device)
    apply_memory_fraction(device, config.gpu_memory_fraction)
    if config.cpu_threads is not None:
        torch.set_num_threads(config.cpu_threads)
    fp16 = supports_fp16(device) if config.use_fp16 is None else config.use_fp16
    if fp16 and not supports_fp16(device):
        logger.warning("use_fp16 ignored on %s (no fast half precision there)", device)
        fp16 = False
    return device, fp16


def model_token_limit(tokenizer: Any, model_config: Any) -> int:
    """The model's own limit: the tokenizer's model_max_length when it is real, else the
    position embeddings (minus XLM-R's padding offset)."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    positions = getattr(model_config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        pad = getattr(model_config, "pad_token_id", None)
        return positions - (pad + 1 if model_config.model_type == "xlm-roberta" and pad else 0)
    return 512


def load_tokenizer(path: str, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)


def empty_cache(device: str) -> None:
    gc.collect()
    if device == "cpu":
        return
    import torch

    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device == "xpu" and hasattr(torch, "xpu") and torch.xpu.is_available():
        torch.xpu.empty_cache()
