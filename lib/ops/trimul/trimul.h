/* The trimul family: the triangle multiplicative update's elementwise kernels around its GEMMs
 * (gates, layout changes, the output gate; cl/trimul/trimul.cl). */
#ifndef MCL_OPS_TRIMUL_H
#define MCL_OPS_TRIMUL_H

#include "runtime/family.h"

/* wg: work-items per group of the elementwise kernels (one work-item per element). */
typedef struct tm_params {
    int wg;
} tm_params;

extern const mcl_family mcl_family_trimul;

#endif
