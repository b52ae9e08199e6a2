/* The trimul family: the triangle multiplicative update's elementwise kernels around its GEMMs
 * (gates, layout changes, the output gate; cl/trimul/trimul.cl). */
#ifndef MCL_OPS_TRIMUL_H
#define MCL_OPS_TRIMUL_H

#include "runtime/family.h"

/* wg: work-items per group of the elementwise kernels (one work-item per element). chunk: the
 * channels of the triangle core (projections, gates, k-sum and their backward) taken at a time,
 * which bounds its workspace at chunk x N^2 elements a tensor. */
typedef struct tm_params {
    int wg, chunk;
} tm_params;

extern const mcl_family mcl_family_trimul;

#endif
