#!/usr/bin/env bash
# README command (2): installs every dependency (Debian's packages, and torch from PyPI into the
# project's venv), builds dcpkv (release preset) and runs the whole test suite, then the sanitizer
# jobs (scripts/sanitizers.sh: the suite under ASan + UBSan, the
# concurrency tests under TSan, every fuzzer for 30 s). .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_deps.sh
# torch 2.15 from PyPI in the project's venv: the tests of torch's TCPStore and of torchrun.
PYTHON="$(bash scripts/setup_python.sh)"
PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
cmake --preset release -DDCPKV_TORCH_PYTHON="$PYTHON"
cmake --build --preset release -j "$(nproc)"
ctest --preset release
bash scripts/sanitizers.sh
