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
 * kernel (forward; dQ; dK/dV with the bias gradients) has a query tile BQ and a key tile BK:
 * one of them is the work-group's own rows (BQ for forward and dQ, BK for dK/dV), the other
 * the tile it streams. R is the rows a work-item owns and DW the widest head-dim slice it
 * holds (the head dim is split into the fewest slices of at most DW columns). DPAIR_WAVES sets
 * how many work-groups per compute unit the dK/dV kernel's split over N aims for when
 * d(pair bias) is wanted, and DKV_AHEAD how many queries ahead that kernel loads its d(pair
 * bias) partial (loads in flight hide the memory latency it is otherwise bound by). DKV_MT = 1
 * runs dK/dV as a micro-tiled kernel instead where the head dim is in EV_MT_MIN_HEAD_DIM ..
 * EV_DKV_MT_MAX_HEAD_DIM: DKV_MT_BK keys by DKV_MT_BQ queries a step, a work-item per 4 x 4
 * block of them. Below that range its dot products are too short to pay for the per-tile
 * softmax and barriers (MSA rows, D = 8, on the H100: 6.1 ms against the row kernel's 4.5).
 * FWD_MT, FWD_MT_BQ and FWD_MT_BK do the same for the forward, up to EV_FWD_MT_MAX_HEAD_DIM:
 * at D = 64 a work-item holds two 4 x 4 blocks of O and the row kernel is faster (H100, single
 * attention S = 2048: 1.15 ms against 1.05). */
enum {
    EV_VARIANT,
    EV_FWD_BQ, EV_FWD_BK, EV_FWD_R, EV_FWD_DW,
    EV_DKV_BQ, EV_DKV_BK, EV_DKV_R, EV_DKV_DW,
    EV_DQ_BQ, EV_DQ_BK, EV_DQ_R, EV_DQ_DW,
    EV_DPAIR_WAVES, EV_DKV_AHEAD, EV_DKV_MT, EV_DKV_MT_BQ, EV_DKV_MT_BK,
    EV_FWD_MT, EV_FWD_MT_BQ, EV_FWD_MT_BK,
};
#define EV_MT_MIN_HEAD_DIM 17
#define EV_DKV_MT_MAX_HEAD_DIM 64
#define EV_FWD_MT_MAX_HEAD_DIM 48
enum { EV_VARIANT_REFERENCE = 0, EV_VARIANT_TILED = 1 };

/* glu: sigmoid gating and SwiGLU. VEC elements per work-item step (shrunk to divide the
 * element count or features and every offset), WG work-items per group, GROUPS_PER_CU groups
 * per compute unit in the grid-stride loop. */
enum { GLU_VEC, GLU_WG, GLU_GROUPS_PER_CU };

/* gemm: the fused operators' GEMM. A work-group computes a BM x BN tile in steps of BK; a
 * work-item owns TM x TN outputs (float4 groups from 4 on). SPLIT_WAVES: the K range is split until the
 * grid fills this many work-groups per compute unit (partials summed in a fixed order).
 * PREFETCH: load the next step's operands while computing the current one (two local buffers,
 * one barrier a step). UNROLL: values of k within a BK step unrolled together (BK caps it). */
enum { GEMM_BM, GEMM_BN, GEMM_BK, GEMM_TM, GEMM_TN, GEMM_SPLIT_WAVES, GEMM_PREFETCH, GEMM_UNROLL };

extern const mcl_family mcl_family_layernorm;
extern const mcl_family mcl_family_evoattn;
extern const mcl_family mcl_family_glu;
extern const mcl_family mcl_family_gemm;

extern const mcl_family *const mcl_families[];
extern const size_t mcl_family_count;

const mcl_family *mcl_family_find(const char *name);

#endif
