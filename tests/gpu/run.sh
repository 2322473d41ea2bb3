#!/usr/bin/env bash
# Builds and runs dcpkv's GPU tests and staging benchmark on a machine with an NVIDIA GPU, from
# the repository root:
#
#   bash tests/gpu/run.sh            # build/gpu, -j16
#   JOBS=8 BUILD_DIR=build/x bash tests/gpu/run.sh
#
# Refuses (exit 2) where no GPU is visible: here the tests must really run, not skip. Installs
# the build dependencies (scripts/install_deps.sh) only if cmake, ninja or librocksdb-dev is
# missing. Configures a RelWithDebInfo build with CUDA and NCCL required, builds only the GPU
# test and benchmark targets, runs the "gpu" ctest label and the staging benchmark, prints a
# summary (each test's result, the staging ratio against raw cudaMemcpyAsync, target >= 0.8)
# and exits non-zero if anything failed or missed its target. Then the Python package's CUDA
# tests, where a Python with a CUDA-enabled torch is at hand (step 5b).
set -uo pipefail

cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-build/gpu}
JOBS=${JOBS:-16}
BENCH_BYTES=${BENCH_BYTES:-2147483648}
MIN_RATIO=${MIN_RATIO:-0.8}
LOG_DIR="$BUILD_DIR/gpu-run"
start=$(date +%s)

say() { echo "run.sh: $*"; }
die() { say "FAILED: $1"; exit "${2:-1}"; }

# 1. A GPU must be visible.
if ! command -v nvidia-smi > /dev/null 2>&1; then
  die "nvidia-smi not found: no NVIDIA driver on this machine; the GPU tests must run on one" 2
fi
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
if [ "${gpus:-0}" -lt 1 ]; then
  die "nvidia-smi lists no GPU; the GPU tests must run on one" 2
fi
say "$gpus GPU(s):"
nvidia-smi -L | sed 's/^/  /'

# 2. Build dependencies, only if the basics are missing.
need_deps=0
command -v cmake > /dev/null 2>&1 || need_deps=1
command -v ninja > /dev/null 2>&1 || need_deps=1
dpkg-query -W -f='${Status}' librocksdb-dev 2>/dev/null | grep -q "install ok installed" || need_deps=1
if [ "$need_deps" -eq 1 ]; then
  say "installing build dependencies (scripts/install_deps.sh)"
  bash scripts/install_deps.sh || die "scripts/install_deps.sh failed"
fi

# 3. Configure (CUDA and NCCL must be found) and build the GPU targets only.
mkdir -p "$LOG_DIR"
if ! cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DDCPKV_WITH_CUDA=ON -DDCPKV_WITH_NCCL=ON -DDCPKV_BUILD_TOOLS=OFF \
    > "$LOG_DIR/configure.log" 2>&1; then
  tail -30 "$LOG_DIR/configure.log"
  die "cmake configure failed (log: $LOG_DIR/configure.log)"
fi
if ! grep -q "DCPKV_WITH_CUDA:BOOL=ON" "$BUILD_DIR/CMakeCache.txt" ||
   grep -q "CUDA toolkit not found" "$LOG_DIR/configure.log"; then
  die "the CUDA toolkit was not found (looked under /usr/local/cuda; set CUDAToolkit_ROOT)"
fi
if ! grep -q "NCCL process group with" "$LOG_DIR/configure.log"; then
  die "NCCL was not found (nccl.h and libnccl under the CUDA toolkit or \$NCCL_ROOT)"
fi
grep "NCCL process group with" "$LOG_DIR/configure.log" | sed 's/^-- /  /'
say "building dcpkv_gpu_tests and dcpkv_gpu_bench with -j$JOBS"
if ! cmake --build "$BUILD_DIR" --target dcpkv_gpu_tests dcpkv_gpu_bench -j "$JOBS" \
    > "$LOG_DIR/build.log" 2>&1; then
  grep -E "error|FAILED" "$LOG_DIR/build.log" | head -30
  die "build failed (log: $LOG_DIR/build.log)"
fi
say "built in $(( $(date +%s) - start )) s"

# 4. The GPU tests, one at a time (they share the device).
failed=0
ctest --test-dir "$BUILD_DIR" -L gpu --output-on-failure --timeout 180 \
    > "$LOG_DIR/ctest.log" 2>&1
ctest_rc=$?
if [ "$ctest_rc" -ne 0 ]; then
  failed=1
fi

# Tests may skip only where the machine lacks what they need: any other skip means the GPU
# was not usable (e.g. a driver older than the CUDA runtime needs).
allowed="CudaTensorWithoutGpuIsAClearErrorEverywhere|CreationWithoutNcclOrGpuIsAClearError"
if [ "$gpus" -lt 2 ]; then
  allowed="$allowed|WorldOfTwoCollectivesAndResharding|CollectiveWithAnAbsentPeerTimesOutThenAborts"
fi
unexpected=$(grep -E "Test +#[0-9]+: .*\*+Skipped" "$LOG_DIR/ctest.log" | grep -vE "$allowed" || true)
if [ -n "$unexpected" ]; then
  failed=1
fi

# 5. The staging benchmark: DefaultStager vs raw cudaMemcpyAsync, same bytes, same run.
"$BUILD_DIR/tests/gpu/dcpkv_gpu_bench" --bytes="$BENCH_BYTES" --tensors=16 --reps=7 \
    --min_ratio="$MIN_RATIO" > "$LOG_DIR/bench.log" 2>&1
bench_rc=$?
if [ "$bench_rc" -ne 0 ]; then
  failed=1
fi

# 5b. The Python package's CUDA tests (pytest -m cuda), with a Python whose torch sees the GPU:
# $DCPKV_TORCH_PYTHON, else the project's venv (build/venv) if it has one. torch is not
# downloaded here (about 6 GiB; GPU machines may have no network): without such a Python the
# summary says the Python CUDA tests did not run (the C++ results above stand on their own).
py_status="not run"
PY="${DCPKV_TORCH_PYTHON:-build/venv/bin/python}"
if [ -x "$PY" ] && "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    > /dev/null 2>&1; then
  if bash scripts/python_tests.sh "$PY" -m cuda > "$LOG_DIR/python.log" 2>&1; then
    py_status="passed"
  else
    py_status="FAILED"
    failed=1
  fi
else
  py_status="NOT RUN: no Python with a CUDA torch here (set DCPKV_TORCH_PYTHON)"
fi

# 6. Summary.
echo
say "summary ($(( $(date +%s) - start )) s)"
grep -E "Test +#[0-9]+: " "$LOG_DIR/ctest.log" |
  sed -E 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: ([^ ]+) \.+ *(\*+)?([A-Za-z]+( [A-Za-z]+)?).*/  \3  \1/' |
  sed -E 's/^  Passed/  PASS   /; s/^  Skipped/  SKIP   /; s/^  (Failed|Timeout|Exception|SEGFAULT|Not Run)/  FAIL   /'
grep -E "tests passed" "$LOG_DIR/ctest.log" | sed 's/^/  /'
if [ "$ctest_rc" -ne 0 ]; then
  say "failing tests' output (full log: $LOG_DIR/ctest.log):"
  sed -n '/The following tests FAILED/,$p' "$LOG_DIR/ctest.log"
  grep -B2 -A25 -E "\*\*\*(Failed|Exception|Timeout)" "$LOG_DIR/ctest.log" | head -150
fi
if [ -n "$unexpected" ]; then
  say "tests skipped although a GPU is visible:"
  echo "$unexpected"
  first=$(echo "$unexpected" | head -1 | sed -E 's/.*Test +#[0-9]+: ([^ ]+) .*/\1/')
  say "why $first skipped:"
  "$BUILD_DIR/tests/gpu/dcpkv_gpu_tests" --gtest_filter="$first" 2>&1 | grep -A1 "Skipped" | head -3
fi
say "python CUDA tests (python/tests -m cuda): $py_status"
if [ "$py_status" = "FAILED" ]; then
  tail -40 "$LOG_DIR/python.log"
fi
echo
sed 's/^/  /' "$LOG_DIR/bench.log"
if [ "$bench_rc" -ne 0 ]; then
  say "the staging benchmark failed or missed its target (ratio >= $MIN_RATIO)"
fi
if grep -q "skipped: no GPU" "$LOG_DIR/bench.log"; then
  failed=1
  say "the benchmark saw no GPU although nvidia-smi lists one"
fi
if [ "$failed" -ne 0 ]; then
  die "see above"
fi
say "OK"
