/* EvoAttention: validate -> choose parameters -> enqueue. Kernels: cl/evoattn/. */
#include "evoattn.h"

#include "ops/common/check.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/params.h"
#include "runtime/program.h"

#include <math.h>
#include <string.h>

#define EV_MAX_HEAD_DIM 256
#define EV_PRE_ELEMS 2048 /* elements a preprocess work-group reads (8 to 16 KiB of local memory) */
#define PREPROCESS "evoattn/preprocess"
#define SUM_PARTIALS "evoattn/sum_partials"
#define REFERENCE "evoattn/reference"

enum {
    FLAG_MASK = 1, FLAG_PAIR = 2, FLAG_GATE = 4, FLAG_LSE = 8, FLAG_DQ = 16, FLAG_DK = 32,
    FLAG_DV = 64, FLAG_DG = 128, FLAG_DMASK = 256, FLAG_DPAIR = 512,
};

/* The three tiled kernels. A kernel's own rows are its query tile, or for dK/dV its key tile;
 * `parts` is the number of partial score arrays it sums over head-dim slices. A kernel with a
 * micro-tiled variant names its source, how many tile-sized score arrays it keeps in local
 * memory and the largest head dim it is for. */
enum { K_FWD, K_DKV, K_DQ, K_COUNT };
static const struct {
    const char *source, *name, *slices_define;
    int owns_keys, parts;
    const char *mt_source, *mt_name;
    int mt_scores;
    size_t mt_max_head_dim;
    const char *mma_source, *mma_name;
} kernels[K_COUNT] = {
    {"evoattn/forward", "evoattn_forward", "EV_FWD_DS", 0, 1, "evoattn/forward_mt", "evoattn_forward_mt", 2,
     EV_FWD_MT_MAX_HEAD_DIM, "evoattn/forward_mma", "evoattn_forward_mma"},
    {"evoattn/dkdv", "evoattn_bwd_dkdv", "EV_DKV_DS", 1, 2, "evoattn/dkdv_mt", "evoattn_bwd_dkdv_mt", 2,
     EV_DKV_MT_MAX_HEAD_DIM, "evoattn/dkdv_mma", "evoattn_bwd_dkdv_mma"},
    {"evoattn/dq", "evoattn_bwd_dq", "EV_DQ_DS", 0, 2, NULL, NULL, 0, 0, "evoattn/dq_mma", "evoattn_bwd_dq_mma"},
};

/* A kernel's effective tiles (shrunk to fit the device). */
typedef struct ev_tile {
    size_t bq, bk, r; /* query tile, key tile, rows per work-item */
    size_t ds, dw;    /* head-dim slices and their width (a multiple of 4) */
} ev_tile;

typedef struct ev_plan {
    ev_params params;           /* with the effective tiles of the kernels that run */
    int tiled;
    int mt[K_COUNT];            /* the kernel runs its micro-tiled variant */
    int mma[K_COUNT];           /* the kernel runs its tensor-core variant */
    ev_tile tile[K_COUNT];
    size_t chunks, n_per_chunk; /* the dK/dV kernel's split of N */
    size_t pre_items, pre_rows; /* the preprocess kernel's work-group and its rows */
    int vec4;
    float scale;
} ev_plan;

/* Every kernel of the family takes the same arguments: all tensors plus workspace parts. */
typedef struct ev_args {
    const mcl_tensor *q, *k, *v, *mask, *pair, *gate, *out, *gated, *lse, *dout, *dq, *dk, *dv, *dg;
    cl_mem workspace; /* delta, mask and pair partials, scores: parts of one buffer */
    size_t part_offsets[4];
    cl_uint flags;
} ev_args;

enum { PART_DELTA, PART_MASK, PART_PAIR, PART_SCRATCH };

/* ---- validate --------------------------------------------------------------------------- */

static mcl_status validate_desc(const mcl_evoattn_desc *d, const char *op)
{
    if (!d->batch || !d->rows || !d->seq || !d->heads || !d->head_dim)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: B (%zu), N (%zu), S (%zu), H (%zu) and D (%zu) must be positive",
                        op, d->batch, d->rows, d->seq, d->heads, d->head_dim);
    if (d->head_dim > EV_MAX_HEAD_DIM)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: head dim %zu exceeds %d", op, d->head_dim, EV_MAX_HEAD_DIM);
    MCL_TRY(mcl_check_dtype(d->dtype, op));
    if (!(d->scale >= 0.0f) || isinf(d->scale))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: scale must be finite and >= 0 (got %g)", op,
                        (double)d->scale);
    /* kernels index slices, rows and sequence positions with 32-bit values */
    size_t slices;
    MCL_TRY(mcl_mul_size(d->batch, d->rows, &slices, op, "B x N"));
    MCL_TRY(mcl_mul_size(slices, d->heads, &slices, op, "B x N x H"));
    if (slices > UINT32_MAX || d->seq > UINT32_MAX)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: B x N x H (%zu) and S (%zu) must be below 2^32", op, slices,
                        d->seq);
    return MCL_OK;
}

#define BNSHD(name, t, role) MCL_TENSOR(name, t, d->dtype, role, d->batch, d->rows, d->seq, d->heads, d->head_dim)
#define MASK(name, t, role) MCL_TENSOR(name, t, d->dtype, role, d->batch, d->rows, d->seq)
#define PAIR(name, t, role) MCL_TENSOR(name, t, d->dtype, role, d->batch, d->heads, d->seq, d->seq)
#define LSE(t, role) MCL_TENSOR("lse", t, MCL_F32, role, d->batch, d->rows, d->heads, d->seq)

/* The tensors both passes read. */
#define INPUTS(t)                                                                                \
    BNSHD("q", &(t)->q, MCL_REQUIRED_IN), BNSHD("k", &(t)->k, MCL_REQUIRED_IN),                  \
    BNSHD("v", &(t)->v, MCL_REQUIRED_IN), MASK("mask", &(t)->mask, MCL_OPTIONAL_IN),             \
    PAIR("pair", &(t)->pair, MCL_OPTIONAL_IN)

/* ---- choose parameters ------------------------------------------------------------------ */

static size_t *own_rows(int kernel, ev_tile *t) { return kernels[kernel].owns_keys ? &t->bk : &t->bq; }
static size_t *streamed(int kernel, ev_tile *t) { return kernels[kernel].owns_keys ? &t->bq : &t->bk; }
static size_t work_items(int kernel, ev_tile t) { return *own_rows(kernel, &t) / t.r * t.ds; }

/* Local memory of a kernel: the streamed tile's two tensors, the bias tile, the slices'
 * partial scores and the streamed rows' statistics (an upper bound for forward and dQ). */
static size_t local_bytes(int kernel, ev_tile t)
{
    size_t rows = *own_rows(kernel, &t), cols = *streamed(kernel, &t);
    size_t parts = t.ds > 1 ? kernels[kernel].parts * t.ds * rows * (cols + 1) : 0;
    return sizeof(float) * (2 * cols * t.ds * t.dw + t.bq * (t.bk + 1) + parts + 2 * cols);
}

/* Work-items of a tiled kernel's work-group at most: its rows are independent, so larger groups
 * gain nothing, and PoCL runs out of stack for 1024-item groups with these private arrays. */
#define EV_MAX_WORK_ITEMS 256

/* Splits the head dim into slices of at most DW columns, then halves the larger tile until the
 * kernel fits the device's local memory and work-group size. */
static mcl_status fit_tile(mcl_context *ctx, int kernel, size_t d, ev_tile *t)
{
    const mcl_device_info *info = &ctx->device.info;
    size_t max_items = info->max_work_group_size < EV_MAX_WORK_ITEMS ? info->max_work_group_size : EV_MAX_WORK_ITEMS;
    t->ds = mcl_ceil_div(d, t->dw);
    t->dw = mcl_round_up(mcl_ceil_div(d, t->ds), 4);
    size_t *rows = own_rows(kernel, t), *cols = streamed(kernel, t);
    while (local_bytes(kernel, *t) > info->local_mem_bytes || work_items(kernel, *t) > max_items) {
        if (*rows > 1 && *rows >= *cols) {
            *rows /= 2;
            if (t->r > *rows) t->r = *rows;
        } else if (*cols > 1) {
            *cols /= 2;
        } else {
            return mcl_fail(MCL_ERR_DEVICE_LIMIT,
                            "evoattn: head dim %zu needs more local memory or work-items than the device has", d);
        }
    }
    return MCL_OK;
}

/* A micro-tiled kernel: the D-wide tiles of K, V, Q and dO (rows an odd number of float4s
 * apart), its tile-sized score arrays, the mask bias and the queries' statistics. (An upper
 * bound for the forward, which has no dO tile and keeps 1.5 score tiles: P and the row
 * maxima and sums of each 4 keys.) */
static size_t mt_local_bytes(int kernel, size_t d, ev_tile t)
{
    size_t dp4 = mcl_ceil_div(d, 4), ld4 = dp4 % 2 ? dp4 : dp4 + 1;
    return 16 * (2 * t.bk + 2 * t.bq) * ld4 + sizeof(float) * (kernels[kernel].mt_scores * t.bq * t.bk + t.bk + 2 * t.bq);
}

static size_t mt_work_items(ev_tile t) { return t.bk / 4 * (t.bq / 4); }

/* Halves the larger of a micro-tiled kernel's tiles (neither below 4) until it fits the
 * device; 0 when it cannot, when the variant is off, or when its mode keeps it to a range of
 * head dims that d is outside. */
static int fit_mt_tile(mcl_context *ctx, int kernel, int mode, size_t d, ev_tile *t)
{
    const mcl_device_info *info = &ctx->device.info;
    if (mode == EV_MT_OFF) return 0;
    if (mode == EV_MT_IN_RANGE && (d < EV_MT_MIN_HEAD_DIM || d > kernels[kernel].mt_max_head_dim)) return 0;
    t->ds = 1, t->dw = mcl_round_up(d, 4), t->r = 1;
    while (mt_local_bytes(kernel, d, *t) > info->local_mem_bytes || mt_work_items(*t) > info->max_work_group_size ||
           mt_work_items(*t) > EV_MAX_WORK_ITEMS) {
        size_t *larger = t->bq >= t->bk ? &t->bq : &t->bk, *other = larger == &t->bq ? &t->bk : &t->bq;
        if (*larger > 4) *larger /= 2;
        else if (*other > 4) *other /= 2;
        else return 0;
    }
    return 1;
}

/* A tensor-core kernel's local memory (forward_mma.cl, dq_mma.cl, dkdv_mma.cl): tiles of the
 * instruction's values (2 bytes, 4 in tf32) of rows 8 values longer than the head dim padded to a
 * multiple of 16, and transposed ones of rows 8 values longer than the streamed tile; the mask
 * bias, the streamed queries' statistics (dK/dV), two floats a work-item for row reductions and
 * the emulation's scratch. Forward: the query tile and K
 * row-major, V transposed. dQ: the query tile, K and V row-major, K transposed. dK/dV: the
 * larger of the key and query tiles and dO row-major (dO twice in tf32: its rounding and its
 * residue), Q and dO transposed. */
static size_t mma_local_bytes(int kernel, const ev_mma_tiles *m, size_t d, mcl_dtype dtype)
{
    size_t value = dtype == MCL_F32 ? 4 : 2, do_parts = dtype == MCL_F32 ? 2 : 1;
    size_t dk = mcl_round_up(d, 16), items = 32 * (size_t)m->warps, own = 16 * (size_t)m->warps;
    size_t st = (size_t)m->stream, scratch = m->on == 2 ? items * 12 : 1;
    size_t row_major = kernel == K_FWD ? own + st : kernel == K_DQ ? own + 2 * st : (own > st ? own : st) + do_parts * st;
    size_t transposed = kernel == K_DKV ? 2 : 1, stats = kernel == K_DKV ? 2 * st : 0;
    return value * (row_major * (dk + 8) + transposed * dk * (st + 8)) +
           sizeof(float) * (own + st + stats + 2 * items + scratch);
}

static ev_mma_tiles *mma_tiles(ev_params *p, int kernel)
{
    return kernel == K_FWD ? &p->fwd_mma : kernel == K_DQ ? &p->dq_mma : &p->dkv_mma;
}

static int mma_mode(const ev_params *p, int kernel)
{
    return kernel == K_FWD ? p->fwd_mma.on : kernel == K_DQ ? p->dq_mma.on : p->dkv_mma.on;
}

/* Whether a kernel runs its tensor-core variant: switched on, a 16-bit call or an f32 one where
 * the context allows tf32, the instruction proven on the device (or emulated), and its tiles
 * within the device's limits. */
static int takes_mma(mcl_context *ctx, const mcl_evoattn_desc *d, int kernel, const ev_mma_tiles *m)
{
    const mcl_device_info *info = &ctx->device.info;
    if (!m->on || !mcl_dtype_takes_mma(d->dtype, ctx->allow_tf32) || (m->on == 1 && !info->has_mma_sync)) return 0;
    return mma_local_bytes(kernel, m, d->head_dim, d->dtype) <= info->local_mem_bytes &&
           32 * (size_t)m->warps <= info->max_work_group_size;
}

static ev_row_tiles *row_tiles(ev_params *p, int kernel)
{
    return kernel == K_FWD ? &p->fwd : kernel == K_DKV ? &p->dkv : &p->dq;
}

static ev_mt_tiles *mt_tiles(ev_params *p, int kernel)
{
    return kernel == K_FWD ? &p->fwd_mt : kernel == K_DKV ? &p->dkv_mt : NULL;
}

/* The micro-tiled variant where it is switched on and applies, else the row kernel; either's
 * tiles fitted to the device and written back as the effective parameters. */
static mcl_status choose_kernel(mcl_context *ctx, const mcl_evoattn_desc *d, int kernel, ev_plan *plan)
{
    ev_row_tiles *row = row_tiles(&plan->params, kernel);
    ev_mt_tiles *mt = mt_tiles(&plan->params, kernel);
    ev_tile t = {(size_t)row->bq, (size_t)row->bk, (size_t)row->r, 1, (size_t)row->dw};
    ev_mma_tiles *m = mma_tiles(&plan->params, kernel);
    plan->mma[kernel] = plan->tiled && takes_mma(ctx, d, kernel, m);
    if (!plan->mma[kernel]) m->on = 0;
    if (plan->mma[kernel]) {
        size_t own = 16 * (size_t)m->warps, st = (size_t)m->stream, dk = mcl_round_up(d->head_dim, 16);
        plan->tile[kernel] = kernels[kernel].owns_keys ? (ev_tile){st, own, 1, 1, dk} : (ev_tile){own, st, 1, 1, dk};
        return MCL_OK;
    }
    if (mt) {
        ev_tile micro = {(size_t)mt->bq, (size_t)mt->bk, 1, 1, 4};
        plan->mt[kernel] = plan->tiled && fit_mt_tile(ctx, kernel, mt->on, d->head_dim, &micro);
        if (!plan->mt[kernel]) mt->on = EV_MT_OFF;
        if (plan->mt[kernel]) {
            mt->bq = (int)micro.bq, mt->bk = (int)micro.bk;
            plan->tile[kernel] = micro;
            return MCL_OK;
        }
    }
    if (plan->tiled) MCL_TRY(fit_tile(ctx, kernel, d->head_dim, &t));
    row->bq = (int)t.bq, row->bk = (int)t.bk, row->r = (int)t.r, row->dw = (int)t.dw;
    plan->tile[kernel] = t;
    return MCL_OK;
}

/* Vector loads and stores need D and the offsets of the D-wide tensors to be multiples of 4. */
static int vec4_aligned(const mcl_evoattn_desc *d, const mcl_tensor *const *tensors, size_t count)
{
    if (d->head_dim % 4) return 0;
    for (size_t i = 0; i < count; i++)
        if (tensors[i] && mcl_elem_offset(tensors[i], mcl_dtype_size(d->dtype)) % 4) return 0;
    return 1;
}

static mcl_status choose_plan(mcl_context *ctx, const mcl_evoattn_desc *d, int want_dpair, int vec4, ev_plan *plan)
{
    const size_t shape[5] = {d->batch, d->rows, d->seq, d->heads, d->head_dim};
    memset(plan, 0, sizeof *plan);
    MCL_TRY(mcl_params_lookup(ctx, &mcl_family_evoattn, d->dtype, shape, &plan->params, NULL));
    plan->tiled = plan->params.variant == EV_VARIANT_TILED;
    plan->vec4 = vec4;
    plan->scale = d->scale > 0.0f ? d->scale : 1.0f / sqrtf((float)d->head_dim);
    for (int k = 0; k < K_COUNT; k++) MCL_TRY(choose_kernel(ctx, d, k, plan));
    /* d(pair bias) sums dS over N inside the dK/dV kernel: split N into chunks so that the
     * grid still fills the device; the chunks' partials are summed afterwards */
    plan->chunks = d->rows;
    plan->n_per_chunk = 1;
    if (want_dpair) {
        size_t base = mcl_ceil_div(d->seq, plan->tile[K_DKV].bk) * d->batch * d->heads;
        size_t target = (size_t)ctx->device.info.compute_units * (size_t)plan->params.dpair_waves;
        size_t chunks = plan->tiled ? mcl_ceil_div(target, base) : 1;
        if (chunks > d->rows) chunks = d->rows;
        plan->n_per_chunk = mcl_ceil_div(d->rows, chunks);
        plan->chunks = mcl_ceil_div(d->rows, plan->n_per_chunk);
    }
    /* the preprocess reads about EV_PRE_ELEMS elements a work-group */
    plan->pre_items = ctx->device.info.max_work_group_size < 256 ? ctx->device.info.max_work_group_size : 256;
    plan->pre_rows = d->head_dim >= EV_PRE_ELEMS ? 1 : EV_PRE_ELEMS / d->head_dim;
    return MCL_OK;
}

/* The build options of one of the family's sources: the call's dtype, head dim and vector
 * access, the parameters that source reads, and what the plan derived for it. */
static void source_defines(const mcl_evoattn_desc *d, const ev_plan *plan, const char *source, mcl_defines *out)
{
    mcl_define(out, "MCL_DTYPE", d->dtype);
    mcl_define(out, "EV_D", (long long)d->head_dim);
    mcl_define(out, "EV_VEC4", plan->vec4);
    mcl_define_params(out, &mcl_family_evoattn, &plan->params, source);
    for (int k = 0; k < K_COUNT; k++)
        if (strcmp(source, kernels[k].source) == 0) mcl_define(out, kernels[k].slices_define, (long long)plan->tile[k].ds);
    for (int k = 0; k < K_COUNT; k++)
        if (plan->mma[k] && strcmp(source, kernels[k].mma_source) == 0)
            mcl_define(out, "MCL_MMA", mma_mode(&plan->params, k));
    if (strcmp(source, PREPROCESS) == 0) {
        mcl_define(out, "EV_PRE_ITEMS", (long long)plan->pre_items);
        mcl_define(out, "EV_PRE_ROWS", (long long)plan->pre_rows);
    }
}

static size_t kernel_items(const ev_plan *plan, int kernel)
{
    if (plan->mma[kernel]) { /* a warp of 32 per 16 own rows */
        ev_tile t = plan->tile[kernel];
        return 2 * *own_rows(kernel, &t);
    }
    return plan->mt[kernel] ? mt_work_items(plan->tile[kernel]) : work_items(kernel, plan->tile[kernel]);
}

static const char *kernel_source(const ev_plan *plan, int kernel)
{
    if (plan->mma[kernel]) return kernels[kernel].mma_source;
    return plan->mt[kernel] ? kernels[kernel].mt_source : kernels[kernel].source;
}

static const char *kernel_name(const ev_plan *plan, int kernel)
{
    if (plan->mma[kernel]) return kernels[kernel].mma_name;
    return plan->mt[kernel] ? kernels[kernel].mt_name : kernels[kernel].name;
}

/* ---- enqueue ---------------------------------------------------------------------------- */

static size_t slices(const mcl_evoattn_desc *d) { return d->batch * d->rows * d->heads; }

/* The reference path materialises `copies` score matrices of every slice. */
static mcl_status check_scores_fit(mcl_context *ctx, const mcl_evoattn_desc *d, size_t copies)
{
    size_t bytes;
    const char *op = "evoattn (unfused reference)";
    MCL_TRY(mcl_mul_size(slices(d), d->seq, &bytes, op, "score count"));
    MCL_TRY(mcl_mul_size(bytes, d->seq * sizeof(float) * copies, &bytes, op, "score bytes"));
    if (bytes > ctx->device.info.max_alloc_bytes)
        return mcl_fail(MCL_ERR_DEVICE_LIMIT, "%s: materialised scores need %zu bytes; the device allocates at most %llu",
                        op, bytes, (unsigned long long)ctx->device.info.max_alloc_bytes);
    return MCL_OK;
}
static size_t scores_bytes(const mcl_evoattn_desc *d) { return slices(d) * d->seq * d->seq * sizeof(float); }
static size_t stats_bytes(const mcl_evoattn_desc *d) { return slices(d) * d->seq * sizeof(float); }

static mcl_status set_args(cl_kernel kernel, const char *name, const mcl_evoattn_desc *d, const ev_plan *plan,
                           const ev_args *a)
{
    const mcl_tensor *tensors[] = {a->q, a->k, a->v, a->mask, a->pair, a->gate, a->out,
                                   a->gated, a->lse, a->dout, a->dq, a->dk, a->dv, a->dg};
    enum { T = MCL_COUNT(tensors) };
    size_t es = mcl_dtype_size(d->dtype);
    cl_mem mems[T];
    cl_ulong offs[T], part_offs[4];
    mcl_arg args[2 * T + 15];
    size_t n = 0;
    for (size_t i = 0; i < T; i++) {
        mems[i] = tensors[i] ? tensors[i]->mem : NULL;
        offs[i] = tensors[i] ? mcl_elem_offset(tensors[i], tensors[i] == a->lse ? sizeof(float) : es) : 0;
        args[n++] = MCL_ARG(mems[i]);
        args[n++] = MCL_ARG(offs[i]);
    }
    cl_uint B = (cl_uint)d->batch, N = (cl_uint)d->rows, S = (cl_uint)d->seq, H = (cl_uint)d->heads;
    cl_uint n_per_chunk = (cl_uint)plan->n_per_chunk;
    for (int i = 0; i < 4; i++) { /* float offsets into the workspace */
        part_offs[i] = a->part_offsets[i] / sizeof(float);
        args[n++] = MCL_ARG(a->workspace);
        args[n++] = MCL_ARG(part_offs[i]);
    }
    args[n++] = MCL_ARG(B);
    args[n++] = MCL_ARG(N);
    args[n++] = MCL_ARG(S);
    args[n++] = MCL_ARG(H);
    args[n++] = MCL_ARG(plan->scale);
    args[n++] = MCL_ARG(a->flags);
    args[n++] = MCL_ARG(n_per_chunk);
    return mcl_set_args(kernel, args, n, name);
}

/* Launches kernel `name` of `source` over `global` work-items (rounded up to `local`; local 0:
 * the runtime's choice, for the reference kernels). */
static mcl_status launch(mcl_context *ctx, const mcl_evoattn_desc *d, const ev_plan *plan, const ev_args *a,
                         const char *source, const char *name, cl_uint dims, const size_t *global, size_t local)
{
    mcl_defines defines = {0};
    source_defines(d, plan, source, &defines);
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, &mcl_family_evoattn, source, &defines, name, &kernel));
    MCL_TRY(set_args(kernel, name, d, plan, a));
    size_t rounded[3] = {global[0], dims > 1 ? global[1] : 1, dims > 2 ? global[2] : 1};
    if (local) rounded[0] = mcl_round_up(rounded[0], local);
    size_t locals[3] = {local, 1, 1};
    return mcl_enqueue(ctx, kernel, dims, rounded, local ? locals : NULL, name);
}

/* A tiled kernel: one work-group per (tile, slice); `tile_len` is the tile's extent along S. */
static mcl_status launch_tiled(mcl_context *ctx, const mcl_evoattn_desc *d, const ev_plan *plan, const ev_args *a,
                               int kernel, size_t tile_len, size_t slice_count)
{
    size_t items = kernel_items(plan, kernel), global = mcl_ceil_div(d->seq, tile_len) * slice_count * items;
    return launch(ctx, d, plan, a, kernel_source(plan, kernel), kernel_name(plan, kernel), 1, &global, items);
}

static mcl_status launch_reference(mcl_context *ctx, const mcl_evoattn_desc *d, const ev_plan *plan,
                                   const ev_args *a, const char *name, cl_uint dims, const size_t *global)
{
    return launch(ctx, d, plan, a, REFERENCE, name, dims, global, 0);
}

static ev_args forward_args(const mcl_evoattn_fwd_tensors *t, const mcl_tensor *lse)
{
    ev_args a = {.q = &t->q, .k = &t->k, .v = &t->v, .mask = &t->mask, .pair = &t->pair,
                 .gate = &t->gate, .out = &t->out, .gated = &t->gated, .lse = lse};
    a.flags = (mcl_has(&t->mask) ? FLAG_MASK : 0) | (mcl_has(&t->pair) ? FLAG_PAIR : 0) |
              (mcl_has(&t->gate) ? FLAG_GATE : 0) | (mcl_has(lse) ? FLAG_LSE : 0);
    return a;
}

static mcl_status enqueue_forward(mcl_context *ctx, const mcl_evoattn_desc *d, const mcl_evoattn_fwd_tensors *t,
                                  const ev_plan *plan)
{
    if (plan->tiled) {
        ev_args a = forward_args(t, &t->lse);
        return launch_tiled(ctx, d, plan, &a, K_FWD, plan->tile[K_FWD].bq, slices(d));
    }
    /* reference: scores, softmax (lse into the caller's tensor or the workspace), P V */
    MCL_TRY(check_scores_fit(ctx, d, 1));
    size_t sizes[2] = {scores_bytes(d), mcl_has(&t->lse) ? 0 : stats_bytes(d)}, offsets[2];
    cl_mem workspace;
    MCL_TRY(mcl_workspace_parts(ctx, sizes, 2, &workspace, offsets));
    mcl_tensor own_lse = {workspace, offsets[1]};
    ev_args a = forward_args(t, mcl_has(&t->lse) ? &t->lse : &own_lse);
    a.flags |= FLAG_LSE;
    a.workspace = workspace;
    a.part_offsets[PART_SCRATCH] = offsets[0];
    size_t grid_scores[3] = {d->seq, d->seq, slices(d)}, grid_rows[2] = {d->seq, slices(d)};
    size_t grid_out[3] = {d->head_dim, d->seq, slices(d)};
    MCL_TRY(launch_reference(ctx, d, plan, &a, "evoattn_ref_scores", 3, grid_scores));
    MCL_TRY(launch_reference(ctx, d, plan, &a, "evoattn_ref_softmax", 2, grid_rows));
    return launch_reference(ctx, d, plan, &a, "evoattn_ref_pv", 3, grid_out);
}

/* Workspace of the backward: delta, per-head d(mask) partials, per-chunk d(pair) partials,
 * and for the reference path the materialised P and dS. */
static void backward_sizes(const mcl_evoattn_desc *d, const mcl_evoattn_bwd_tensors *t, const ev_plan *plan,
                           size_t sizes[4])
{
    sizes[PART_DELTA] = stats_bytes(d);
    sizes[PART_MASK] = mcl_has(&t->dmask) ? stats_bytes(d) : 0;
    sizes[PART_PAIR] = mcl_has(&t->dpair) ? plan->chunks * d->batch * d->heads * d->seq * d->seq * sizeof(float) : 0;
    sizes[PART_SCRATCH] = plan->tiled ? 0 : 2 * scores_bytes(d);
}

static mcl_status reduce_partials(mcl_context *ctx, const mcl_evoattn_desc *d, const ev_plan *plan,
                                  cl_mem workspace, size_t part_offset, const mcl_tensor *out, size_t outer,
                                  size_t chunks, size_t inner)
{
    const char *name = "evoattn_sum_partials";
    mcl_defines defines = {0};
    source_defines(d, plan, SUM_PARTIALS, &defines);
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, &mcl_family_evoattn, SUM_PARTIALS, &defines, name, &kernel));
    cl_ulong part_off = part_offset / sizeof(float), outer_l = outer, inner_l = inner;
    cl_ulong out_off = mcl_elem_offset(out, mcl_dtype_size(d->dtype));
    cl_uint chunks_u = (cl_uint)chunks;
    mcl_arg args[] = {MCL_ARG(workspace), MCL_ARG(part_off), MCL_ARG(out->mem),  MCL_ARG(out_off),
                      MCL_ARG(outer_l),   MCL_ARG(chunks_u), MCL_ARG(inner_l)};
    MCL_TRY(mcl_set_args(kernel, args, MCL_COUNT(args), name));
    size_t local[2] = {64, 1}, global[2] = {mcl_round_up(inner, 64), outer};
    return mcl_enqueue(ctx, kernel, 2, global, local, name);
}

static mcl_status enqueue_gradients(mcl_context *ctx, const mcl_evoattn_desc *d, const mcl_evoattn_bwd_tensors *t,
                                    const ev_plan *plan, const ev_args *a)
{
    size_t rows = d->batch * d->rows * d->seq * d->heads;
    size_t global = mcl_ceil_div(rows, plan->pre_rows) * plan->pre_items;
    MCL_TRY(launch(ctx, d, plan, a, PREPROCESS, "evoattn_bwd_preprocess", 1, &global, plan->pre_items));
    if (plan->tiled) {
        if (a->flags & FLAG_DQ) MCL_TRY(launch_tiled(ctx, d, plan, a, K_DQ, plan->tile[K_DQ].bq, slices(d)));
        if (a->flags & (FLAG_DK | FLAG_DV | FLAG_DMASK | FLAG_DPAIR))
            MCL_TRY(launch_tiled(ctx, d, plan, a, K_DKV, plan->tile[K_DKV].bk, d->batch * d->heads * plan->chunks));
    } else {
        size_t grid_sq[3] = {d->seq, d->seq, slices(d)}, grid_rows[2] = {d->seq, slices(d)};
        size_t grid_out[3] = {d->head_dim, d->seq, slices(d)};
        size_t grid_bias[3] = {d->seq, d->seq, d->batch * d->heads};
        MCL_TRY(launch_reference(ctx, d, plan, a, "evoattn_ref_scores", 3, grid_sq));
        MCL_TRY(launch_reference(ctx, d, plan, a, "evoattn_ref_softmax", 2, grid_rows));
        MCL_TRY(launch_reference(ctx, d, plan, a, "evoattn_ref_ds", 3, grid_sq));
        if (a->flags & (FLAG_DQ | FLAG_DK | FLAG_DV))
            MCL_TRY(launch_reference(ctx, d, plan, a, "evoattn_ref_dqkv", 3, grid_out));
        if (a->flags & (FLAG_DMASK | FLAG_DPAIR))
            MCL_TRY(launch_reference(ctx, d, plan, a, "evoattn_ref_dbias", 3, grid_bias));
    }
    if (a->flags & FLAG_DMASK)
        MCL_TRY(reduce_partials(ctx, d, plan, a->workspace, a->part_offsets[PART_MASK], &t->dmask, d->batch * d->rows,
                                d->heads, d->seq));
    if (a->flags & FLAG_DPAIR)
        MCL_TRY(reduce_partials(ctx, d, plan, a->workspace, a->part_offsets[PART_PAIR], &t->dpair, 1, plan->chunks,
                                d->batch * d->heads * d->seq * d->seq));
    return MCL_OK;
}

static mcl_status enqueue_backward(mcl_context *ctx, const mcl_evoattn_desc *d, const mcl_evoattn_bwd_tensors *t,
                                   const ev_plan *plan)
{
    size_t sizes[4];
    if (!plan->tiled) MCL_TRY(check_scores_fit(ctx, d, 2));
    backward_sizes(d, t, plan, sizes);
    ev_args a = {.q = &t->q, .k = &t->k, .v = &t->v, .mask = &t->mask, .pair = &t->pair,
                 .gate = &t->gate, .out = &t->out, .lse = &t->lse, .dout = &t->dout, .dq = &t->dq,
                 .dk = &t->dk, .dv = &t->dv, .dg = &t->dgate};
    MCL_TRY(mcl_workspace_parts(ctx, sizes, 4, &a.workspace, a.part_offsets));
    a.flags = (mcl_has(&t->mask) ? FLAG_MASK : 0) | (mcl_has(&t->pair) ? FLAG_PAIR : 0) |
              (mcl_has(&t->gate) ? FLAG_GATE : 0) | (mcl_has(&t->dq) ? FLAG_DQ : 0) |
              (mcl_has(&t->dk) ? FLAG_DK : 0) | (mcl_has(&t->dv) ? FLAG_DV : 0) |
              (mcl_has(&t->dgate) ? FLAG_DG : 0) | (mcl_has(&t->dmask) ? FLAG_DMASK : 0) |
              (mcl_has(&t->dpair) ? FLAG_DPAIR : 0);
    return enqueue_gradients(ctx, d, t, plan, &a);
}

/* ---- public entry points ---------------------------------------------------------------- */

MCL_ENTRY_POINT(evoattn, forward, fwd)
{
    MCL_ENTER(evoattn, forward, validate_desc, INPUTS(t),
              mcl_needing(BNSHD("gate", &t->gate, MCL_OPTIONAL_IN), "gated"),
              BNSHD("out", &t->out, MCL_REQUIRED_OUT),
              mcl_needing(BNSHD("gated", &t->gated, MCL_OPTIONAL_OUT), "gate"),
              LSE(&t->lse, MCL_OPTIONAL_OUT));
    ev_plan plan;
    const mcl_tensor *wide[] = {&t->q, &t->k, &t->v, &t->gate, &t->out, &t->gated};
    MCL_TRY(choose_plan(ctx, d, 0, vec4_aligned(d, wide, MCL_COUNT(wide)), &plan));
    MCL_TRY(enqueue_forward(ctx, d, t, &plan));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

MCL_ENTRY_POINT(evoattn, backward, bwd)
{
    MCL_ENTER(evoattn, backward, validate_desc, INPUTS(t),
              BNSHD("gate", &t->gate, MCL_OPTIONAL_IN), BNSHD("out", &t->out, MCL_REQUIRED_IN),
              LSE(&t->lse, MCL_REQUIRED_IN), BNSHD("dout", &t->dout, MCL_REQUIRED_IN),
              BNSHD("dq", &t->dq, MCL_OPTIONAL_OUT), BNSHD("dk", &t->dk, MCL_OPTIONAL_OUT),
              BNSHD("dv", &t->dv, MCL_OPTIONAL_OUT),
              mcl_needing(BNSHD("dgate", &t->dgate, MCL_OPTIONAL_OUT), "gate"),
              mcl_needing(MASK("dmask", &t->dmask, MCL_OPTIONAL_OUT), "mask"),
              mcl_needing(PAIR("dpair", &t->dpair, MCL_OPTIONAL_OUT), "pair"));
    ev_plan plan;
    const mcl_tensor *wide[] = {&t->q, &t->k, &t->v, &t->gate, &t->out, &t->dout, &t->dq, &t->dk, &t->dv, &t->dgate};
    MCL_TRY(choose_plan(ctx, d, mcl_has(&t->dpair), vec4_aligned(d, wide, MCL_COUNT(wide)), &plan));
    MCL_TRY(enqueue_backward(ctx, d, t, &plan));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

mcl_status mcl_evoattn_backward_workspace_size(mcl_context *ctx, const mcl_evoattn_desc *desc,
                                               const mcl_evoattn_bwd_tensors *tensors, size_t *bytes)
{
    if (!ctx || !desc || !tensors || !bytes)
        return mcl_fail(MCL_ERR_NULL_POINTER, "evoattn_backward_workspace_size: NULL argument");
    ev_plan plan;
    size_t sizes[4];
    MCL_TRY(validate_desc(desc, "evoattn_backward_workspace_size"));
    MCL_TRY(choose_plan(ctx, desc, mcl_has(&tensors->dpair), 0, &plan));
    backward_sizes(desc, tensors, &plan, sizes);
    *bytes = mcl_workspace_parts_size(sizes, 4);
    return MCL_OK;
}
