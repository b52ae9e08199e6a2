#!/usr/bin/env bash
# Builds the libFuzzer targets of the feature pipeline's readers (clang, ASan + UBSan) into $1:
# fuzz_a3m, fuzz_stockholm, fuzz_cache_entry. Only the reader sources go in, no OpenCL.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out"
cc=$(command -v clang-14 || command -v clang)
sources=(lib/pipeline/text.c lib/pipeline/alignment.c lib/pipeline/a3m.c lib/pipeline/stockholm.c
         lib/pipeline/msa_features.c lib/pipeline/cache_entry.c lib/pipeline/checksum.c lib/runtime/error.c)
build() { # target, source, defines...
  local target=$1 source=$2
  shift 2
  "$cc" -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -D_POSIX_C_SOURCE=200809L -DCL_TARGET_OPENCL_VERSION=120 -DMCL_EXPERIMENTAL "$@" -Iinclude -Ilib \
    "tests/fuzz/$source" "${sources[@]}" -lzstd -lm -o "$out/fuzz_$target"
}
build a3m fuzz_alignment.c -DFUZZ_PARSER=msa_parse_a3m -DFUZZ_FILE='"fuzz.a3m"'
build stockholm fuzz_alignment.c -DFUZZ_PARSER=msa_parse_stockholm -DFUZZ_FILE='"fuzz.sto"'
build cache_entry fuzz_cache_entry.c
