/* libFuzzer target: the cache entry reader on bytes it did not write. Any input must give
 * MCL_OK or MCL_ERR_CORRUPT (or out of memory), never a read outside the bytes. The bytes are
 * copied to a 64-byte-aligned buffer, as a mapped file would be, and read twice: as they are,
 * and with their checksums made to match, so that mutations reach the checks behind them. */
#include "pipeline/pipeline.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decode(const void *bytes, size_t size)
{
    mcl_cache_entry_info info;
    mcl_msa_features *features = NULL;
    mcl_status status = cache_entry_decode(bytes, size, NULL, 1, &info, &features);
    if (status == MCL_OK) {
        mcl_msa_arrays a;
        mcl_msa_features_arrays(features, &a);
        volatile float sum = 0; /* every array is read whole: a bad size shows up here */
        for (size_t i = 0; i < a.depth * a.length; i++) sum += (float)a.tokens[i];
        for (size_t r = 0; r < a.depth; r++) /* through the sparse rows, as the loader reads them */
            for (uint64_t k = a.deletion_row_start[r]; k < a.deletion_row_start[r + 1]; k++)
                sum += (float)a.deletion_counts[k] * (float)(a.tokens[r * a.length + a.deletion_columns[k]] + 1);
        for (size_t i = 0; i < a.length * MCL_MSA_CLASSES; i++) sum += a.profile[i];
        for (size_t i = 0; i < a.length; i++) sum += a.deletion_mean[i];
        mcl_msa_features_release(features);
    } else if (status != MCL_ERR_CORRUPT && status != MCL_ERR_OUT_OF_MEMORY) {
        abort(); /* the reader promises nothing else */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    void *bytes = aligned_alloc(64, (size + 63) / 64 * 64 + 64);
    if (!bytes) return 0;
    memcpy(bytes, data, size);
    decode(bytes, size);
    cache_entry_reseal(bytes, size);
    decode(bytes, size);
    free(bytes);
    return 0;
}
