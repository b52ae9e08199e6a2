/* libFuzzer target: an alignment parser and the features of what it accepts; build.sh builds it
 * once per format, FUZZ_PARSER naming the parser (msa_parse_a3m, msa_parse_stockholm) and
 * FUZZ_FILE the name messages give the input. Any input must give MCL_OK or a status with a
 * message, never a crash, a leak or undefined behaviour. */
#include "pipeline/pipeline.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    msa_alignment alignment;
    const char *name = FUZZ_FILE;
    if (FUZZ_PARSER((const char *)data, size, name, &alignment) != MCL_OK) return 0;
    mcl_msa_features *features = NULL;
    if (msa_features_compute(&alignment, &name, 1, &features) == MCL_OK) mcl_msa_features_release(features);
    msa_alignment_free(&alignment);
    return 0;
}
