/* The evoattn family: its parameters, legal values, portable defaults and shape buckets. */
#include "evoattn.h"

#include "runtime/dtype.h"

#include <stdio.h>

#define TILE MCL_LEGAL(1, 2, 4, 8, 16, 32, 64, 128, 256)
#define ROWS_PER_ITEM MCL_LEGAL(1, 2, 4, 8)
#define SLICE MCL_LEGAL(4, 8, 16, 32, 64)
#define MT_TILE MCL_LEGAL(4, 8, 16, 32, 64, 128, 256) /* whole 4 x 4 blocks */
#define MT_MODE MCL_LEGAL(EV_MT_OFF, EV_MT_IN_RANGE, EV_MT_WHEREVER_IT_FITS)
#define FWD "evoattn/forward"
#define DKV "evoattn/dkdv"
#define DQ "evoattn/dq"
#define FWD_MT "evoattn/forward_mt"
#define DKV_MT "evoattn/dkdv_mt"
#define FWD_MMA "evoattn/forward_mma"
#define DQ_MMA "evoattn/dq_mma"
#define DKV_MMA "evoattn/dkdv_mma"

/* The four parameters of a row kernel's tiles (ev_row_tiles `tiles`), NAME_BQ, _BK, _R and _DW:
 * its query tile, key tile, rows per work-item and slice width, defines of `source`. */
#define ROW_TILES(tiles, name, query_tile, key_tile, rows, slice_width, source)                      \
    MCL_PARAM(ev_params, tiles.bq, name "_BQ", query_tile, TILE, source),                            \
    MCL_PARAM(ev_params, tiles.bk, name "_BK", key_tile, TILE, source),                              \
    MCL_PARAM(ev_params, tiles.r, name "_R", rows, ROWS_PER_ITEM, source),                           \
    MCL_PARAM(ev_params, tiles.dw, name "_DW", slice_width, SLICE, source)

/* The three of a micro-tiled variant (ev_mt_tiles `tiles`): NAME, where it runs (an ev_mt_mode,
 * a host choice), and NAME_BQ and _BK, its query and key tiles, defines of `source`. */
#define MT_TILES(tiles, name, query_tile, key_tile, source)                                          \
    MCL_PARAM(ev_params, tiles.on, name, EV_MT_IN_RANGE, MT_MODE, NULL),                             \
    MCL_PARAM(ev_params, tiles.bq, name "_BQ", query_tile, MT_TILE, source),                         \
    MCL_PARAM(ev_params, tiles.bk, name "_BK", key_tile, MT_TILE, source)

/* The three of a tensor-core variant (ev_mma_tiles `tiles`): NAME, whether it runs and how (a
 * host choice, off by default), NAME_WARPS and the streamed tile `stream_name`, defines of
 * `source`. */
#define MMA_TILES(tiles, name, stream_name, stream_default, source)                                          \
    MCL_PARAM(ev_params, tiles.on, name, 0, MCL_LEGAL(0, 1, 2), NULL),                               \
    MCL_PARAM(ev_params, tiles.warps, name "_WARPS", 4, MCL_LEGAL(1, 2, 4, 8), source),              \
    MCL_PARAM(ev_params, tiles.stream, stream_name, stream_default, MCL_LEGAL(16, 32, 64, 128), source)

static const mcl_param_decl ev_params_decl[] = {
    MCL_PARAM(ev_params, variant, "VARIANT", EV_VARIANT_TILED, MCL_LEGAL(EV_VARIANT_REFERENCE, EV_VARIANT_TILED),
              NULL),
    ROW_TILES(fwd, "FWD", 128, 32, 1, 64, FWD),
    ROW_TILES(dkv, "DKV", 64, 128, 1, 32, DKV),
    ROW_TILES(dq, "DQ", 128, 32, 1, 64, DQ),
    MCL_PARAM(ev_params, dpair_waves, "DPAIR_WAVES", 4, MCL_LEGAL(1, 2, 3, 4, 6, 8, 12, 16), NULL),
    MCL_PARAM(ev_params, dkv_ahead, "DKV_AHEAD", 8, MCL_LEGAL(1, 2, 4, 8, 16), DKV),
    MT_TILES(dkv_mt, "DKV_MT", 32, 64, DKV_MT),
    MT_TILES(fwd_mt, "FWD_MT", 32, 32, FWD_MT),
    MMA_TILES(fwd_mma, "FWD_MMA", "FWD_MMA_BK", 64, FWD_MMA),
    MMA_TILES(dq_mma, "DQ_MMA", "DQ_MMA_BK", 64, DQ_MMA),
    MMA_TILES(dkv_mma, "DKV_MMA", "DKV_MMA_BQ", 32, DKV_MMA),
};
MCL_PARAMS_FIT(ev_params, ev_params_decl);

/* the head dim and vector access of a call; each row kernel's head-dim slices; the
 * preprocess kernel's work-group and rows */
static const mcl_derived_define ev_derived[] = {
    {"EV_D", NULL},           {"EV_VEC4", NULL},           {"EV_FWD_DS", FWD},
    {"EV_DKV_DS", DKV},       {"EV_DQ_DS", DQ},            {"EV_PRE_ITEMS", "evoattn/preprocess"},
    {"EV_PRE_ROWS", "evoattn/preprocess"}, {"MCL_MMA", FWD_MMA}, {"MCL_MMA", DQ_MMA}, {"MCL_MMA", DKV_MMA},
};

/* A work-group's rows must hold at least one work-item's rows; the local memory and the
 * work-items a kernel needs depend on the head dim, so the op checks those (and shrinks
 * tiles) per call. */
static const char *ev_check(const void *values, const mcl_device_info *device)
{
    const ev_params *v = values;
    if ((v->fwd_mma.on == 1 || v->dq_mma.on == 1 || v->dkv_mma.on == 1) && !device->has_mma_sync)
        return "FWD_MMA, DQ_MMA and DKV_MMA = 1 need mma.sync, which the device's probe did not run";
    const int rows[3] = {v->fwd.bq, v->dkv.bk, v->dq.bq}, per_item[3] = {v->fwd.r, v->dkv.r, v->dq.r};
    for (int k = 0; k < 3; k++) {
        if (per_item[k] > rows[k]) return "R exceeds the work-group's rows (FWD_BQ, DKV_BK or DQ_BQ)";
        if ((size_t)(rows[k] / per_item[k]) > device->max_work_group_size)
            return "rows / R exceeds the device's work-group size";
    }
    return NULL;
}

/* shapes are {B, N, S, H, D}: tuned per head dim and sequence length class */
static void ev_bucket(const size_t *shape, char *out, size_t cap)
{
    snprintf(out, cap, "d=%zu,s%s", shape[4], shape[2] <= 256 ? "<=256" : shape[2] <= 1024 ? "<=1024" : ">1024");
}

static const char *const ev_helpers[] = {"mma", "evoattn/common", "evoattn/blocks", "evoattn/mma_tiles", NULL};

/* The tuner's space: the unfused kernels against the tiled ones (tiny slices on a CPU can favour
 * the unfused), then each tiled kernel's tiles in turn (forward, dQ, dK/dV with its d(pair
 * bias) split), the row kernel and its micro-tiled variant as alternatives, tried at every head
 * dim. */
static const mcl_tune_axis fwd_row[] = {
    MCL_AXIS("FWD_MT", MCL_LEGAL(EV_MT_OFF)),    MCL_AXIS("FWD_BQ", MCL_LEGAL(32, 64, 128)),
    MCL_AXIS("FWD_BK", MCL_LEGAL(16, 32, 64)), MCL_AXIS("FWD_R", MCL_LEGAL(1, 2)),
    MCL_AXIS("FWD_DW", MCL_LEGAL(16, 32, 64)),
};
static const mcl_tune_axis fwd_mt[] = {
    MCL_AXIS("FWD_MT", MCL_LEGAL(EV_MT_WHEREVER_IT_FITS)),
    MCL_AXIS("FWD_MT_BQ", MCL_LEGAL(16, 32, 64)),
    MCL_AXIS("FWD_MT_BK", MCL_LEGAL(16, 32, 64)),
};
static const mcl_tune_axis fwd_mma[] = {
    MCL_AXIS("FWD_MMA", MCL_LEGAL(1)),
    MCL_AXIS("FWD_MMA_WARPS", MCL_LEGAL(2, 4, 8)),
    MCL_AXIS("FWD_MMA_BK", MCL_LEGAL(32, 64, 128)),
};
static const mcl_tune_axis dq_mma[] = {
    MCL_AXIS("DQ_MMA", MCL_LEGAL(1)),
    MCL_AXIS("DQ_MMA_WARPS", MCL_LEGAL(2, 4, 8)),
    MCL_AXIS("DQ_MMA_BK", MCL_LEGAL(32, 64)),
};
static const mcl_tune_axis dq_row[] = {
    MCL_AXIS("DQ_BQ", MCL_LEGAL(32, 64, 128)), MCL_AXIS("DQ_BK", MCL_LEGAL(16, 32, 64)),
    MCL_AXIS("DQ_R", MCL_LEGAL(1, 2)),          MCL_AXIS("DQ_DW", MCL_LEGAL(16, 32, 64)),
};
static const mcl_tune_axis dkv_mma[] = {
    MCL_AXIS("DKV_MMA", MCL_LEGAL(1)),
    MCL_AXIS("DKV_MMA_WARPS", MCL_LEGAL(2, 4, 8)),
    MCL_AXIS("DKV_MMA_BQ", MCL_LEGAL(16, 32, 64)),
};
static const mcl_tune_axis dkv_row[] = {
    MCL_AXIS("DKV_MT", MCL_LEGAL(EV_MT_OFF)),    MCL_AXIS("DKV_BQ", MCL_LEGAL(32, 64, 128)),
    MCL_AXIS("DKV_BK", MCL_LEGAL(32, 64, 128)), MCL_AXIS("DKV_R", MCL_LEGAL(1, 2)),
    MCL_AXIS("DKV_DW", MCL_LEGAL(16, 32, 64)),  MCL_AXIS("DKV_AHEAD", MCL_LEGAL(4, 8)),
};
static const mcl_tune_axis dkv_mt[] = {
    MCL_AXIS("DKV_MT", MCL_LEGAL(EV_MT_WHEREVER_IT_FITS)),
    MCL_AXIS("DKV_MT_BQ", MCL_LEGAL(16, 32, 64)),
    MCL_AXIS("DKV_MT_BK", MCL_LEGAL(32, 64, 128)),
};
static const mcl_tune_axis dpair[] = {MCL_AXIS("DPAIR_WAVES", MCL_LEGAL(2, 4, 8))};
static const mcl_tune_axis unfused[] = {MCL_AXIS("VARIANT", MCL_LEGAL(EV_VARIANT_REFERENCE))};
static const mcl_tune_axis tiled[] = {MCL_AXIS("VARIANT", MCL_LEGAL(EV_VARIANT_TILED))};
static const mcl_tune_subspace variant_space[] = {MCL_SUBSPACE(unfused), MCL_SUBSPACE(tiled)};
static const mcl_tune_subspace fwd_space[] = {MCL_SUBSPACE(fwd_row), MCL_SUBSPACE(fwd_mt)};
static const mcl_tune_subspace fwd_mma_space[] = {MCL_SUBSPACE(fwd_mma)};
static const mcl_tune_subspace dq_space[] = {MCL_SUBSPACE(dq_row)};
static const mcl_tune_subspace dq_mma_space[] = {MCL_SUBSPACE(dq_mma)};
static const mcl_tune_subspace dkv_space[] = {MCL_SUBSPACE(dkv_row), MCL_SUBSPACE(dkv_mt)};
static const mcl_tune_subspace dkv_mma_space[] = {MCL_SUBSPACE(dkv_mma)};
static const mcl_tune_subspace dpair_space[] = {MCL_SUBSPACE(dpair)};
static const mcl_tune_stage ev_stages[] = {
    MCL_STAGE("variant", variant_space), MCL_STAGE("forward", fwd_space),
    MCL_STAGE_IF("forward on the tensor cores", fwd_mma_space, mcl_dtype_takes_mma), MCL_STAGE("dq", dq_space),
    MCL_STAGE_IF("dq on the tensor cores", dq_mma_space, mcl_dtype_takes_mma), MCL_STAGE("dkdv", dkv_space),
    MCL_STAGE_IF("dkdv on the tensor cores", dkv_mma_space, mcl_dtype_takes_mma),
    MCL_STAGE("dpair", dpair_space),
};

const mcl_family mcl_family_evoattn = {
    .name = "evoattn", .define_prefix = "EV_",
    .shape_names = "batch,rows,seq,heads,head_dim", .shape_rank = 5,
    .example_shape = (const size_t[]){1, 384, 384, 4, 32},
    MCL_FAMILY_PARAMS(ev_params, ev_params_decl), MCL_FAMILY_DERIVED(ev_derived),
    .helpers = ev_helpers, .check = ev_check, .bucket = ev_bucket, MCL_FAMILY_STAGES(ev_stages),
};
