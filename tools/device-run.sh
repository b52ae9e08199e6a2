#!/usr/bin/env bash
# Build, test and benchmark on a lent GPU machine in one go (see ../shared/device/README.md).
#   bash tools/device-run.sh [tests] [bench WORKLOAD [bench options]]... [sh 'COMMAND']...
# Uses the device kit from $MEGACL_GPUKIT (default: shared/device, else .gpukit/device); writes
# logs and JSON under $OUT (default ./out).
set -uo pipefail
# shellcheck source=tools/device-kit.sh
source "$(dirname "$0")/device-kit.sh"
export POCL_CACHE_DIR=$PWD/build-gpu/pocl-cache
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv; clinfo -l; } 2>&1 | tee "$out/device.txt"
cmake -B build-gpu -DCMAKE_BUILD_TYPE=Release >"$out/build.log" 2>&1 &&
  cmake --build build-gpu -j16 >>"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
build-gpu/tools/megacl devices | tee -a "$out/device.txt"
status=0
while [ $# -gt 0 ]; do
  case "$1" in
    tests)
      shift
      for dev in nvidia pocl; do
        MEGACL_DEVICE=$dev ctest --test-dir build-gpu --output-on-failure -j4 >"$out/tests-$dev.log" 2>&1
        rc=$?; echo "tests on $dev: exit $rc"; tail -5 "$out/tests-$dev.log"; [ $rc -eq 0 ] || status=1
      done ;;
    bench)
      workload=$2; shift 2
      opts=()
      while [ $# -gt 0 ] && [ "$1" != tests ] && [ "$1" != bench ] && [ "$1" != sh ]; do opts+=("$1"); shift; done
      MEGACL_DEVICE=nvidia build-gpu/tools/megacl bench "$workload" "${opts[@]}" \
        --json "$out/bench-$workload.json" 2>&1 | tee "$out/bench-$workload.txt" || status=1 ;;
    sh)
      (MEGACL_DEVICE=nvidia bash -c "$2") 2>&1 | tee -a "$out/sh.txt" || status=1
      shift 2 ;;
    *) echo "unknown step $1"; exit 2 ;;
  esac
done
exit $status
