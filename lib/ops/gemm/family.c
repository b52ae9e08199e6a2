/* The gemm family: the fused operators' GEMM tiles, their legal values and portable defaults. */
#include "gemm.h"

#include "runtime/dtype.h"

#include <stdio.h>

#define GEMM_SOURCE "gemm/gemm"

static const mcl_param_decl gemm_params_decl[] = {
    MCL_PARAM(gemm_params, bm, "BM", 128, MCL_LEGAL(16, 32, 64, 128), GEMM_SOURCE),
    MCL_PARAM(gemm_params, bn, "BN", 128, MCL_LEGAL(16, 32, 64, 128), GEMM_SOURCE),
    MCL_PARAM(gemm_params, bk, "BK", 16, MCL_LEGAL(4, 8, 16, 32), GEMM_SOURCE),
    MCL_PARAM(gemm_params, tm, "TM", 8, MCL_LEGAL(1, 2, 4, 8), GEMM_SOURCE),
    MCL_PARAM(gemm_params, tn, "TN", 8, MCL_LEGAL(1, 2, 4, 8), GEMM_SOURCE),
    MCL_PARAM(gemm_params, split_waves, "SPLIT_WAVES", 2, MCL_LEGAL(1, 2, 4, 8), NULL),
    MCL_PARAM(gemm_params, prefetch, "PREFETCH", 1, MCL_LEGAL(0, 1), GEMM_SOURCE),
    MCL_PARAM(gemm_params, unroll, "UNROLL", 2, MCL_LEGAL(1, 2, 4, 8, 16, 32), GEMM_SOURCE),
    MCL_PARAM(gemm_params, mma, "MMA", 0, MCL_LEGAL(0, 1, 2), GEMM_SOURCE),
};
MCL_PARAMS_FIT(gemm_params, gemm_params_decl);

/* the operand layout, storage and operations of a call, and the alignment its fast paths may
 * assume (the operands' storage read by the helper every source includes) */
static const mcl_derived_define gemm_derived[] = {
    {"GEMM_TRANS_A", GEMM_SOURCE}, {"GEMM_TRANS_B", GEMM_SOURCE}, {"GEMM_A_OP", GEMM_SOURCE},
    {"GEMM_C_OP", GEMM_SOURCE},    {"GEMM_ALIGN_A", GEMM_SOURCE}, {"GEMM_ALIGN_B", GEMM_SOURCE},
    {"GEMM_ALIGN_C", GEMM_SOURCE}, {"GEMM_A_F32", NULL},         {"GEMM_B_F32", NULL},
    {"GEMM_C_F32", NULL},          {"GEMM_WARPS_M", GEMM_SOURCE}, {"MCL_MMA", GEMM_SOURCE},
};

static const char *gemm_check(const void *values, const mcl_device_info *device)
{
    const gemm_params *v = values;
    if (v->tm > v->bm || v->tn > v->bn) return "TM or TN exceeds its tile";
    if ((size_t)(v->bm / v->tm) * (size_t)(v->bn / v->tn) > device->max_work_group_size)
        return "(BM / TM) x (BN / TN) exceeds the device's work-group size";
    uint64_t stages = v->prefetch ? 2 : 1; /* prefetching double-buffers the local tiles */
    if (stages * v->bk * (uint64_t)(v->bm + v->bn + 8) * sizeof(float) > device->local_mem_bytes)
        return "the tiles need more local memory than the device has";
    if (v->mma == 1 && !device->has_mma_sync) return "MMA=1 needs mma.sync, which the device's probe did not run";
    if (v->mma && gemm_mma_warps_m(values) == 0)
        return "MMA needs BK a multiple of 16 and a tile the work-group's warps split into 16 x 8 products";
    if (v->mma && gemm_mma_local_bytes(values, 2) > device->local_mem_bytes)
        return "the tensor-core tiles need more local memory than the device has";
    return NULL;
}

/* shapes are {M, N, K}: one bucket per class of the smaller output side and of K, so that the
 * wide products of AF3's forwards, their skinny ones and the weight gradients' long reductions
 * are tuned apart */
static void gemm_bucket(const size_t *shape, char *out, size_t cap)
{
    size_t side = shape[0] < shape[1] ? shape[0] : shape[1];
    snprintf(out, cap, "min(m,n)%s,k%s", side <= 32 ? "<=32" : side <= 256 ? "<=256" : ">256",
             shape[2] <= 1024 ? "<=1024" : ">1024");
}

static size_t gemm_work_items(const void *values)
{
    const gemm_params *v = values;
    return (size_t)(v->bm / v->tm) * (size_t)(v->bn / v->tn);
}

/* The tuner's space: the tiles, then how far K is split, then the tensor cores (tried only where
 * the check lets MMA=1 through: the device's mma.sync probe passed). */
static const mcl_tune_axis gemm_tiles[] = {
    MCL_AXIS("BM", MCL_LEGAL(32, 64, 128)), MCL_AXIS("BN", MCL_LEGAL(32, 64, 128)),
    MCL_AXIS("BK", MCL_LEGAL(8, 16, 32)),   MCL_AXIS("TM", MCL_LEGAL(2, 4, 8)),
    MCL_AXIS("TN", MCL_LEGAL(2, 4, 8)),     MCL_AXIS("PREFETCH", MCL_LEGAL(0, 1)),
    MCL_AXIS("UNROLL", MCL_LEGAL(1, 2, 4)),
};
static const mcl_tune_axis gemm_split[] = {MCL_AXIS("SPLIT_WAVES", MCL_LEGAL(1, 2, 4, 8))};
static const mcl_tune_axis gemm_mma[] = {
    MCL_AXIS("MMA", MCL_LEGAL(1)),          MCL_AXIS("BM", MCL_LEGAL(64, 128)), MCL_AXIS("BN", MCL_LEGAL(64, 128)),
    MCL_AXIS("BK", MCL_LEGAL(16, 32)),      MCL_AXIS("TM", MCL_LEGAL(4, 8)),    MCL_AXIS("TN", MCL_LEGAL(4, 8)),
    MCL_AXIS("PREFETCH", MCL_LEGAL(0, 1)),
};
static const mcl_tune_subspace gemm_tile_space[] = {MCL_SUBSPACE(gemm_tiles)};
static const mcl_tune_subspace gemm_split_space[] = {MCL_SUBSPACE(gemm_split)};
static const mcl_tune_subspace gemm_mma_space[] = {MCL_SUBSPACE(gemm_mma)};
static const mcl_tune_stage gemm_stages[] = {MCL_STAGE("tiles", gemm_tile_space), MCL_STAGE("split", gemm_split_space),
                                             MCL_STAGE_IF("tensor cores", gemm_mma_space, mcl_dtype_takes_mma)};

/* The double-buffered default tiles take 33 KiB of local memory; OpenCL 1.2 promises 32. */
static const char *const gemm_fallbacks[] = {"PREFETCH=0", NULL};
static const char *const gemm_helpers[] = {"mma", "gemm/flags", "gemm/operands", NULL};

const mcl_family mcl_family_gemm = {
    .name = "gemm", .define_prefix = "GEMM_",
    .shape_names = "m,n,k", .shape_rank = 3, .example_shape = (const size_t[]){147456, 1024, 128},
    MCL_FAMILY_PARAMS(gemm_params, gemm_params_decl), MCL_FAMILY_DERIVED(gemm_derived),
    .helpers = gemm_helpers, .check = gemm_check, .bucket = gemm_bucket, .fallbacks = gemm_fallbacks,
    MCL_FAMILY_STAGES(gemm_stages), .work_items = gemm_work_items,
};
