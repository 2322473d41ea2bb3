#!/usr/bin/env bash
# Installs every build and test dependency of dcpkv from Debian's packages.
# Idempotent: packages already present are left alone; safe to run repeatedly.
# CUDA + NCCL are optional and are taken from /usr/local/cuda when present.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  librocksdb-dev
  libflatbuffers-dev flatbuffers-compiler
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libgloo-dev
  libgtest-dev libgmock-dev googletest
  libbenchmark-dev
  libxxhash-dev libzstd-dev
  libcli11-dev libfmt-dev libspdlog-dev nlohmann-json3-dev
  libssl-dev openssl
  python3 python3-numpy python3-venv python3-dev
  clang-format
  clang libclang-rt-14-dev
  iproute2 nftables                     # the multi-host tests: network namespaces, packet loss
  gdb                                   # ... and the stacks of a rank that hangs in them
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
