/* libFuzzer target: the Stockholm parser and the features of what it accepts. Any input must give
 * MCL_OK or a status with a message, never a crash, a leak or undefined behaviour. */
#include "pipeline/pipeline.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    msa_alignment alignment;
    if (msa_parse_stockholm((const char *)data, size, "fuzz.sto", &alignment) != MCL_OK) return 0;
    const char *name = "fuzz.sto";
    mcl_msa_features *features = NULL;
    if (msa_features_compute(&alignment, &name, 1, &features) == MCL_OK) mcl_msa_features_release(features);
    msa_alignment_free(&alignment);
    return 0;
}
