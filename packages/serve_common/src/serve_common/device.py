"""Device choice and per-process GPU memory budgets for torch-based engines.

torch is imported inside the functions: `serve_common` itself never needs it.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("serve_common.device")


def resolve_torch_device(preference: str) -> str:
    """Map a config device (`auto`, `cpu`, `cuda`, `rocm`, `xpu`, `mps`) to a torch device.

    ROCm builds of torch expose AMD GPUs as `cuda`; Intel Arc is `xpu`.
    """
    import torch

    if preference == "cpu":
        return "cpu"
    if preference in ("cuda", "rocm"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device '{preference}' requested but torch sees no GPU")
        return "cuda"
    if preference == "xpu":
        if not (hasattr(torch, "xpu") and torch.xpu.is_available()):
            raise RuntimeError("device 'xpu' requested but torch sees no Intel GPU")
        return "xpu"
    if preference == "mps":
        return "mps"
    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return "xpu"
    return "cpu"


def supports_fp16(device: str) -> bool:
    return device in ("cuda", "xpu")


def apply_memory_fraction(device: str, fraction: float | None) -> None:
    """Cap this process's allocator at `fraction` of the card (a logical Ray GPU fraction is
    not isolation: the replica enforces its own budget)."""
    if fraction is None or device == "cpu":
        return
    import torch

    if device == "cuda":
        torch.cuda.set_per_process_memory_fraction(fraction)
    elif device == "xpu" and hasattr(torch.xpu, "set_per_process_memory_fraction"):
        torch.xpu.set_per_process_memory_fraction(fraction)
    logger.info("GPU memory budget set to %.0f%% of %s", fraction * 100, device)


def gpu_memory_used_bytes(device: str) -> int | None:
    if device == "cpu":
        return None
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.memory_allocated())
    if device == "xpu" and hasattr(torch, "xpu") and torch.xpu.is_available():
        return int(torch.xpu.memory_allocated())
    return None
