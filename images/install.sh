#!/bin/sh
# Installs the platform into a virtualenv from the workspace, exactly as uv.lock pins it.
# images/Dockerfile runs this; tests/test_images.py runs it too (offline, from uv's cache).
#
# Settings (environment; lists are comma-separated, no spaces), normally computed from a fleet
# by `aiserve image-packages FLEET ARCH --format build-args`:
#   SRC                 workspace root (pyproject.toml, uv.lock, packages/, apps/)   [/src]
#   VENV                virtualenv to create                                          [/opt/venv]
#   PYTHON              Python for the venv (uv finds or downloads it)                [3.11]
#   PACKAGES            workspace packages whose locked dependencies to install     [ingress]
#   EXTRAS              optional-dependency names (the arch's: cpu, cuda, ...)
#   PRUNE               locked packages to leave out with their exclusive dependencies
#   TORCH_INDEX         PyTorch wheel index for this accelerator (rocm, xpu)
#   TORCH_PACKAGES      what to take from it, pinned to the lock's versions (torch==X)
#   VLLM_VERSION        build this vLLM version from source (no wheel for the arch)
#   VLLM_TARGET_DEVICE  vLLM's build target (rocm)
#   GPU_TARGETS         gfx targets to compile for (gfx1151,gfx1030)
set -eu

SRC="${SRC:-/src}"
VENV="${VENV:-/opt/venv}"
PYTHON="${PYTHON:-3.11}"
PACKAGES="${PACKAGES:-ingress}"
EXTRAS="${EXTRAS:-}"
PRUNE="${PRUNE:-}"
TORCH_INDEX="${TORCH_INDEX:-}"
TORCH_PACKAGES="${TORCH_PACKAGES:-}"
VLLM_VERSION="${VLLM_VERSION:-}"
VLLM_TARGET_DEVICE="${VLLM_TARGET_DEVICE:-}"
GPU_TARGETS="${GPU_TARGETS:-}"

words() { echo "$1" | tr ',' ' '; }

cd "$SRC"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

select=""
for p in $(words "$PACKAGES"); do select="$select --package $p"; done
for e in $(words "$EXTRAS"); do select="$select --extra $e"; done
prune=""
for p in $(words "$PRUNE"); do prune="$prune --prune $p"; done

echo "== locked dependencies of: $PACKAGES${EXTRAS:+ [$EXTRAS]}${PRUNE:+ (pruned: $PRUNE)}"
# shellcheck disable=SC2086
uv export --frozen --no-dev --no-emit-workspace --format requirements.txt \
    $select $prune -o "$work/requirements.txt" --quiet

uv venv "$VENV" --python "$PYTHON" --quiet

if [ -n "$TORCH_PACKAGES" ]; then
    echo "== $(words "$TORCH_PACKAGES") from $TORCH_INDEX"
    # shellcheck disable=SC2046
    uv pip install --python "$VENV" --index-url "$TORCH_INDEX" $(words "$TORCH_PACKAGES")
fi

# Exactly the exported closure, hash-checked; nothing resolved here.
uv pip install --python "$VENV" --no-deps --require-hashes -r "$work/requirements.txt"

# Every member's code, without dependencies: any node can import any app builder.
members=""
for d in packages/*/ apps/*/; do
    [ -f "$d/pyproject.toml" ] && members="$members $d"
done
# shellcheck disable=SC2086
uv pip install --python "$VENV" --no-deps $members

if [ -n "$VLLM_VERSION" ]; then
    echo "== vLLM $VLLM_VERSION from source for $VLLM_TARGET_DEVICE ($GPU_TARGETS)"
    # Its dependencies are pinned to the lock's versions where the lock has them.
    uv export --frozen --no-dev --no-emit-workspace --no-hashes --package llm-serve \
        --extra cuda --no-emit-package vllm --quiet -o "$work/constraints.txt"
    uv pip install --python "$VENV" -c "$work/constraints.txt" \
        "cmake>=3.26" ninja "setuptools>=77" "setuptools-scm>=8" wheel packaging jinja2
    VLLM_TARGET_DEVICE="$VLLM_TARGET_DEVICE" PYTORCH_ROCM_ARCH="$(echo "$GPU_TARGETS" | tr ',' ';')" \
        uv pip install --python "$VENV" --no-build-isolation -c "$work/constraints.txt" \
        "vllm==$VLLM_VERSION"
fi

"$VENV/bin/python" -c "import ray, ray.serve, ingress.cli, ingress.gateway; print('ray', ray.__version__)"
