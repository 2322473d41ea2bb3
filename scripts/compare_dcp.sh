#!/usr/bin/env bash
# dcpkv against torch.distributed.checkpoint (torch 2.15, FileSystemWriter with thread_count 1
# and 2; DTensor Shard(0) on gloo at world 2) on the same state, interleaved rounds, medians and
# p25-p75 (tools/bench/compare_dcp.py). Builds dcpkv_bench, installs torch into the project's venv
# (scripts/setup_python.sh), then runs world 1 and world 2.
#   bash scripts/compare_dcp.sh [--size=1GiB] [--repetitions=9] [--dir=DIR]   (WORLDS="1 2")
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_deps.sh >/dev/null
cmake --preset release >/dev/null
cmake --build --preset release --target dcpkv_bench >/dev/null
PYTHON="$(bash scripts/setup_python.sh)"
for world in ${WORLDS:-1 2}; do
  "$PYTHON" tools/bench/compare_dcp.py --bench build/release/tools/bench/dcpkv_bench \
    --world "$world" "$@"
done
