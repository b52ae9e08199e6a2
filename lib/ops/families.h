/* The registry of kernel families and their tunable parameters (data, BLIS-style). Parameter
 * indices below match each family's declaration order. */
#ifndef MCL_OPS_FAMILIES_H
#define MCL_OPS_FAMILIES_H

#include "../runtime/params.h"

/* layernorm: VARIANT 0 = reference (a work-item per row), 1 = tiled */
enum { LN_VARIANT, LN_TPR, LN_VEC, LN_WG, LN_GROUPS_PER_CU, LN_REDUCE_SPLIT };
enum { LN_VARIANT_REFERENCE = 0, LN_VARIANT_TILED = 1 };
#define LN_MAX_COLUMNS 32 /* columns one work-item holds in registers */

/* evoattn: VARIANT 0 = unfused reference kernels (materialised scores), 1 = tiled. Each tiled
 * kernel (forward; dK/dV; dQ with the pair-bias gradient) takes a query tile BQ, a key tile BK
 * and the rows (RQ or RK) and columns each work-item computes; DPAIR_WAVES sets how many
 * work-groups per compute unit the dQ kernel's split over N aims for when d(pair bias) is
 * wanted. */
enum {
    EV_VARIANT,
    EV_FWD_BQ, EV_FWD_BK, EV_FWD_RQ, EV_FWD_RK,
    EV_DKV_BQ, EV_DKV_BK, EV_DKV_RQ, EV_DKV_RK,
    EV_DQ_BQ, EV_DQ_BK, EV_DQ_RQ, EV_DQ_RK,
    EV_DPAIR_WAVES,
};
enum { EV_VARIANT_REFERENCE = 0, EV_VARIANT_TILED = 1 };

extern const mcl_family mcl_family_layernorm;
extern const mcl_family mcl_family_evoattn;

extern const mcl_family *const mcl_families[];
extern const size_t mcl_family_count;

const mcl_family *mcl_family_find(const char *name);

#endif
