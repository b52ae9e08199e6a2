/* EvoAttention: validate -> choose parameters -> enqueue. Kernels: cl/evoattn.cl. */
#include "megacl.h"

#include "../runtime/error.h"
#include "../runtime/program.h"
#include "check.h"
#include "families.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define EV_MAX_HEAD_DIM 256
#define EV_PRE_ELEMS 2048 /* elements a preprocess work-group reads (8 to 16 KiB of local memory) */

enum {
    FLAG_MASK = 1, FLAG_PAIR = 2, FLAG_GATE = 4, FLAG_LSE = 8, FLAG_DQ = 16, FLAG_DK = 32,
    FLAG_DV = 64, FLAG_DG = 128, FLAG_DMASK = 256, FLAG_DPAIR = 512,
};

/* The three tiled kernels, in the order of the family's declarations (each has BQ, BK, R and
 * DW). A kernel's own rows are its query tile, or for dK/dV its key tile; `parts` is the number
 * of partial score arrays it sums over head-dim slices. A kernel with a micro-tiled variant
 * names the parameter that switches it (`mt_param`, else -1; its BQ and BK follow it), how
 * many tile-sized score arrays that variant keeps in local memory and the largest head dim it
 * is for. */
enum { K_FWD, K_DKV, K_DQ, K_COUNT };
static const struct {
    int first_param;
    const char *prefix;
    int owns_keys, parts;
    const char *name;
    int mt_param, mt_scores;
    size_t mt_max_head_dim;
    const char *mt_name;
} kernels[K_COUNT] = {
    {EV_FWD_BQ, "FWD", 0, 1, "evoattn_forward", EV_FWD_MT, 2, EV_FWD_MT_MAX_HEAD_DIM, "evoattn_forward_mt"},
    {EV_DKV_BQ, "DKV", 1, 2, "evoattn_bwd_dkdv", EV_DKV_MT, 2, EV_DKV_MT_MAX_HEAD_DIM, "evoattn_bwd_dkdv_mt"},
    {EV_DQ_BQ, "DQ", 0, 2, "evoattn_bwd_dq", -1, 0, 0, NULL},
};

typedef struct ev_tile {
    size_t bq, bk, r; /* query tile, key tile, rows per work-item */
    size_t ds, dw;    /* head-dim slices and their width (a multiple of 4) */
} ev_tile;

typedef struct ev_plan {
    mcl_params params;
    int tiled;
    int mt[K_COUNT];            /* the kernel runs its micro-tiled variant */
    ev_tile tile[K_COUNT];      /* effective tiles (shrunk to fit the device) */
    size_t chunks, n_per_chunk; /* the dK/dV kernel's split of N */
    size_t pre_items, pre_rows; /* the preprocess kernel's work-group and its rows */
    float scale;
    char defines[1024];
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
        return mcl_fail(MCL_ERR_INVALID_SIZE,
                        "%s: B (%zu), N (%zu), S (%zu), H (%zu) and D (%zu) must be positive", op,
                        d->batch, d->rows, d->seq, d->heads, d->head_dim);
    if (d->head_dim > EV_MAX_HEAD_DIM)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: head dim %zu exceeds %d", op, d->head_dim,
                        EV_MAX_HEAD_DIM);
    if (mcl_dtype_size(d->dtype) == 0)
        return mcl_fail(MCL_ERR_UNSUPPORTED_DTYPE, "%s: dtype %d is not f32, bf16 or f16", op,
                        (int)d->dtype);
    if (!(d->scale >= 0.0f) || isinf(d->scale))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: scale must be finite and >= 0 (got %g)", op,
                        (double)d->scale);
    /* kernels index slices, rows and sequence positions with 32-bit values */
    size_t slices;
    MCL_TRY(mcl_mul_size(d->batch, d->rows, &slices, op, "B x N"));
    MCL_TRY(mcl_mul_size(slices, d->heads, &slices, op, "B x N x H"));
    if (slices > UINT32_MAX || d->seq > UINT32_MAX)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: B x N x H (%zu) and S (%zu) must be below 2^32",
                        op, slices, d->seq);
    return MCL_OK;
}

static mcl_tensor_check bnshd(const char *name, const mcl_tensor *t, const mcl_evoattn_desc *d,
                              int required, int is_output)
{
    return (mcl_tensor_check){name, t, required, is_output, mcl_dtype_size(d->dtype), mcl_dtype_name(d->dtype),
                              {d->batch, d->rows, d->seq, d->heads, d->head_dim}, 5, NULL};
}

static mcl_tensor_check mask_shape(const char *name, const mcl_tensor *t, const mcl_evoattn_desc *d, int is_output)
{
    return (mcl_tensor_check){name, t, 0, is_output, mcl_dtype_size(d->dtype), mcl_dtype_name(d->dtype),
                              {d->batch, d->rows, d->seq}, 3, NULL};
}

static mcl_tensor_check pair_shape(const char *name, const mcl_tensor *t, const mcl_evoattn_desc *d, int is_output)
{
    return (mcl_tensor_check){name, t, 0, is_output, mcl_dtype_size(d->dtype), mcl_dtype_name(d->dtype),
                              {d->batch, d->heads, d->seq, d->seq}, 4, NULL};
}

static mcl_tensor_check lse_shape(const mcl_tensor *t, const mcl_evoattn_desc *d, int required, int is_output)
{
    return (mcl_tensor_check){"lse", t, required, is_output, sizeof(float), "f32",
                              {d->batch, d->rows, d->heads, d->seq}, 4, NULL};
}

static mcl_status validate_forward(mcl_context *ctx, const mcl_evoattn_desc *d,
                                   const mcl_evoattn_fwd_tensors *t)
{
    const char *op = "evoattn_forward";
    if (!ctx || !d || !t) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL context, desc or tensors", op);
    MCL_TRY(validate_desc(d, op));
    if (mcl_has(&t->gate) != mcl_has(&t->gated))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: gate and gated are given together", op);
    mcl_tensor_check checks[] = {
        bnshd("q", &t->q, d, 1, 0),          bnshd("k", &t->k, d, 1, 0),
        bnshd("v", &t->v, d, 1, 0),          mask_shape("mask", &t->mask, d, 0),
        pair_shape("pair", &t->pair, d, 0),  bnshd("gate", &t->gate, d, 0, 0),
        bnshd("out", &t->out, d, 1, 1),      bnshd("gated", &t->gated, d, 0, 1),
        lse_shape(&t->lse, d, 0, 1),
    };
    return mcl_check_tensors(ctx, op, checks, sizeof checks / sizeof checks[0]);
}

static mcl_status validate_backward(mcl_context *ctx, const mcl_evoattn_desc *d,
                                    const mcl_evoattn_bwd_tensors *t)
{
    const char *op = "evoattn_backward";
    if (!ctx || !d || !t) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL context, desc or tensors", op);
    MCL_TRY(validate_desc(d, op));
    if (!mcl_has(&t->dq) && !mcl_has(&t->dk) && !mcl_has(&t->dv) && !mcl_has(&t->dgate) &&
        !mcl_has(&t->dmask) && !mcl_has(&t->dpair))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: no output requested", op);
    if (mcl_has(&t->dgate) && !mcl_has(&t->gate))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: dgate needs the gate", op);
    if (mcl_has(&t->dmask) && !mcl_has(&t->mask))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: dmask needs the mask", op);
    if (mcl_has(&t->dpair) && !mcl_has(&t->pair))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: dpair needs the pair bias", op);
    mcl_tensor_check checks[] = {
        bnshd("q", &t->q, d, 1, 0),           bnshd("k", &t->k, d, 1, 0),
        bnshd("v", &t->v, d, 1, 0),           mask_shape("mask", &t->mask, d, 0),
        pair_shape("pair", &t->pair, d, 0),   bnshd("gate", &t->gate, d, 0, 0),
        bnshd("out", &t->out, d, 1, 0),       lse_shape(&t->lse, d, 1, 0),
        bnshd("dout", &t->dout, d, 1, 0),     bnshd("dq", &t->dq, d, 0, 1),
        bnshd("dk", &t->dk, d, 0, 1),         bnshd("dv", &t->dv, d, 0, 1),
        bnshd("dgate", &t->dgate, d, 0, 1),   mask_shape("dmask", &t->dmask, d, 1),
        pair_shape("dpair", &t->dpair, d, 1),
    };
    return mcl_check_tensors(ctx, op, checks, sizeof checks / sizeof checks[0]);
}

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

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

/* Work-items of a tiled kernel's work-group at most: its rows are independent, so larger groups
 * gain nothing, and PoCL runs out of stack for 1024-item groups with these private arrays. */
#define EV_MAX_WORK_ITEMS 256

/* Splits the head dim into slices of at most DW columns, then halves the larger tile until the
 * kernel fits the device's local memory and work-group size. */
static mcl_status fit_tile(mcl_context *ctx, int kernel, size_t d, ev_tile *t)
{
    const mcl_device_info *info = &ctx->device.info;
    size_t max_items = info->max_work_group_size < EV_MAX_WORK_ITEMS ? info->max_work_group_size : EV_MAX_WORK_ITEMS;
    t->ds = (d + t->dw - 1) / t->dw;
    t->dw = round_up((d + t->ds - 1) / t->ds, 4);
    size_t *rows = own_rows(kernel, t), *cols = streamed(kernel, t);
    while (local_bytes(kernel, *t) > info->local_mem_bytes || work_items(kernel, *t) > max_items) {
        if (*rows > 1 && *rows >= *cols) {
            *rows /= 2;
            if (t->r > *rows) t->r = *rows;
        } else if (*cols > 1) {
            *cols /= 2;
        } else {
            return mcl_fail(MCL_ERR_DEVICE_LIMIT,
                            "evoattn: head dim %zu needs more local memory or work-items than the device has",
                            d);
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
    size_t dp4 = (d + 3) / 4, ld4 = dp4 % 2 ? dp4 : dp4 + 1;
    return 16 * (2 * t.bk + 2 * t.bq) * ld4 +
           sizeof(float) * (kernels[kernel].mt_scores * t.bq * t.bk + t.bk + 2 * t.bq);
}

static size_t mt_work_items(ev_tile t) { return t.bk / 4 * (t.bq / 4); }

/* Halves the larger of a micro-tiled kernel's tiles (neither below 4) until it fits the
 * device; 0 when it cannot, or when the head dim is outside the range the variant is for. */
static int fit_mt_tile(mcl_context *ctx, int kernel, size_t d, ev_tile *t)
{
    const mcl_device_info *info = &ctx->device.info;
    if (d < EV_MT_MIN_HEAD_DIM || d > kernels[kernel].mt_max_head_dim) return 0;
    t->ds = 1, t->dw = round_up(d, 4), t->r = 1;
    while (mt_local_bytes(kernel, d, *t) > info->local_mem_bytes || mt_work_items(*t) > info->max_work_group_size ||
           mt_work_items(*t) > EV_MAX_WORK_ITEMS) {
        size_t *larger = t->bq >= t->bk ? &t->bq : &t->bk, *other = larger == &t->bq ? &t->bk : &t->bq;
        if (*larger > 4) *larger /= 2;
        else if (*other > 4) *other /= 2;
        else return 0;
    }
    return 1;
}

static size_t kernel_items(const ev_plan *plan, int kernel)
{
    return plan->mt[kernel] ? mt_work_items(plan->tile[kernel]) : work_items(kernel, plan->tile[kernel]);
}

static const char *kernel_name(const ev_plan *plan, int kernel)
{
    return plan->mt[kernel] ? kernels[kernel].mt_name : kernels[kernel].name;
}

/* Vector loads and stores need D and the offsets of the D-wide tensors to be multiples of 4. */
static int vec4_aligned(const mcl_evoattn_desc *d, const mcl_tensor *const *tensors, size_t count)
{
    if (d->head_dim % 4) return 0;
    for (size_t i = 0; i < count; i++)
        if (tensors[i] && mcl_elem_offset(tensors[i], mcl_dtype_size(d->dtype)) % 4) return 0;
    return 1;
}

static mcl_status choose_plan(mcl_context *ctx, const mcl_evoattn_desc *d, int want_dpair, int vec4,
                              ev_plan *plan)
{
    const size_t shape[5] = {d->batch, d->rows, d->seq, d->heads, d->head_dim};
    MCL_TRY(mcl_params_lookup(ctx, &mcl_family_evoattn, d->dtype, shape, &plan->params));
    mcl_params effective = plan->params;
    int *v = effective.values;
    plan->tiled = v[EV_VARIANT] == EV_VARIANT_TILED;
    plan->scale = d->scale > 0.0f ? d->scale : 1.0f / sqrtf((float)d->head_dim);
    char slices_defines[128];
    size_t used = 0;
    for (int k = 0; k < K_COUNT; k++) {
        int p = kernels[k].first_param;
        ev_tile t = {(size_t)v[p], (size_t)v[p + 1], (size_t)v[p + 2], 1, (size_t)v[p + 3]};
        int mt_param = kernels[k].mt_param;
        plan->mt[k] = 0;
        if (mt_param >= 0) { /* the micro-tiled variant where it applies, else the row kernel */
            ev_tile mt = {(size_t)v[mt_param + 1], (size_t)v[mt_param + 2], 1, 1, 4};
            plan->mt[k] = plan->tiled && v[mt_param] && fit_mt_tile(ctx, k, d->head_dim, &mt);
            v[mt_param] = plan->mt[k];
            v[mt_param + 1] = (int)mt.bq, v[mt_param + 2] = (int)mt.bk;
            if (plan->mt[k]) t = mt;
        }
        if (plan->tiled && !plan->mt[k]) MCL_TRY(fit_tile(ctx, k, d->head_dim, &t));
        plan->tile[k] = t;
        if (!plan->mt[k]) /* the row kernel's effective tiles (it is not built otherwise) */
            v[p] = (int)t.bq, v[p + 1] = (int)t.bk, v[p + 2] = (int)t.r, v[p + 3] = (int)t.dw;
        used += (size_t)snprintf(slices_defines + used, sizeof slices_defines - used, " -DEV_%s_DS=%zu",
                                 kernels[k].prefix, t.ds);
    }
    /* d(pair bias) sums dS over N inside the dK/dV kernel: split N into chunks so that the
     * grid still fills the device; the chunks' partials are summed afterwards */
    plan->chunks = d->rows;
    plan->n_per_chunk = 1;
    if (want_dpair) {
        size_t tiles = (d->seq + plan->tile[K_DKV].bk - 1) / plan->tile[K_DKV].bk;
        size_t base = tiles * d->batch * d->heads;
        size_t target = (size_t)ctx->device.info.compute_units * (size_t)v[EV_DPAIR_WAVES];
        size_t chunks = plan->tiled ? (target + base - 1) / base : 1;
        if (chunks > d->rows) chunks = d->rows;
        plan->n_per_chunk = (d->rows + chunks - 1) / chunks;
        plan->chunks = (d->rows + plan->n_per_chunk - 1) / plan->n_per_chunk;
    }
    /* the preprocess reads about EV_PRE_ELEMS elements a work-group */
    plan->pre_items = ctx->device.info.max_work_group_size < 256 ? ctx->device.info.max_work_group_size : 256;
    plan->pre_rows = d->head_dim >= EV_PRE_ELEMS ? 1 : EV_PRE_ELEMS / d->head_dim;
    char defines[640];
    mcl_params_defines(&effective, defines, sizeof defines);
    snprintf(plan->defines, sizeof plan->defines,
             "-DMCL_DTYPE=%d -DEV_D=%zu -DEV_VEC4=%d -DEV_PRE_ITEMS=%zu -DEV_PRE_ROWS=%zu %s%s", (int)d->dtype,
             d->head_dim, vec4, plan->pre_items, plan->pre_rows, defines, slices_defines);
    return MCL_OK;
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
        return mcl_fail(MCL_ERR_DEVICE_LIMIT,
                        "%s: materialised scores need %zu bytes; the device allocates at most %llu",
                        op, bytes, (unsigned long long)ctx->device.info.max_alloc_bytes);
    return MCL_OK;
}
static size_t scores_bytes(const mcl_evoattn_desc *d) { return slices(d) * d->seq * d->seq * sizeof(float); }
static size_t stats_bytes(const mcl_evoattn_desc *d) { return slices(d) * d->seq * sizeof(float); }

static mcl_status set_args(cl_kernel kernel, const char *name, const mcl_evoattn_desc *d,
                           const ev_plan *plan, const ev_args *a)
{
    const mcl_tensor *tensors[] = {a->q, a->k, a->v, a->mask, a->pair, a->gate, a->out,
                                   a->gated, a->lse, a->dout, a->dq, a->dk, a->dv, a->dg};
    enum { T = sizeof tensors / sizeof tensors[0] };
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

/* Launches `name` over `global` work-items (rounded up to `local`; local 0: the runtime's
 * choice, for the reference kernels). */
static mcl_status launch(mcl_context *ctx, const mcl_evoattn_desc *d, const ev_plan *plan,
                         const ev_args *a, const char *name, cl_uint dims, const size_t *global,
                         size_t local)
{
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, "evoattn", plan->defines, name, &kernel));
    MCL_TRY(set_args(kernel, name, d, plan, a));
    size_t rounded[3] = {global[0], dims > 1 ? global[1] : 1, dims > 2 ? global[2] : 1};
    if (local) rounded[0] = round_up(rounded[0], local);
    size_t locals[3] = {local, 1, 1};
    return mcl_enqueue(ctx, kernel, dims, rounded, local ? locals : NULL, name);
}

/* A tiled kernel: one work-group per (tile, slice); `tile_len` is the tile's extent along S. */
static mcl_status launch_tiled(mcl_context *ctx, const mcl_evoattn_desc *d, const ev_plan *plan,
                               const ev_args *a, const char *name, size_t work_items,
                               size_t tile_len, size_t slice_count)
{
    size_t groups = (d->seq + tile_len - 1) / tile_len * slice_count;
    size_t global = groups * work_items;
    return launch(ctx, d, plan, a, name, 1, &global, work_items);
}

static ev_args forward_args(const mcl_evoattn_fwd_tensors *t, const mcl_tensor *lse)
{
    ev_args a = {.q = &t->q, .k = &t->k, .v = &t->v, .mask = &t->mask, .pair = &t->pair,
                 .gate = &t->gate, .out = &t->out, .gated = &t->gated, .lse = lse};
    a.flags = (mcl_has(&t->mask) ? FLAG_MASK : 0) | (mcl_has(&t->pair) ? FLAG_PAIR : 0) |
              (mcl_has(&t->gate) ? FLAG_GATE : 0) | (mcl_has(lse) ? FLAG_LSE : 0);
    return a;
}

static mcl_status enqueue_forward(mcl_context *ctx, const mcl_evoattn_desc *d,
                                  const mcl_evoattn_fwd_tensors *t, const ev_plan *plan)
{
    if (plan->tiled) {
        ev_args a = forward_args(t, &t->lse);
        ev_tile tile = plan->tile[K_FWD];
        return launch_tiled(ctx, d, plan, &a, kernel_name(plan, K_FWD), kernel_items(plan, K_FWD), tile.bq, slices(d));
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
    MCL_TRY(launch(ctx, d, plan, &a, "evoattn_ref_scores", 3, grid_scores, 0));
    MCL_TRY(launch(ctx, d, plan, &a, "evoattn_ref_softmax", 2, grid_rows, 0));
    return launch(ctx, d, plan, &a, "evoattn_ref_pv", 3, grid_out, 0);
}

/* Workspace of the backward: delta, per-head d(mask) partials, per-chunk d(pair) partials,
 * and for the reference path the materialised P and dS. */
static void backward_sizes(const mcl_evoattn_desc *d, const mcl_evoattn_bwd_tensors *t,
                           const ev_plan *plan, size_t sizes[4])
{
    sizes[0] = stats_bytes(d);
    sizes[1] = mcl_has(&t->dmask) ? stats_bytes(d) : 0;
    sizes[2] = mcl_has(&t->dpair) ? plan->chunks * d->batch * d->heads * d->seq * d->seq * sizeof(float) : 0;
    sizes[3] = plan->tiled ? 0 : 2 * scores_bytes(d);
}

static mcl_status reduce_partials(mcl_context *ctx, const mcl_evoattn_desc *d, const ev_plan *plan,
                                  cl_mem workspace, size_t part_offset, const mcl_tensor *out,
                                  size_t outer, size_t chunks, size_t inner)
{
    cl_kernel kernel;
    const char *name = "evoattn_sum_partials";
    MCL_TRY(mcl_kernel_get(ctx, "evoattn", plan->defines, name, &kernel));
    cl_ulong part_off = part_offset / sizeof(float), outer_l = outer, inner_l = inner;
    cl_ulong out_off = mcl_elem_offset(out, mcl_dtype_size(d->dtype));
    cl_uint chunks_u = (cl_uint)chunks;
    mcl_arg args[] = {MCL_ARG(workspace), MCL_ARG(part_off), MCL_ARG(out->mem), MCL_ARG(out_off),
                      MCL_ARG(outer_l), MCL_ARG(chunks_u), MCL_ARG(inner_l)};
    MCL_TRY(mcl_set_args(kernel, args, sizeof args / sizeof args[0], name));
    size_t local[2] = {64, 1}, global[2] = {round_up(inner, 64), outer};
    return mcl_enqueue(ctx, kernel, 2, global, local, name);
}

static mcl_status enqueue_gradients(mcl_context *ctx, const mcl_evoattn_desc *d,
                                    const mcl_evoattn_bwd_tensors *t, const ev_plan *plan,
                                    const ev_args *a)
{
    size_t rows = d->batch * d->rows * d->seq * d->heads;
    size_t groups = (rows + plan->pre_rows - 1) / plan->pre_rows, global = groups * plan->pre_items;
    MCL_TRY(launch(ctx, d, plan, a, "evoattn_bwd_preprocess", 1, &global, plan->pre_items));
    if (plan->tiled) {
        ev_tile dkv = plan->tile[K_DKV], dq = plan->tile[K_DQ];
        if (a->flags & FLAG_DQ)
            MCL_TRY(launch_tiled(ctx, d, plan, a, kernel_name(plan, K_DQ), kernel_items(plan, K_DQ), dq.bq, slices(d)));
        if (a->flags & (FLAG_DK | FLAG_DV | FLAG_DMASK | FLAG_DPAIR))
            MCL_TRY(launch_tiled(ctx, d, plan, a, kernel_name(plan, K_DKV), kernel_items(plan, K_DKV), dkv.bk,
                                 d->batch * d->heads * plan->chunks));
    } else {
        size_t grid_sq[3] = {d->seq, d->seq, slices(d)}, grid_rows[2] = {d->seq, slices(d)};
        size_t grid_out[3] = {d->head_dim, d->seq, slices(d)};
        size_t grid_bias[3] = {d->seq, d->seq, d->batch * d->heads};
        MCL_TRY(launch(ctx, d, plan, a, "evoattn_ref_scores", 3, grid_sq, 0));
        MCL_TRY(launch(ctx, d, plan, a, "evoattn_ref_softmax", 2, grid_rows, 0));
        MCL_TRY(launch(ctx, d, plan, a, "evoattn_ref_ds", 3, grid_sq, 0));
        if (a->flags & (FLAG_DQ | FLAG_DK | FLAG_DV))
            MCL_TRY(launch(ctx, d, plan, a, "evoattn_ref_dqkv", 3, grid_out, 0));
        if (a->flags & (FLAG_DMASK | FLAG_DPAIR))
            MCL_TRY(launch(ctx, d, plan, a, "evoattn_ref_dbias", 3, grid_bias, 0));
    }
    if (a->flags & FLAG_DMASK)
        MCL_TRY(reduce_partials(ctx, d, plan, a->workspace, a->part_offsets[PART_MASK], &t->dmask, d->batch * d->rows,
                                d->heads, d->seq));
    if (a->flags & FLAG_DPAIR)
        MCL_TRY(reduce_partials(ctx, d, plan, a->workspace, a->part_offsets[PART_PAIR], &t->dpair, 1, plan->chunks,
                                d->batch * d->heads * d->seq * d->seq));
    return MCL_OK;
}

static mcl_status enqueue_backward(mcl_context *ctx, const mcl_evoattn_desc *d,
                                   const mcl_evoattn_bwd_tensors *t, const ev_plan *plan)
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

mcl_status mcl_evoattn_forward(mcl_context *ctx, const mcl_evoattn_desc *desc,
                               const mcl_evoattn_fwd_tensors *tensors, cl_event *event)
{
    ev_plan plan;
    MCL_TRY(validate_forward(ctx, desc, tensors));
    const mcl_tensor *wide[] = {&tensors->q, &tensors->k, &tensors->v, &tensors->gate,
                                &tensors->out, &tensors->gated};
    MCL_TRY(choose_plan(ctx, desc, 0, vec4_aligned(desc, wide, sizeof wide / sizeof wide[0]), &plan));
    MCL_TRY(enqueue_forward(ctx, desc, tensors, &plan));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

mcl_status mcl_evoattn_backward(mcl_context *ctx, const mcl_evoattn_desc *desc,
                                const mcl_evoattn_bwd_tensors *tensors, cl_event *event)
{
    ev_plan plan;
    MCL_TRY(validate_backward(ctx, desc, tensors));
    const mcl_tensor *wide[] = {&tensors->q,    &tensors->k,  &tensors->v,  &tensors->gate,
                                &tensors->out,  &tensors->dout, &tensors->dq, &tensors->dk,
                                &tensors->dv,   &tensors->dgate};
    MCL_TRY(choose_plan(ctx, desc, mcl_has(&tensors->dpair),
                        vec4_aligned(desc, wide, sizeof wide / sizeof wide[0]), &plan));
    MCL_TRY(enqueue_backward(ctx, desc, tensors, &plan));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

mcl_status mcl_evoattn_backward_workspace_size(mcl_context *ctx, const mcl_evoattn_desc *desc,
                                               const mcl_evoattn_bwd_tensors *tensors,
                                               size_t *bytes)
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
