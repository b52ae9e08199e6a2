/* ACSR sparse attention: validate -> choose parameters -> enqueue. Masks: mask.c; kernels:
 * cl/acsr/. */
#include "acsr.h"

#include "ops/common/walk.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/params.h"
#include "runtime/program.h"

#include <math.h>
#include <string.h>

#define ACSR_MAX_HEAD_DIM 256
/* Work-items of a tile kernel's work-group at most: its rows are independent, so larger groups
 * gain nothing, and PoCL runs out of stack for larger groups with these private arrays. */
#define ACSR_MAX_WORK_ITEMS 256
#define UNFUSED "acsr/unfused"
#define DELTA "acsr/delta"

/* The tile kernels: their source, name, slice-count define and the side of the mask they walk
 * (the forward's and dQ's own the mask's rows; dK/dV's own its columns, the transpose's rows). */
enum { K_FWD, K_DQ, K_DKV, K_COUNT };
static const struct {
    const char *source, *name, *slices_define;
    int side;
    const char *mma_source, *mma_name; /* the tensor-core variant, where there is one */
} kernels[K_COUNT] = {
    {"acsr/forward", "acsr_forward", "ACSR_FWD_DS", ACSR_ROWS, "acsr/forward_mma", "acsr_forward_mma"},
    {"acsr/dq", "acsr_dq", "ACSR_DQ_DS", ACSR_ROWS, "acsr/dq_mma", "acsr_dq_mma"},
    {"acsr/dkdv", "acsr_dkdv", "ACSR_DKV_DS", ACSR_COLS, "acsr/dkdv_mma", "acsr_dkdv_mma"},
};

/* The bits of the kernels' flags (cl/acsr/common.cl). */
#define FLAG_LSE 1u
#define FLAG_DK 4u
#define FLAG_DV 8u

typedef struct acsr_plan {
    acsr_params params; /* each tile fitted to the head dim and the device */
    int mma[K_COUNT];   /* the kernel runs its tensor-core variant */
    size_t slices[K_COUNT];
    int vec4;
    float scale;
} acsr_plan;

/* Everything a kernel may read or write (absent tensors have a NULL mem). */
typedef struct acsr_args {
    const mcl_acsr_mask *mask;
    int side;
    cl_mem tiles;
    size_t tile_count;
    mcl_tensor q, k, v, out, lse, dout, delta, dq, dk, dv, scores;
    cl_uint flags;
} acsr_args;

/* ---- validate --------------------------------------------------------------------------- */

static mcl_status validate_desc(const mcl_acsr_desc *d, const char *op)
{
    if (!d->batch || !d->heads || !d->seq || !d->head_dim)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: B (%zu), H (%zu), N (%zu) and D (%zu) must be positive", op,
                        d->batch, d->heads, d->seq, d->head_dim);
    if (d->head_dim > ACSR_MAX_HEAD_DIM)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: head dim %zu exceeds %d", op, d->head_dim, ACSR_MAX_HEAD_DIM);
    MCL_TRY(mcl_check_dtype(d->dtype, op));
    if (!(d->scale >= 0.0f) || isinf(d->scale))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: scale must be finite and >= 0 (got %g)", op, (double)d->scale);
    MCL_TRY(mcl_check_either((int)d->mode, MCL_ACSR_FUSED, MCL_ACSR_UNFUSED, op, "mode",
                             "MCL_ACSR_FUSED or MCL_ACSR_UNFUSED"));
    if (!d->mask) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: the descriptor has no mask", op);
    if (d->mask->seq != d->seq)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: the mask was built for N = %zu, the call has N = %zu", op,
                        d->mask->seq, d->seq);
    /* kernels index heads and rows with 32-bit values */
    size_t heads;
    MCL_TRY(mcl_mul_size(d->batch, d->heads, &heads, op, "B x H"));
    if (heads > UINT32_MAX) return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: B x H (%zu) must be below 2^32", op, heads);
    return MCL_OK;
}

#define BHND(name, t, role) MCL_TENSOR(name, t, d->dtype, role, d->batch, d->heads, d->seq, d->head_dim)
#define LSE(t, role) MCL_TENSOR("lse", t, MCL_F32, role, d->batch, d->heads, d->seq)
#define INPUTS(t)                                                                                \
    BHND("q", &(t)->q, MCL_REQUIRED_IN), BHND("k", &(t)->k, MCL_REQUIRED_IN), BHND("v", &(t)->v, MCL_REQUIRED_IN)

/* ---- choose parameters ------------------------------------------------------------------ */

static acsr_tiles *tiles_of(acsr_params *p, int kernel)
{
    return kernel == K_FWD ? &p->fwd : kernel == K_DQ ? &p->dq : &p->dkv;
}

/* Splits the head dim into slices of at most DW columns, then halves the larger tile until the
 * kernel fits the device's local memory and work-group size. */
static mcl_status fit_tiles(mcl_context *ctx, size_t d, acsr_tiles *t, size_t *slices)
{
    const mcl_device_info *info = &ctx->device.info;
    size_t max_items = info->max_work_group_size < ACSR_MAX_WORK_ITEMS ? info->max_work_group_size : ACSR_MAX_WORK_ITEMS;
    *slices = mcl_ceil_div(d, (size_t)t->dw);
    t->dw = (int)mcl_round_up(mcl_ceil_div(d, *slices), 4);
    while (acsr_local_bytes(t, *slices) > info->local_mem_bytes || (size_t)t->bq * *slices > max_items) {
        if (t->bq > 1 && t->bq >= t->bk) t->bq /= 2;
        else if (t->bk > 1) t->bk /= 2;
        else return mcl_fail(MCL_ERR_DEVICE_LIMIT, "acsr: head dim %zu needs more local memory than the device has", d);
    }
    return MCL_OK;
}

/* A tensor-core kernel's local memory: tiles of the instruction's values (2 bytes, 4 in tf32) of
 * rows 8 values longer than the head dim padded to a multiple of 16, and transposed ones of rows 8 values longer than the staged side;
 * the own rows' and staged rows' indices, dK/dV's staged statistics, the forward's two floats a
 * work-item for row reductions and the emulation's scratch. Forward: the tile's Q and K
 * row-major, V transposed. dQ: Q, K and V row-major, K transposed. dK/dV: the larger of the key
 * tile and the staged queries, and dO (twice in tf32: its rounding and its residue), row-major;
 * Q and dO transposed. */
static size_t mma_local_bytes(int kernel, const acsr_mma_tiles *m, size_t d, mcl_dtype dtype)
{
    size_t value = dtype == MCL_F32 ? 4 : 2, do_parts = dtype == MCL_F32 ? 2 : 1;
    size_t dk = mcl_round_up(d, 16), items = 32 * (size_t)m->warps, own = 16 * (size_t)m->warps, st = (size_t)m->bk;
    size_t scratch = m->on == 2 ? items * 12 : 1;
    size_t row_major = kernel == K_FWD ? own + st : kernel == K_DQ ? own + 2 * st : (own > st ? own : st) + do_parts * st;
    size_t transposed = kernel == K_DKV ? 2 : 1, floats = kernel == K_FWD ? 2 * items : kernel == K_DKV ? 2 * st : 0;
    return value * (row_major * (dk + 8) + transposed * dk * (st + 8)) + 4 * (own + st) +
           sizeof(float) * (floats + scratch);
}

static acsr_mma_tiles *mma_tiles(acsr_params *p, int kernel)
{
    return kernel == K_FWD ? &p->fwd_mma : kernel == K_DQ ? &p->dq_mma : &p->dkv_mma;
}

static int mma_mode(const acsr_params *p, int kernel)
{
    return kernel == K_FWD ? p->fwd_mma.on : kernel == K_DQ ? p->dq_mma.on : p->dkv_mma.on;
}

/* Whether a kernel runs its tensor-core variant: switched on, a 16-bit call or an f32 one where
 * the context allows tf32, the instruction proven on the device (or emulated), and its tiles
 * within the device's limits. */
static int takes_mma(mcl_context *ctx, const mcl_acsr_desc *d, int kernel, const acsr_mma_tiles *m)
{
    const mcl_device_info *info = &ctx->device.info;
    if (!m->on || !mcl_dtype_takes_mma(d->dtype, ctx->allow_tf32) || (m->on == 1 && !info->has_mma_sync)) return 0;
    return mma_local_bytes(kernel, m, d->head_dim, d->dtype) <= info->local_mem_bytes &&
           32 * (size_t)m->warps <= info->max_work_group_size;
}

/* Vector loads and stores need D and the offsets of the D-wide tensors to be multiples of 4. */
static int vec4_aligned(const mcl_acsr_desc *d, const mcl_tensor *const *tensors, size_t count)
{
    if (d->head_dim % 4) return 0;
    for (size_t i = 0; i < count; i++)
        if (mcl_elem_offset(tensors[i], mcl_dtype_size(d->dtype)) % 4) return 0;
    return 1;
}

static mcl_status choose_plan(mcl_context *ctx, const mcl_acsr_desc *d, int vec4, acsr_plan *plan)
{
    if (d->mask->ctx->cl != ctx->cl) /* its buffers live in that OpenCL context */
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "acsr: the mask was built on another context");
    const size_t per_row = (size_t)mcl_ceil_div(d->mask->info.nonzeros, d->seq);
    const size_t shape[5] = {d->batch, d->heads, d->seq, d->head_dim, per_row};
    memset(plan, 0, sizeof *plan);
    MCL_TRY(mcl_params_lookup(ctx, &mcl_family_acsr, d->dtype, shape, &plan->params, NULL));
    for (int k = 0; k < K_COUNT; k++) MCL_TRY(fit_tiles(ctx, d->head_dim, tiles_of(&plan->params, k), &plan->slices[k]));
    for (int k = 0; k < K_COUNT; k++) {
        acsr_mma_tiles *m = mma_tiles(&plan->params, k);
        plan->mma[k] = takes_mma(ctx, d, k, m);
        if (!plan->mma[k]) m->on = 0;
    }
    plan->vec4 = vec4;
    plan->scale = d->scale > 0.0f ? d->scale : 1.0f / sqrtf((float)d->head_dim);
    return MCL_OK;
}

/* The build options of a source: dtype, head dim, vector access, its parameters and slices. */
static void source_defines(const mcl_acsr_desc *d, const acsr_plan *plan, const char *source, mcl_defines *out)
{
    mcl_define(out, "MCL_DTYPE", d->dtype);
    mcl_define(out, "ACSR_D", (long long)d->head_dim);
    mcl_define(out, "ACSR_VEC4", plan->vec4);
    mcl_define_params(out, &mcl_family_acsr, &plan->params, source);
    for (int k = 0; k < K_COUNT; k++)
        if (strcmp(source, kernels[k].source) == 0) mcl_define(out, kernels[k].slices_define, (long long)plan->slices[k]);
    for (int k = 0; k < K_COUNT; k++)
        if (plan->mma[k] && strcmp(source, kernels[k].mma_source) == 0)
            mcl_define(out, "MCL_MMA", mma_mode(&plan->params, k));
}

static size_t heads(const mcl_acsr_desc *d) { return d->batch * d->heads; }
static size_t scores_bytes(const mcl_acsr_desc *d) { return heads(d) * d->mask->info.nonzeros * sizeof(float); }
static size_t delta_bytes(const mcl_acsr_desc *d) { return heads(d) * d->seq * sizeof(float); }

/* ---- enqueue ---------------------------------------------------------------------------- */

static mcl_status set_args(cl_kernel kernel, const char *name, const mcl_acsr_desc *d, const acsr_plan *plan,
                           const acsr_args *a)
{
    const acsr_device_side *side = &a->mask->dev[a->side];
    const mcl_tensor *tensors[] = {&a->q, &a->k, &a->v, &a->out, &a->lse, &a->dout,
                                   &a->delta, &a->dq, &a->dk, &a->dv, &a->scores};
    const int fp32[] = {0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1};
    enum { T = MCL_COUNT(tensors) };
    size_t es = mcl_dtype_size(d->dtype);
    cl_mem mems[T];
    cl_ulong offs[T];
    cl_uint tile_count = (cl_uint)a->tile_count, N = (cl_uint)d->seq, BH = (cl_uint)heads(d);
    cl_ulong nonzeros = a->mask->info.nonzeros;
    mcl_arg args[6 + 2 * T + 5];
    size_t n = 0;
    args[n++] = MCL_ARG(a->tiles);
    args[n++] = MCL_ARG(tile_count);
    args[n++] = MCL_ARG(side->order);
    args[n++] = MCL_ARG(side->rows);
    args[n++] = MCL_ARG(side->csr);
    args[n++] = MCL_ARG(side->offsets);
    for (size_t i = 0; i < T; i++) {
        mems[i] = tensors[i]->mem;
        offs[i] = mcl_elem_offset(tensors[i], fp32[i] ? sizeof(float) : es);
        args[n++] = MCL_ARG(mems[i]);
        args[n++] = MCL_ARG(offs[i]);
    }
    args[n++] = MCL_ARG(nonzeros);
    args[n++] = MCL_ARG(N);
    args[n++] = MCL_ARG(BH);
    args[n++] = MCL_ARG(plan->scale);
    args[n++] = MCL_ARG(a->flags);
    return mcl_set_args(kernel, args, n, name);
}

static mcl_status launch(mcl_context *ctx, const mcl_acsr_desc *d, const acsr_plan *plan, const acsr_args *a,
                         const char *source, const char *name, size_t global, size_t local)
{
    mcl_defines defines = {0};
    source_defines(d, plan, source, &defines);
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, &mcl_family_acsr, source, &defines, name, &kernel));
    MCL_TRY(set_args(kernel, name, d, plan, a));
    global = mcl_round_up(global, local);
    return mcl_enqueue(ctx, kernel, 1, &global, &local, name);
}

/* A tile kernel: a work-group per (tile, head). */
static mcl_status launch_tiles(mcl_context *ctx, const mcl_acsr_desc *d, acsr_plan *plan, acsr_args *a, int kernel)
{
    const acsr_tiles *t = tiles_of(&plan->params, kernel);
    int mma = plan->mma[kernel];
    size_t rows = mma ? 16 * (size_t)mma_tiles(&plan->params, kernel)->warps : (size_t)t->bq;
    size_t items = mma ? 2 * rows : rows * plan->slices[kernel]; /* a warp of 32 per 16 rows */
    a->side = kernels[kernel].side;
    /* a context that only prepares calls (the tuner's compile threads, which run at once) builds
     * the kernel and leaves the mask's tile cache alone */
    if (ctx->prepare_only)
        a->tiles = NULL, a->tile_count = 1;
    else
        MCL_TRY(acsr_mask_tiles(d->mask, a->side, rows, &a->tiles, &a->tile_count));
    return launch(ctx, d, plan, a, mma ? kernels[kernel].mma_source : kernels[kernel].source,
                  mma ? kernels[kernel].mma_name : kernels[kernel].name, a->tile_count * heads(d) * items, items);
}

/* A row kernel of the unfused pipeline: a work-group per (row, head). */
static mcl_status launch_rows(mcl_context *ctx, const mcl_acsr_desc *d, const acsr_plan *plan, acsr_args *a,
                              const char *name)
{
    a->side = ACSR_ROWS;
    size_t wg = (size_t)plan->params.wg;
    return launch(ctx, d, plan, a, UNFUSED, name, d->seq * heads(d) * wg, wg);
}

static mcl_status forward_steps(mcl_walk *w, const void *opaque)
{
    const mcl_op_args *op = opaque;
    const mcl_acsr_desc *d = op->desc;
    const mcl_acsr_fwd_tensors *t = op->tensors;
    int unfused = d->mode == MCL_ACSR_UNFUSED;
    mcl_tensor scores = unfused ? mcl_walk_part(w, 0, scores_bytes(d)) : (mcl_tensor){0};
    if (!w->enqueue) return MCL_OK;
    acsr_plan plan;
    const mcl_tensor *wide[] = {&t->q, &t->k, &t->v, &t->out};
    MCL_TRY(choose_plan(w->ctx, d, vec4_aligned(d, wide, MCL_COUNT(wide)), &plan));
    acsr_args a = {.mask = d->mask, .q = t->q, .k = t->k, .v = t->v, .out = t->out, .lse = t->lse,
                   .scores = scores, .flags = mcl_has(&t->lse) ? FLAG_LSE : 0};
    if (!unfused) return mcl_walk_step(w, "forward", launch_tiles(w->ctx, d, &plan, &a, K_FWD));
    MCL_TRY(mcl_walk_step(w, "scores", launch_rows(w->ctx, d, &plan, &a, "acsr_scores")));
    MCL_TRY(mcl_walk_step(w, "softmax", launch_rows(w->ctx, d, &plan, &a, "acsr_softmax")));
    return mcl_walk_step(w, "P V", launch_rows(w->ctx, d, &plan, &a, "acsr_spmm"));
}

static mcl_status backward_steps(mcl_walk *w, const void *opaque)
{
    const mcl_op_args *op = opaque;
    const mcl_acsr_desc *d = op->desc;
    const mcl_acsr_bwd_tensors *t = op->tensors;
    mcl_tensor delta = mcl_walk_part(w, 0, delta_bytes(d));
    if (!w->enqueue) return MCL_OK;
    acsr_plan plan;
    const mcl_tensor *wide[] = {&t->q, &t->k, &t->v, &t->out, &t->dout, &t->dq, &t->dk, &t->dv};
    MCL_TRY(choose_plan(w->ctx, d, vec4_aligned(d, wide, MCL_COUNT(wide)), &plan));
    acsr_args a = {.mask = d->mask, .q = t->q, .k = t->k, .v = t->v, .out = t->out, .lse = t->lse,
                   .dout = t->dout, .delta = delta, .dq = t->dq, .dk = t->dk, .dv = t->dv,
                   .flags = (mcl_has(&t->dk) ? FLAG_DK : 0) | (mcl_has(&t->dv) ? FLAG_DV : 0)};
    MCL_TRY(mcl_walk_step(w, "delta", launch(w->ctx, d, &plan, &a, DELTA, "acsr_delta", heads(d) * d->seq, 64)));
    if (mcl_has(&t->dq)) MCL_TRY(mcl_walk_step(w, "dQ", launch_tiles(w->ctx, d, &plan, &a, K_DQ)));
    if (a.flags) MCL_TRY(mcl_walk_step(w, "dK, dV", launch_tiles(w->ctx, d, &plan, &a, K_DKV)));
    return MCL_OK;
}

/* ---- public entry points ---------------------------------------------------------------- */

MCL_WALKED_ENTRY_POINT(acsr, forward, fwd, INPUTS(t), BHND("out", &t->out, MCL_REQUIRED_OUT),
                       LSE(&t->lse, MCL_OPTIONAL_OUT))

MCL_WALKED_ENTRY_POINT(acsr, backward, bwd, INPUTS(t), BHND("out", &t->out, MCL_REQUIRED_IN),
                       LSE(&t->lse, MCL_REQUIRED_IN), BHND("dout", &t->dout, MCL_REQUIRED_IN),
                       BHND("dq", &t->dq, MCL_OPTIONAL_OUT), BHND("dk", &t->dk, MCL_OPTIONAL_OUT),
                       BHND("dv", &t->dv, MCL_OPTIONAL_OUT))

mcl_status mcl_acsr_workspace_size(mcl_context *ctx, const mcl_acsr_desc *desc, size_t *forward_bytes,
                                   size_t *backward_bytes)
{
    const char *name = "acsr_workspace_size";
    if (!ctx || !desc || !forward_bytes || !backward_bytes)
        return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL argument", name);
    MCL_TRY(validate_desc(desc, name));
    const mcl_acsr_fwd_tensors none_fwd = {0};
    const mcl_acsr_bwd_tensors none_bwd = {0};
    MCL_TRY(mcl_walk_size(ctx, name, forward_steps, &(mcl_op_args){desc, &none_fwd}, forward_bytes));
    return mcl_walk_size(ctx, name, backward_steps, &(mcl_op_args){desc, &none_bwd}, backward_bytes);
}
