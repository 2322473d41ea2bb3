#!/usr/bin/env bash
# README command (1): installs every dependency, builds dcpkv and runs the main job: a training
# loop on 2 ranks (processes) that checkpoints into an embedded store, a restart on 3 ranks that
# loads the last checkpoint resharded and checks it, and a listing of the store.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_deps.sh
cmake --preset release
cmake --build --preset release -j "$(nproc)"
./build/release/tools/dcpkv_demo "$@"
