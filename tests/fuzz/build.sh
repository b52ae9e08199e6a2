#!/usr/bin/env bash
# Builds the libFuzzer targets of the feature pipeline's readers (clang, ASan + UBSan) into $1:
# fuzz_a3m, fuzz_stockholm, fuzz_cache_entry. Only the reader sources go in, no OpenCL.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out"
cc=$(command -v clang-14 || command -v clang)
sources=(lib/pipeline/text.c lib/pipeline/alignment.c lib/pipeline/a3m.c lib/pipeline/stockholm.c
         lib/pipeline/msa_features.c lib/pipeline/cache_entry.c lib/runtime/error.c)
for target in a3m stockholm cache_entry; do
  "$cc" -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -D_POSIX_C_SOURCE=200809L -DCL_TARGET_OPENCL_VERSION=120 -Iinclude -Ilib \
    "tests/fuzz/fuzz_$target.c" "${sources[@]}" -lzstd -lm -o "$out/fuzz_$target"
done
