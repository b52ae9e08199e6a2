/* XXH3-64 compiled for AVX2: CMake builds this file with -mavx2 on x86-64 only (and then defines
 * MCL_CHECKSUM_AVX2); checksum.c calls it only on a CPU that has AVX2. */
#include "pipeline.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

uint64_t entry_checksum_avx2(const void *bytes, size_t size);

uint64_t entry_checksum_avx2(const void *bytes, size_t size) { return XXH3_64bits(bytes, size); }
