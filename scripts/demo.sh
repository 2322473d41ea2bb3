#!/usr/bin/env bash
# README command (1): installs every dependency, builds dcpkv and runs the main job: a training
# loop on 2 ranks (processes) that checkpoints into an embedded store, a restart on 3 ranks that
# loads the last checkpoint resharded and checks it; then inspects the store with the dcpkv CLI.
#
#   bash scripts/demo.sh [STORE_ROOT]     (default: a fresh directory under $TMPDIR)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_deps.sh
cmake --preset release
cmake --build --preset release -j "$(nproc)"

root="${1:-$(mktemp -d "${TMPDIR:-/tmp}/dcpkv-demo-XXXXXX")}"
./build/release/tools/dcpkv_demo --root "$root"

dcpkv=./build/release/tools/dcpkv
run() {
  echo
  echo "\$ dcpkv $*"
  "$dcpkv" "$@"
}
run ls "$root"
run show "$root" latest
run stats "$root" latest --head 4
run diff "$root" step-20 latest
run verify "$root"
run export "$root" latest --format safetensors -o "$root/latest.safetensors"
