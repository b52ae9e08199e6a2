#!/usr/bin/env bash
# Before and after in one call on a lent GPU machine: builds this tree and a baseline tree, then
# benches each workload with the baseline's build and this one's, one after the other, and writes
# every table and JSON under $OUT (default ./out). The baseline is a commit's tree unpacked here
# before the call and carried with it:
#   rm -rf build-baseline-src && mkdir build-baseline-src && git archive REV | tar -x -C build-baseline-src
#   bash tools/device-compare.sh evoattn fused layernorm -- --impl megacl --dtype f32,bf16
# Uses the device kit as tools/device-run.sh does.
set -uo pipefail
# shellcheck source=tools/device-kit.sh
source "$(dirname "$0")/device-kit.sh"
workloads=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do workloads+=("$1"); shift; done
[ $# -gt 0 ] && shift
build() { cmake -S "$1" -B "$1/build-gpu" -DCMAKE_BUILD_TYPE=Release -DMEGACL_TESTS=OFF && cmake --build "$1/build-gpu" -j16; }
build . >"$out/build-new.log" 2>&1 &
build build-baseline-src >"$out/build-baseline.log" 2>&1 &
wait
status=0
for w in "${workloads[@]}"; do
  for side in baseline new; do
    root=.
    [ "$side" = baseline ] && root=build-baseline-src
    MEGACL_DEVICE=nvidia "$root/build-gpu/tools/megacl" bench "$w" "$@" --json "$out/$w-$side.json" \
      >"$out/$w-$side.txt" 2>&1 || status=1
    echo "== $w ($side)"; cat "$out/$w-$side.txt"
  done
done
exit $status
