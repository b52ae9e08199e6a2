#!/usr/bin/env bash
# A manual sweep of a workload's tuning parameters (until `megacl tune` exists): for each
# parameter set, fwd and fwd+bwd medians and each kernel's median device time.
#   bash tools/sweep.sh WORKLOAD SHAPE DTYPE 'P1' 'P2' ...     (P: NAME=V,...; '' = defaults)
set -uo pipefail
workload=$1 shape=$2 dtype=$3
shift 3
megacl=${MEGACL:-build-gpu/tools/megacl}
log=$(mktemp)
for p in "$@"; do
  echo "== ${p:-defaults}"
  MEGACL_LOG=debug "$megacl" bench "$workload" --impl megacl --shape "$shape" --dtype "$dtype" \
    --reps 7 --warmup 2 --params "$p" >"$log" 2>&1
  grep -v 'debug:' "$log" | tail -n +3
  grep 'profile:' "$log" | awk '{ print $4, $5 }' | sort -k1,1 -k2,2g |
    awk '{ v[$1] = v[$1] " " $2; n[$1]++ }
         END { for (k in v) { split(substr(v[k], 2), a, " "); printf "  %-24s median %s ms of %d\n", k, a[int((n[k] + 1) / 2)], n[k] } }'
done
rm -f "$log"
