#!/usr/bin/env bash
# README command (1): installs every dependency, builds dcpkv and runs the main job.
# Until the demo training loop exists this is the store round trip: a two-rank checkpoint
# written into an embedded store, committed, reopened read-only, verified and listed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_deps.sh
cmake --preset release
cmake --build --preset release -j "$(nproc)"
root="${1:-$(mktemp -d /tmp/dcpkv-demo-XXXXXX)}"
./build/release/tools/dcpkv_store_roundtrip "$root"
