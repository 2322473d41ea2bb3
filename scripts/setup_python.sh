#!/usr/bin/env bash
# Creates (or updates) the project's Python environment: a venv at ${DCPKV_VENV:-build/venv} with
# torch 2.15, numpy and pytest from PyPI. Idempotent: packages already at the wanted versions are
# left alone, and pip's cache makes a second install quick. Prints the venv's python path last.
# torch's PyPI wheel carries its CUDA libraries (about 6 GiB installed) and runs on CPU without a
# GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${DCPKV_VENV:-build/venv}"
PYTHON="${PYTHON:-python3}"
REQUIREMENTS=(torch==2.15.0 numpy pytest)

if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import torch, numpy, pytest; assert torch.__version__.startswith("2.15.")' \
    2>/dev/null; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet "${REQUIREMENTS[@]}"
fi
"$VENV/bin/python" -c 'import torch; print("setup_python: torch", torch.__version__)' >&2
echo "$VENV/bin/python"
