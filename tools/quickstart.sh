#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run the main job, megacl demo,
# on the default device (MEGACL_DEVICE, else the first GPU, else the CPU through PoCL). While
# another package manager holds its lock, bootstrap.sh waits for it (MEGACL_APT_WAIT seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/bootstrap.sh
export POCL_CACHE_DIR=${POCL_CACHE_DIR:-$PWD/build/pocl-cache}
build/tools/megacl devices
echo
build/tools/megacl demo --json build/demo.json
echo "figures also in build/demo.json"
