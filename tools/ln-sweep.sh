#!/usr/bin/env bash
# A manual sweep of LayerNorm parameters at the AF3 pair shape (until `megacl tune` exists).
set -uo pipefail
for p in TPR=32,VEC=4,WG=128 TPR=16,VEC=4,WG=128 TPR=8,VEC=4,WG=128 TPR=8,VEC=4,WG=256 TPR=4,VEC=8,WG=128 \
         TPR=16,VEC=8,WG=256 TPR=8,VEC=8,WG=256 TPR=32,VEC=4,WG=256,GROUPS_PER_CU=8 TPR=16,VEC=4,WG=256,GROUPS_PER_CU=8 \
         TPR=8,VEC=4,WG=256,GROUPS_PER_CU=16 TPR=32,VEC=2,WG=128 TPR=16,VEC=8,WG=128,GROUPS_PER_CU=8; do
  echo "== $p"
  "$@" --params "$p" --impl megacl | tail -n +3
done
