#!/usr/bin/env bash
# Installs what megacl needs on Debian 12 when it is missing (as root, or through sudo), then
# configures and builds into build/ (or $MEGACL_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(build-essential cmake pkg-config ocl-icd-opencl-dev opencl-c-headers pocl-opencl-icd
          clinfo libclblast-dev libcriterion-dev libjson-c-dev libxxhash-dev libzstd-dev
          clang-14 libclang-rt-14-dev clang-15)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
build=${MEGACL_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ${MEGACL_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null
echo "bootstrap: built $build/tools/megacl"
