/* The acsr family: its parameters, legal values, portable defaults, shape buckets and tuning
 * space. */
#include "acsr.h"

#include "runtime/dtype.h"

#include <stdio.h>

#define ROWS MCL_LEGAL(8, 16, 32, 64, 128, 256)
#define KEYS MCL_LEGAL(4, 8, 16, 32, 64, 128)
#define SLICE MCL_LEGAL(4, 8, 16, 32, 64, 128, 256)
#define FWD "acsr/forward"
#define DQ "acsr/dq"
#define DKV "acsr/dkdv"
#define FWD_MMA "acsr/forward_mma"
#define DQ_MMA "acsr/dq_mma"
#define DKV_MMA "acsr/dkdv_mma"

/* A tile kernel's three: NAME_BQ rows a tile, NAME_BK keys staged at a time, NAME_DW head-dim
 * columns a work-item holds. */
#define TILE_PARAMS(tiles, name, source)                                                       \
    MCL_PARAM(acsr_params, tiles.bq, name "_BQ", 64, ROWS, source),                            \
    MCL_PARAM(acsr_params, tiles.bk, name "_BK", 32, KEYS, source),                            \
    MCL_PARAM(acsr_params, tiles.dw, name "_DW", 64, SLICE, source)

/* A tensor-core variant's three: NAME (off, mma.sync, emulated; a host choice), NAME_WARPS of 16
 * rows each and NAME_BK rows of the other side (keys, or dK/dV's queries) staged at a time. */
#define MMA_PARAMS(tiles, name, staged, source)                                         \
    MCL_PARAM(acsr_params, tiles.on, name, 0, MCL_LEGAL(0, 1, 2), NULL),                       \
    MCL_PARAM(acsr_params, tiles.warps, name "_WARPS", 4, MCL_LEGAL(1, 2, 4, 8), source),      \
    MCL_PARAM(acsr_params, tiles.bk, name "_BK", staged, MCL_LEGAL(16, 32, 64, 128), source)

static const mcl_param_decl acsr_params_decl[] = {
    TILE_PARAMS(fwd, "FWD", FWD),
    TILE_PARAMS(dq, "DQ", DQ),
    TILE_PARAMS(dkv, "DKV", DKV),
    MCL_PARAM(acsr_params, wg, "WG", 64, MCL_LEGAL(32, 64, 128, 256), "acsr/unfused"),
    MMA_PARAMS(fwd_mma, "FWD_MMA", 64, FWD_MMA),
    MMA_PARAMS(dq_mma, "DQ_MMA", 64, DQ_MMA),
    MMA_PARAMS(dkv_mma, "DKV_MMA", 32, DKV_MMA),
};
MCL_PARAMS_FIT(acsr_params, acsr_params_decl);

/* the head dim and vector access of a call; each tile kernel's head-dim slices */
static const mcl_derived_define acsr_derived[] = {
    {"ACSR_D", NULL}, {"ACSR_VEC4", NULL}, {"ACSR_FWD_DS", FWD}, {"ACSR_DQ_DS", DQ}, {"ACSR_DKV_DS", DKV},
    {"MCL_MMA", FWD_MMA}, {"MCL_MMA", DQ_MMA}, {"MCL_MMA", DKV_MMA},
};

size_t acsr_local_bytes(const acsr_tiles *t, size_t slices)
{
    size_t row = slices * (size_t)t->dw * sizeof(float); /* a staged row */
    size_t part = slices > 1 ? slices * (size_t)t->bq * ((size_t)t->bk + 1) * sizeof(float) : 0;
    return 2 * (size_t)t->bk * row + part + 2 * (size_t)t->bk * sizeof(float);
}

/* A tile's work-items (its rows times the head-dim slices, which the op knows per call) must
 * fit a work-group. */
static const char *acsr_check(const void *values, const mcl_device_info *device)
{
    const acsr_params *v = values;
    const acsr_tiles *tiles[] = {&v->fwd, &v->dq, &v->dkv};
    for (size_t k = 0; k < MCL_COUNT(tiles); k++)
        if ((size_t)tiles[k]->bq > device->max_work_group_size) return "a tile's rows exceed the work-group size";
    if ((v->fwd_mma.on == 1 || v->dq_mma.on == 1 || v->dkv_mma.on == 1) && !device->has_mma_sync)
        return "FWD_MMA, DQ_MMA and DKV_MMA = 1 need mma.sync, which the device's probe did not run";
    return NULL;
}

/* shapes are {B, H, N, D, nonzeros per row}: tuned per head dim and row length class */
static void acsr_bucket(const size_t *shape, char *out, size_t cap)
{
    size_t per_row = shape[4];
    snprintf(out, cap, "d=%zu,row%s", shape[3], per_row <= 64 ? "<=64" : per_row <= 512 ? "<=512" : ">512");
}

static const char *const acsr_helpers[] = {"mma", "acsr/common", NULL};

/* The tuner's space: each tile kernel's rows, keys and slice width (a CPU wants fewer,
 * larger tiles), each followed by its tensor-core variant (16-bit calls, where mma.sync ran). */
#define TILE_AXES(name)                                                                        \
    MCL_AXIS_CPU(name "_BQ", MCL_LEGAL(16, 32, 64, 128), MCL_LEGAL(8, 16, 32, 64)),            \
    MCL_AXIS(name "_BK", MCL_LEGAL(8, 16, 32, 64)), MCL_AXIS(name "_DW", MCL_LEGAL(16, 32, 64))
static const mcl_tune_axis fwd_axes[] = {TILE_AXES("FWD")};
static const mcl_tune_axis dq_axes[] = {TILE_AXES("DQ")};
static const mcl_tune_axis dkv_axes[] = {TILE_AXES("DKV")};
#define MMA_AXES(name)                                                                         \
    MCL_AXIS(name, MCL_LEGAL(1)), MCL_AXIS(name "_WARPS", MCL_LEGAL(2, 4, 8)),                 \
    MCL_AXIS(name "_BK", MCL_LEGAL(32, 64, 128))
static const mcl_tune_axis fwd_mma_axes[] = {MMA_AXES("FWD_MMA")};
static const mcl_tune_axis dq_mma_axes[] = {MMA_AXES("DQ_MMA")};
static const mcl_tune_axis dkv_mma_axes[] = {MMA_AXES("DKV_MMA")};
static const mcl_tune_subspace fwd_space[] = {MCL_SUBSPACE(fwd_axes)};
static const mcl_tune_subspace fwd_mma_space[] = {MCL_SUBSPACE(fwd_mma_axes)};
static const mcl_tune_subspace dq_mma_space[] = {MCL_SUBSPACE(dq_mma_axes)};
static const mcl_tune_subspace dkv_mma_space[] = {MCL_SUBSPACE(dkv_mma_axes)};
static const mcl_tune_subspace dq_space[] = {MCL_SUBSPACE(dq_axes)};
static const mcl_tune_subspace dkv_space[] = {MCL_SUBSPACE(dkv_axes)};
static const mcl_tune_stage acsr_stages[] = {
    MCL_STAGE("forward", fwd_space),
    MCL_STAGE_IF("forward on the tensor cores", fwd_mma_space, mcl_dtype_takes_mma), MCL_STAGE("dq", dq_space),
    MCL_STAGE_IF("dq on the tensor cores", dq_mma_space, mcl_dtype_takes_mma), MCL_STAGE("dkdv", dkv_space),
    MCL_STAGE_IF("dkdv on the tensor cores", dkv_mma_space, mcl_dtype_takes_mma)};

/* A device with less local memory or smaller work-groups than the defaults need. */
static const char *const acsr_fallbacks[] = {"FWD_BK=16,DQ_BK=16,DKV_BK=16",
                                             "FWD_BQ=16,DQ_BQ=16,DKV_BQ=16,FWD_BK=8,DQ_BK=8,DKV_BK=8,WG=32", NULL};

const mcl_family mcl_family_acsr = {
    .name = "acsr", .define_prefix = "ACSR_",
    .shape_names = "B,H,N,D,row", .shape_rank = 5, .example_shape = (const size_t[]){1, 16, 16384, 64, 513},
    MCL_FAMILY_PARAMS(acsr_params, acsr_params_decl), MCL_FAMILY_DERIVED(acsr_derived),
    .helpers = acsr_helpers, .check = acsr_check, .bucket = acsr_bucket, .fallbacks = acsr_fallbacks,
    MCL_FAMILY_STAGES(acsr_stages),
};
