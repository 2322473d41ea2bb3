#!/usr/bin/env bash
# CI's sanitizer jobs, each a configure + build + test of one CMake preset (CMakePresets.json):
#   asan  the whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan  the concurrency tests under ThreadSanitizer (async save, gloo process groups, gRPC
#         replication, multi-rank checkpoints; the "tsan" test preset's filter says which). It
#         leaves out ReplicaStreamTest.ARecordLargerThanOneRequestReplicatesInPieces: building,
#         encoding and validating its 6 MiB manifest (hundreds of thousands of shards) took over
#         two minutes under TSan; the other ReplicaStream tests run the same calls and threads.
#   fuzz  every libFuzzer target of tests/fuzz for FUZZ_SECONDS (default 30) on its seed corpus
# Usage: scripts/sanitizers.sh [asan] [tsan] [fuzz]   (no argument: all three, in that order)
#
# Needs the packages of scripts/install_deps.sh (clang and libclang-rt-14-dev for fuzz). Every
# job runs even if an earlier one failed; the exit status is 1 if any failed. Each builds into
# its own build/<preset>/, so a rerun only rebuilds what changed.
#
# Budget, measured on 2 cores from empty build directories (build, then test):
#   asan  6.3 min + 3.3 min   (all 458 tests)
#   tsan  2.1 min + 2.3 min   (115 tests; the build preset builds only their 5 binaries)
#   fuzz  2.6 min + 1.6 min   (6 fuzzers x 30 s, 2 at a time)
# about 18 minutes in all; FUZZ_SECONDS scales the last figure.
set -uo pipefail
cd "$(dirname "$0")/.."

JOBS="$(nproc)"
export DCPKV_FUZZ_SECONDS="${FUZZ_SECONDS:-${DCPKV_FUZZ_SECONDS:-30}}"

jobs=("$@")
if [ ${#jobs[@]} -eq 0 ]; then jobs=(asan tsan fuzz); fi

summary=()
failed=0
for preset in "${jobs[@]}"; do
  case "$preset" in
    asan | tsan | fuzz) ;;
    *) echo "sanitizers: unknown job '$preset' (asan, tsan or fuzz)" >&2; exit 2 ;;
  esac
  echo "=== sanitizers: $preset"
  start=$SECONDS
  status=ok
  if ! cmake --preset "$preset" >/dev/null || ! cmake --build --preset "$preset" -j "$JOBS"; then
    status="BUILD FAILED"
  fi
  built=$SECONDS
  if [ "$status" = ok ] && ! ctest --preset "$preset"; then status="TESTS FAILED"; fi
  if [ "$status" != ok ]; then failed=1; fi
  summary+=("$(printf '%-5s build %4d s  test %4d s  %s' "$preset" $((built - start)) \
    $((SECONDS - built)) "$status")")
done

echo "=== sanitizers: summary"
printf '%s\n' "${summary[@]}"
exit $failed
