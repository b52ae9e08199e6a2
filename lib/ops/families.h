/* The registry of kernel families and their tunable parameters (data, BLIS-style). Parameter
 * indices below match each family's declaration order. */
#ifndef MCL_OPS_FAMILIES_H
#define MCL_OPS_FAMILIES_H

#include "../runtime/params.h"

/* layernorm: VARIANT 0 = reference (a work-item per row), 1 = tiled */
enum { LN_VARIANT, LN_TPR, LN_VEC, LN_WG, LN_GROUPS_PER_CU, LN_REDUCE_SPLIT };
enum { LN_VARIANT_REFERENCE = 0, LN_VARIANT_TILED = 1 };
#define LN_MAX_COLUMNS 32 /* columns one work-item holds in registers */

extern const mcl_family mcl_family_layernorm;

extern const mcl_family *const mcl_families[];
extern const size_t mcl_family_count;

const mcl_family *mcl_family_find(const char *name);

#endif
