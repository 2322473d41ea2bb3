#!/usr/bin/env bash
# README command (2): installs every dependency, builds dcpkv (release preset) and runs the whole
# test suite, then the sanitizer jobs (scripts/sanitizers.sh: the suite under ASan + UBSan, the
# concurrency tests under TSan, every fuzzer for 30 s). .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_deps.sh
cmake --preset release
cmake --build --preset release -j "$(nproc)"
ctest --preset release
bash scripts/sanitizers.sh
