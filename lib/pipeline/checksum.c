/* The entries' payload checksum: XXH3-64, through AVX2 where the CPU has it. XXH3 gives the same
 * value whatever vector code computes it, so entries stay readable everywhere; only the speed
 * differs. The header-only build is SSE2 on x86-64, and hashing the payload was the largest
 * user-space cost of a warm read: AVX2 halves it (about 10 to 5 us for a 115 KiB entry here). */
#include "pipeline.h"

#define XXH_INLINE_ALL /* header-only: no link dependency */
#include <xxhash.h>

#if MCL_CHECKSUM_AVX2
uint64_t entry_checksum_avx2(const void *bytes, size_t size); /* checksum_avx2.c */
#endif

uint64_t entry_checksum(const void *bytes, size_t size)
{
#if MCL_CHECKSUM_AVX2
    if (__builtin_cpu_supports("avx2")) return entry_checksum_avx2(bytes, size);
#endif
    return XXH3_64bits(bytes, size);
}
