"""The images: what each arch's image installs is derived from the fleet, resolves from the
committed uv.lock (`uv export --frozen --no-dev`) with the right engine libraries and nothing
of other arches' models, and the install script the Dockerfile runs really installs the head
(cpu) image, whose Python then imports every app builder without any engine. No Docker engine
runs here; the Dockerfile and the script are checked to agree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ingress.fleet import Fleet, load_fleet
from ingress.images import ImagePlan, exported_pins, image_plan, uv_export

ROOT = Path(__file__).resolve().parents[1]
HOMELAB = ROOT / "fleets" / "homelab.yaml"
DOCKERFILE = ROOT / "images" / "Dockerfile"
INSTALL = ROOT / "images" / "install.sh"

pytestmark = pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not on PATH")

# What a model service's image must hold to run it: its engine and what the engine imports.
ENGINE_LIBS = {
    "llm": {"vllm"},
    "stt": {"faster-whisper", "ctranslate2", "av"},
    "tts": {"coqui-tts", "torch", "av"},
    "embeddings": {"sentence-transformers", "flagembedding", "torch"},
    "reranker": {"flagembedding", "sentence-transformers", "torch"},
}
ALWAYS = {"ray", "fastapi", "pydantic", "pyyaml", "httpx"}


@pytest.fixture(scope="module")
def homelab() -> Fleet:
    return load_fleet(HOMELAB)


@pytest.fixture(scope="module")
def plans(homelab: Fleet) -> dict[str, ImagePlan]:
    return {arch: image_plan(homelab, arch, ROOT) for arch in ("cpu", "cuda", "rocm", "xpu")}


def test_install_sets_follow_the_fleet(plans: dict[str, ImagePlan]) -> None:
    assert plans["cpu"].packages == ["ingress"]  # the head: Ray, Serve, the gateway
    assert plans["cuda"].packages == ["ingress", "stt-serve", "tts-serve"]
    assert plans["rocm"].packages == ["ingress", "llm-serve", "embed-serve"]
    assert plans["xpu"].packages == ["ingress", "rerank-serve"]
    assert plans["cuda"].models == ["whisper", "tts"]
    # ROCm and XPU take torch from PyTorch's index for the accelerator, at the lock's version.
    for arch in ("rocm", "xpu"):
        plan = plans[arch]
        assert plan.prune == ["torch"]
        assert plan.torch_packages == [f"torch=={_locked('torch')}"]
        assert plan.torch_index and arch in plan.torch_index
        assert not [p for p in plan.locked if re.match(r"(torch|nvidia-|triton)", p)]
    # vLLM has no ROCm wheel for this Python: built from source for the fleet's gfx targets
    # (the 680M runs gfx1030 kernels through HSA_OVERRIDE_GFX_VERSION=10.3.0).
    assert plans["rocm"].vllm_version == _locked("vllm")
    assert plans["rocm"].gpu_targets == ["gfx1030", "gfx1151"]
    assert plans["rocm"].base_image.startswith("rocm/")
    assert plans["cuda"].vllm_version is None and plans["cuda"].prune == []


def _locked(name: str) -> str:
    import tomllib

    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == name)


@pytest.mark.parametrize("arch", ["cpu", "cuda", "rocm", "xpu"])
def test_each_arch_resolves_from_the_lock(
    homelab: Fleet, plans: dict[str, ImagePlan], arch: str
) -> None:
    """`uv export --frozen --no-dev` of the plan succeeds, hash-pinned, with every engine the
    arch's models need (ROCm/XPU: torch comes from the accelerator's index, vLLM from source)
    and no engine of a model that runs elsewhere."""
    plan = plans[arch]
    text = uv_export(ROOT, plan.export_args(), hashes=True)
    pins = exported_pins(text)
    assert text.count("--hash=sha256:") >= len(pins)
    assert set(pins) >= ALWAYS, ALWAYS - set(pins)
    assert pins["ray"] == "2.60.0"
    provided = {"torch"} if plan.torch_packages else set()
    if plan.vllm_version:
        provided.add("vllm")
    needed: set[str] = set()
    for m in homelab.models:
        if homelab.arch_of(m) == arch:
            needed |= ENGINE_LIBS[m.kind]
    missing = needed - provided - set(pins)
    assert not missing, f"{arch} image lacks {sorted(missing)} (declare them in the package)"
    elsewhere = set().union(*(ENGINE_LIBS[m.kind] for m in homelab.models)) - needed
    assert not (elsewhere - {"torch", "av"}) & set(pins), elsewhere & set(pins)
    if arch == "cpu":
        assert "torch" not in pins  # the head image stays small


@pytest.mark.parametrize("kind", sorted(ENGINE_LIBS))
def test_each_package_declares_its_engine(kind: str) -> None:
    """A package's own locked closure holds what its engine imports (an image with only that
    package must run it)."""
    from ingress.services import SERVICE_KINDS

    args = [f"--package={SERVICE_KINDS[kind].package}"]
    if kind == "llm":
        args.append("--extra=cuda")
    pins = exported_pins(uv_export(ROOT, args))
    missing = ENGINE_LIBS[kind] - set(pins)
    assert not missing, (
        f"{SERVICE_KINDS[kind].package} does not pull {sorted(missing)} from the lock: add them "
        f"to packages/{SERVICE_KINDS[kind].package.replace('-', '_')}/pyproject.toml"
    )


def test_cli_prints_build_args(homelab: Fleet) -> None:
    out = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "aiserve"),
            "image-packages",
            str(HOMELAB),
            "cuda",
            "--format",
            "build-args",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    args = dict(re.findall(r"--build-arg (\w+)=(\S*)", out.stdout))
    assert args["PACKAGES"] == "ingress,stt-serve,tts-serve"
    assert args["ARCH"] == "cuda"
    assert args["BASE_IMAGE"].startswith("nvidia/cuda:")
    assert " " not in "".join(args.values())  # safe for $(...) word splitting in the justfile


def test_dockerfile_and_install_script_agree(plans: dict[str, ImagePlan]) -> None:
    dockerfile = DOCKERFILE.read_text()
    script = INSTALL.read_text()
    declared = set(re.findall(r"^ARG (\w+)", dockerfile, re.M))
    for plan in plans.values():
        assert set(plan.build_args()) <= declared, set(plan.build_args()) - declared
    assert "ARG BASE_IMAGE" in dockerfile and "FROM ${BASE_IMAGE}" in dockerfile
    for name in ("PACKAGES", "EXTRAS", "PRUNE", "TORCH_INDEX", "TORCH_PACKAGES", "VLLM_VERSION"):
        assert f'{name}="${{{name}}}"' in dockerfile, f"Dockerfile does not pass {name}"
        assert f"${{{name}:-" in script, f"install.sh does not read {name}"
    assert "uv export --frozen --no-dev" in script
    assert "--require-hashes" in script
    ignore = (ROOT / "images" / "Dockerfile.dockerignore").read_text()
    assert "!uv.lock" in ignore and "!images/install.sh" in ignore


@pytest.mark.slow
def test_head_image_installs_and_builds_every_app(
    plans: dict[str, ImagePlan], tmp_path: Path
) -> None:
    """images/install.sh for the homelab's cpu (head) image, offline from uv's cache: the venv
    imports Ray, the gateway and every package's app builder (Serve's build task for any app
    may run on any node) without any engine installed."""
    plan = plans["cpu"]
    venv = tmp_path / "venv"
    env = {
        **os.environ,
        **{k: v for k, v in plan.build_args().items() if k != "BASE_IMAGE"},
        "SRC": str(ROOT),
        "VENV": str(venv),
        "UV_OFFLINE": "1",
        "PYTHON": "3.11",
    }
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(
        ["sh", str(INSTALL)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    code = (
        "import importlib, importlib.util, sys\n"
        "for m in ['ingress.gateway', 'ingress.cli', 'llm_serve.app', 'stt_serve.app',\n"
        "          'tts_serve.app', 'embed_serve.app', 'rerank_serve.app']:\n"
        "    importlib.import_module(m)\n"
        "engines = ['torch', 'vllm', 'faster_whisper', 'TTS', 'sentence_transformers',\n"
        "           'FlagEmbedding', 'ctranslate2']\n"
        "print(sorted(e for e in engines if importlib.util.find_spec(e)))\n"
    )
    check = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, timeout=300
    )
    assert check.returncode == 0, check.stderr[-3000:]
    assert check.stdout.strip() == "[]", f"the head image holds engines: {check.stdout}"
    render = subprocess.run(
        [str(venv / "bin" / "aiserve"), "render", str(HOMELAB)], capture_output=True, text=True
    )
    assert render.returncode == 0 and "applications:" in render.stdout, render.stderr
