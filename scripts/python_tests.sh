#!/usr/bin/env bash
# Installs this checkout's dcpkv package into a Python environment (`pip install .`: the native
# library and the binding are built by scikit-build-core under build/python/, incrementally
# after the first time) and runs the Python tests (python/tests) with it. ctest's python_tests
# runs it with the project's venv; by hand:
#
#   bash scripts/python_tests.sh [PYTHON] [pytest args...]     # PYTHON: default build/venv/bin/python
#
# The tests use the dcpkv CLI of build/release unless DCPKV_CLI names another. Tests marked
# `cuda` need a GPU and are deselected unless the pytest args select them
# (tests/gpu/run.sh: `bash scripts/python_tests.sh PYTHON -m cuda`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${1:-build/venv/bin/python}"
shift || true
# numpy, torch and pytest are the venv's already (scripts/setup_python.sh).
"$PYTHON" -m pip install --quiet --no-deps .
"$PYTHON" -c 'import dcpkv; print("python_tests: dcpkv", dcpkv.__version__, "from", dcpkv.__file__)'
if [ $# -eq 0 ]; then
  set -- -m "not cuda"
fi
exec "$PYTHON" -m pytest -q -p no:cacheprovider python/tests "$@"
