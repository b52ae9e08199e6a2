#!/usr/bin/env bash
# The README's second command and what CI runs: install what is missing, build, run the whole
# suite, run it again built with AddressSanitizer + UndefinedBehaviorSanitizer, run the feature
# pipeline's threads under ThreadSanitizer and its file readers under libFuzzer for a bounded
# time, and check that an installed megacl builds a consumer through both pkg-config and
# find_package. While another package manager holds its lock, bootstrap.sh waits for it
# (MEGACL_APT_WAIT seconds) rather than failing.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
bash tools/bootstrap.sh

echo "== tests"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== tests under AddressSanitizer + UndefinedBehaviorSanitizer"
MEGACL_BUILD_DIR=build-asan \
  MEGACL_CMAKE_ARGS="-DMEGACL_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEGACL_TEST_POCL_CACHE=$PWD/build/pocl-cache" \
  bash tools/bootstrap.sh
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan --output-on-failure -j "$jobs"

echo "== the feature pipeline's threads under ThreadSanitizer"
# a plain program (Criterion's arena cannot run under TSan), built with the library alone
cmake -S . -B build-tsan -DMEGACL_TSAN=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-tsan -j "$jobs" --target pipeline_threads >/dev/null
POCL_CACHE_DIR=$PWD/build/pocl-cache TSAN_OPTIONS=halt_on_error=1 build-tsan/tests/pipeline_threads

echo "== libFuzzer: the alignment parsers and the cache entry reader, 20 s each"
bash tests/fuzz/build.sh build-fuzz
for target in a3m stockholm cache_entry; do
  corpus=$(mktemp -d) log=$(mktemp)
  # new inputs go to a scratch corpus; the seeds in tests/fuzz/corpus stay as committed
  if ! build-fuzz/fuzz_$target -max_total_time=20 -print_final_stats=1 -artifact_prefix=build-fuzz/ \
      "$corpus" "tests/fuzz/corpus/$target" >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz_$target found a failure: the input is under build-fuzz/"
    exit 1
  fi
  echo "fuzz_$target: $(grep -o 'number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$') executions, no failure"
  rm -rf "$corpus" "$log"
done

echo "== install and consume"
prefix=$(mktemp -d /tmp/megacl-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install build --prefix "$prefix" >/dev/null
cmake -S tests/consumer -B "$prefix/consumer" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/consumer" >/dev/null
MEGACL_DEVICE=pocl "$prefix/consumer/example"
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" cc -std=c11 -Wall -Werror tests/consumer/example.c \
  $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs megacl) -o "$prefix/example-pc"
MEGACL_DEVICE=pocl LD_LIBRARY_PATH="$prefix/lib" "$prefix/example-pc"
echo "check: all passed"
