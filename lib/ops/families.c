/* Kernel families: parameters, legal values, portable defaults, legality and shape buckets.
 * The defaults are correct on every device; tuned values come from the tuning databases. */
#include "families.h"

#include <stdio.h>
#include <string.h>

#define LEGAL(...) (const int[]){__VA_ARGS__}, sizeof((const int[]){__VA_ARGS__}) / sizeof(int)

/* The number of a family's parameters; their values travel in arrays of MCL_MAX_PARAMS. */
#define PARAM_COUNT(params) (sizeof params / sizeof params[0])
#define FITS_PARAM_ARRAYS(params) \
    _Static_assert(PARAM_COUNT(params) <= MCL_MAX_PARAMS, #params " needs a larger MCL_MAX_PARAMS")

/* ---- layernorm -------------------------------------------------------------------------- */

static const mcl_param_decl layernorm_params[] = {
    [LN_VARIANT] = {"VARIANT", LN_VARIANT_TILED, LEGAL(LN_VARIANT_REFERENCE, LN_VARIANT_TILED)},
    [LN_TPR] = {"TPR", 32, LEGAL(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)},
    [LN_VEC] = {"VEC", 4, LEGAL(1, 2, 4, 8)},
    [LN_WG] = {"WG", 128, LEGAL(32, 64, 128, 256, 512, 1024)},
    [LN_GROUPS_PER_CU] = {"GROUPS_PER_CU", 4, LEGAL(1, 2, 4, 8, 16, 32)},
    [LN_REDUCE_SPLIT] = {"REDUCE_SPLIT", 8, LEGAL(1, 2, 4, 8, 16, 32)},
};

static const char *layernorm_check(const int *v, const mcl_device_info *device)
{
    if (v[LN_TPR] > v[LN_WG]) return "TPR exceeds WG";
    if ((size_t)v[LN_WG] > device->max_work_group_size) return "WG exceeds the device's work-group size";
    if ((size_t)32 * v[LN_REDUCE_SPLIT] > device->max_work_group_size)
        return "32 x REDUCE_SPLIT exceeds the device's work-group size";
    if ((uint64_t)v[LN_WG] * 2 * sizeof(float) > device->local_mem_bytes)
        return "WG needs more local memory than the device has";
    return NULL;
}

static void layernorm_bucket(const size_t *shape, char *out, size_t cap)
{
    static const size_t edges[] = {32, 64, 128, 256, 512, 1024, 2048, 4096};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        if (shape[1] <= edges[i]) {
            snprintf(out, cap, "cols<=%zu", edges[i]);
            return;
        }
    }
    snprintf(out, cap, "cols>4096");
}

FITS_PARAM_ARRAYS(layernorm_params);

const mcl_family mcl_family_layernorm = {
    .name = "layernorm",
    .define_prefix = "LN_",
    .params = layernorm_params,
    .param_count = PARAM_COUNT(layernorm_params),
    .check = layernorm_check,
    .bucket = layernorm_bucket,
};

/* ---- evoattn ---------------------------------------------------------------------------- */

#define TILE LEGAL(1, 2, 4, 8, 16, 32, 64, 128, 256)
#define ROWS_PER_ITEM LEGAL(1, 2, 4, 8)
#define SLICE LEGAL(4, 8, 16, 32, 64)
#define MT_TILE LEGAL(4, 8, 16, 32, 64, 128, 256) /* whole 4 x 4 blocks */

static const mcl_param_decl evoattn_params[] = {
    [EV_VARIANT] = {"VARIANT", EV_VARIANT_TILED, LEGAL(EV_VARIANT_REFERENCE, EV_VARIANT_TILED)},
    [EV_FWD_BQ] = {"FWD_BQ", 128, TILE}, [EV_FWD_BK] = {"FWD_BK", 32, TILE},
    [EV_FWD_R] = {"FWD_R", 1, ROWS_PER_ITEM}, [EV_FWD_DW] = {"FWD_DW", 64, SLICE},
    [EV_DKV_BQ] = {"DKV_BQ", 64, TILE},  [EV_DKV_BK] = {"DKV_BK", 128, TILE},
    [EV_DKV_R] = {"DKV_R", 1, ROWS_PER_ITEM}, [EV_DKV_DW] = {"DKV_DW", 32, SLICE},
    [EV_DQ_BQ] = {"DQ_BQ", 128, TILE},   [EV_DQ_BK] = {"DQ_BK", 32, TILE},
    [EV_DQ_R] = {"DQ_R", 1, ROWS_PER_ITEM}, [EV_DQ_DW] = {"DQ_DW", 64, SLICE},
    [EV_DPAIR_WAVES] = {"DPAIR_WAVES", 4, LEGAL(1, 2, 3, 4, 6, 8, 12, 16)},
    [EV_DKV_AHEAD] = {"DKV_AHEAD", 8, LEGAL(1, 2, 4, 8, 16)},
    [EV_DKV_MT] = {"DKV_MT", 1, LEGAL(0, 1)},
    [EV_DKV_MT_BQ] = {"DKV_MT_BQ", 32, MT_TILE}, [EV_DKV_MT_BK] = {"DKV_MT_BK", 64, MT_TILE},
    [EV_FWD_MT] = {"FWD_MT", 1, LEGAL(0, 1)},
    [EV_FWD_MT_BQ] = {"FWD_MT_BQ", 32, MT_TILE}, [EV_FWD_MT_BK] = {"FWD_MT_BK", 32, MT_TILE},
};

/* A work-group's rows must hold at least one work-item's rows; the local memory and the
 * work-items a kernel needs depend on the head dim, so the op checks those (and shrinks
 * tiles) per call. */
static const char *evoattn_check(const int *v, const mcl_device_info *device)
{
    static const int kernels[3][2] = {{EV_FWD_BQ, EV_FWD_R}, {EV_DKV_BK, EV_DKV_R}, {EV_DQ_BQ, EV_DQ_R}};
    for (int k = 0; k < 3; k++) {
        int rows = v[kernels[k][0]], per_item = v[kernels[k][1]];
        if (per_item > rows) return "R exceeds the work-group's rows (FWD_BQ, DKV_BK or DQ_BQ)";
        if ((size_t)(rows / per_item) > device->max_work_group_size)
            return "rows / R exceeds the device's work-group size";
    }
    return NULL;
}

/* shapes are {B, N, S, H, D}: tuned per head dim and sequence length class */
static void evoattn_bucket(const size_t *shape, char *out, size_t cap)
{
    snprintf(out, cap, "d=%zu,s%s", shape[4], shape[2] <= 256 ? "<=256" : shape[2] <= 1024 ? "<=1024" : ">1024");
}

FITS_PARAM_ARRAYS(evoattn_params);

const mcl_family mcl_family_evoattn = {
    .name = "evoattn",
    .define_prefix = "EV_",
    .params = evoattn_params,
    .param_count = PARAM_COUNT(evoattn_params),
    .check = evoattn_check,
    .bucket = evoattn_bucket,
};

/* ---- glu -------------------------------------------------------------------------------- */

static const mcl_param_decl glu_params[] = {
    [GLU_VEC] = {"VEC", 4, LEGAL(1, 2, 4, 8)},
    [GLU_WG] = {"WG", 256, LEGAL(32, 64, 128, 256, 512, 1024)},
    [GLU_GROUPS_PER_CU] = {"GROUPS_PER_CU", 8, LEGAL(1, 2, 4, 8, 16, 32)},
};

static const char *glu_check(const int *v, const mcl_device_info *device)
{
    if ((size_t)v[GLU_WG] > device->max_work_group_size) return "WG exceeds the device's work-group size";
    return NULL;
}

/* shapes are {elements}: elementwise kernels are tuned per dtype only */
static void glu_bucket(const size_t *shape, char *out, size_t cap)
{
    (void)shape;
    snprintf(out, cap, "any");
}

FITS_PARAM_ARRAYS(glu_params);

const mcl_family mcl_family_glu = {
    .name = "glu",
    .define_prefix = "GLU_",
    .params = glu_params,
    .param_count = PARAM_COUNT(glu_params),
    .check = glu_check,
    .bucket = glu_bucket,
};

/* ---- gemm ------------------------------------------------------------------------------- */

static const mcl_param_decl gemm_params[] = {
    [GEMM_BM] = {"BM", 128, LEGAL(16, 32, 64, 128)},
    [GEMM_BN] = {"BN", 128, LEGAL(16, 32, 64, 128)},
    [GEMM_BK] = {"BK", 16, LEGAL(4, 8, 16, 32)},
    [GEMM_TM] = {"TM", 8, LEGAL(1, 2, 4, 8)},
    [GEMM_TN] = {"TN", 8, LEGAL(1, 2, 4, 8)},
    [GEMM_SPLIT_WAVES] = {"SPLIT_WAVES", 2, LEGAL(1, 2, 4, 8)},
    [GEMM_PREFETCH] = {"PREFETCH", 1, LEGAL(0, 1)},
    [GEMM_UNROLL] = {"UNROLL", 2, LEGAL(1, 2, 4, 8, 16, 32)},
};

static const char *gemm_check(const int *v, const mcl_device_info *device)
{
    if (v[GEMM_TM] > v[GEMM_BM] || v[GEMM_TN] > v[GEMM_BN]) return "TM or TN exceeds its tile";
    if ((size_t)(v[GEMM_BM] / v[GEMM_TM]) * (size_t)(v[GEMM_BN] / v[GEMM_TN]) > device->max_work_group_size)
        return "(BM / TM) x (BN / TN) exceeds the device's work-group size";
    uint64_t stages = v[GEMM_PREFETCH] ? 2 : 1; /* prefetching double-buffers the local tiles */
    if (stages * v[GEMM_BK] * (uint64_t)(v[GEMM_BM] + v[GEMM_BN] + 8) * sizeof(float) > device->local_mem_bytes)
        return "the tiles need more local memory than the device has";
    return NULL;
}

/* shapes are {M, N, K}: one bucket per class of the smaller output side */
static void gemm_bucket(const size_t *shape, char *out, size_t cap)
{
    size_t side = shape[0] < shape[1] ? shape[0] : shape[1];
    snprintf(out, cap, "min(m,n)%s", side <= 32 ? "<=32" : side <= 256 ? "<=256" : ">256");
}

/* The double-buffered default tiles take 33 KiB of local memory; OpenCL 1.2 promises 32. */
static const char *const gemm_fallbacks[] = {"PREFETCH=0", NULL};

FITS_PARAM_ARRAYS(gemm_params);

const mcl_family mcl_family_gemm = {
    .name = "gemm",
    .define_prefix = "GEMM_",
    .params = gemm_params,
    .param_count = PARAM_COUNT(gemm_params),
    .check = gemm_check,
    .bucket = gemm_bucket,
    .fallbacks = gemm_fallbacks,
};

/* ---- registry --------------------------------------------------------------------------- */

const mcl_family *const mcl_families[] = {&mcl_family_layernorm, &mcl_family_evoattn, &mcl_family_glu, &mcl_family_gemm};
const size_t mcl_family_count = sizeof mcl_families / sizeof mcl_families[0];

const mcl_family *mcl_family_find(const char *name)
{
    for (size_t i = 0; i < mcl_family_count; i++)
        if (strcmp(mcl_families[i]->name, name) == 0) return mcl_families[i];
    return NULL;
}
