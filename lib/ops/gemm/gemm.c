/* The fused operators' GEMM: choose tiles and splits -> enqueue (see gemm.h). */
#include "gemm.h"

#include "ops/common/check.h"
#include "runtime/dtype.h"
#include "runtime/error.h"
#include "runtime/params.h"
#include "runtime/program.h"

#include <stdlib.h>

/* The bits of cl/gemm/flags.cl. */
#define FLAG_GAMMA 1u
#define FLAG_BETA 2u
#define FLAG_BIAS 4u
#define FLAG_PARTIAL 8u
#define FLAG_ACCUMULATE 16u
#define FLAG_RESIDUAL 32u

enum { A_AS_STORED = 0, A_LAYERNORM = 1, A_SWIGLU = 2 };  /* GEMM_A_OP */
enum { C_AS_COMPUTED = 0, C_SWIGLU_BACKWARD = 1 };        /* GEMM_C_OP */

static int a_op(const gemm_call *g)
{
    return g->ln ? A_LAYERNORM : g->swiglu && g->swiglu->role == GEMM_SWIGLU_ON_A ? A_SWIGLU : A_AS_STORED;
}

static int c_op(const gemm_call *g)
{
    return g->swiglu && g->swiglu->role == GEMM_SWIGLU_BACKWARD_ON_C ? C_SWIGLU_BACKWARD : C_AS_COMPUTED;
}

gemm_matrix gemm_operand(const mcl_tensor *t, mcl_dtype dtype, size_t first, size_t ld, int trans)
{
    return (gemm_matrix){t->mem, (size_t)mcl_elem_offset(t, mcl_dtype_size(dtype)) + first, ld, 0, trans, 0};
}

gemm_layernorm gemm_layernorm_of(const mcl_tensor *mean, const mcl_tensor *rstd, const mcl_tensor *weight,
                                 const mcl_tensor *bias, mcl_dtype dtype, size_t first_row)
{
    size_t es = mcl_dtype_size(dtype);
    return (gemm_layernorm){mean->mem, rstd->mem, (size_t)mcl_elem_offset(mean, sizeof(float)) + first_row,
                            (size_t)mcl_elem_offset(rstd, sizeof(float)) + first_row, 0, weight->mem, bias->mem,
                            (size_t)mcl_elem_offset(weight, es), (size_t)mcl_elem_offset(bias, es)};
}

/* A tile no larger than the next power of two of its side, down to 8 (a 16-wide output gets a
 * 16-wide tile), its per-work-item share shrinking with it so the work-group keeps its
 * work-items (a 16-column tile of 128-column parameters: 16 work-items of one column each).
 * Not down to 4 and below: PoCL 5 cannot compile a work-group one work-item wide. */
static void fit_tile(int *tile, int *per_item, size_t side)
{
    while (*tile > 8 && (size_t)*tile / 2 >= side) {
        *tile /= 2;
        if (*per_item > 1) *per_item /= 2;
    }
}

int gemm_mma_warps_m(const gemm_params *p)
{
    int items = (p->bm / p->tm) * (p->bn / p->tn), warps = items / 32, best = 0;
    if (items % 32 != 0 || p->bk % 16 != 0) return 0;
    for (int wm = 1; wm <= warps; wm *= 2) {
        int wn = warps / wm;
        if (warps % wm != 0 || p->bm % (16 * wm) != 0 || p->bn % (8 * wn) != 0) continue;
        int side_m = p->bm / wm, side_n = p->bn / wn, best_m = best ? p->bm / best : 0,
            best_n = best ? p->bn / (warps / best) : 0;
        if (!best || abs(side_m - side_n) < abs(best_m - best_n)) best = wm;
    }
    return best;
}

uint64_t gemm_mma_local_bytes(const gemm_params *p, unsigned value_bytes)
{
    uint64_t stages = p->prefetch ? 2 : 1, items = (uint64_t)(p->bm / p->tm) * (uint64_t)(p->bn / p->tn);
    uint64_t pad = value_bytes == 4 ? 4 : 8, lane_values = value_bytes == 4 ? 6 : 12; /* cl/gemm/gemm.cl */
    uint64_t tiles = stages * (uint64_t)(p->bm + p->bn) * ((uint64_t)p->bk + pad) * value_bytes;
    return tiles + (p->mma == 2 ? items * lane_values * sizeof(float) : sizeof(float));
}

/* The tensor cores take calls whose A and B are of the storage type (an A formed by LayerNorm
 * or SwiGLU is rounded to it): bf16 and f16, and f32 in tf32 where the context allows it, on a
 * tile their warps split; fp32 operands beside 16-bit ones keep the FMA kernel. */
static int takes_mma(const mcl_context *ctx, const gemm_call *g, const gemm_params *p)
{
    if (!p->mma || g->a.fp32 || g->b.fp32 || gemm_mma_warps_m(p) == 0) return 0;
    if (!mcl_dtype_takes_mma(g->dtype, ctx->allow_tf32)) return 0;
    return g->dtype != MCL_F32 || gemm_mma_local_bytes(p, 4) <= ctx->device.info.local_mem_bytes;
}

mcl_status mcl_gemm_plan(mcl_context *ctx, const gemm_call *g, gemm_plan *plan)
{
    const size_t shape[3] = {g->m, g->n, g->k};
    gemm_params *p = &plan->params;
    MCL_TRY(mcl_params_lookup(ctx, &mcl_family_gemm, g->dtype, shape, p, NULL));
    fit_tile(&p->bm, &p->tm, g->m);
    fit_tile(&p->bn, &p->tn, g->n);
    if (!takes_mma(ctx, g, p)) p->mma = 0;
    plan->warps_m = p->mma ? gemm_mma_warps_m(p) : 0;
    size_t bm = (size_t)p->bm, bn = (size_t)p->bn, bk = (size_t)p->bk;
    /* split K when the tiles cannot fill SPLIT_WAVES work-groups per compute unit, into as many
     * splits as fit in that many (a second, partial round would only add a tail), keeping >= 4
     * steps per split */
    size_t tiles = mcl_ceil_div(g->m, bm) * mcl_ceil_div(g->n, bn) * g->batch;
    size_t target = (size_t)ctx->device.info.compute_units * (size_t)p->split_waves;
    size_t splits = tiles < target ? target / tiles : 1;
    if (c_op(g) == C_SWIGLU_BACKWARD) splits = 1; /* SwiGLU's backward needs the whole sum */
    size_t max_splits = mcl_ceil_div(g->k, 4 * bk);
    if (splits > max_splits) splits = max_splits;
    if (splits < 1) splits = 1;
    plan->k_chunk = mcl_ceil_div(mcl_ceil_div(g->k, splits), bk) * bk;
    plan->splits = mcl_ceil_div(g->k, plan->k_chunk);
    plan->partial_bytes = plan->splits > 1 ? plan->splits * g->batch * g->m * g->n * sizeof(float) : 0;
    plan->local[0] = bn / (size_t)p->tn;
    plan->local[1] = bm / (size_t)p->tm;
    plan->global[0] = mcl_ceil_div(g->n, bn) * plan->local[0];
    plan->global[1] = mcl_ceil_div(g->m, bm) * plan->local[1];
    plan->global[2] = g->batch * plan->splits;
    return MCL_OK;
}

/* What is added: LayerNorm's weight and bias on A, the bias and the residual on C. */
static cl_uint bias_flags(const gemm_call *g)
{
    const gemm_layernorm *ln = g->ln;
    return (ln && ln->gamma ? FLAG_GAMMA : 0) | (ln && ln->beta ? FLAG_BETA : 0) | (g->bias ? FLAG_BIAS : 0) |
           (g->residual ? FLAG_RESIDUAL : 0);
}

/* The largest power of two up to 8 dividing every one of the values, in elements. */
static int alignment_of(const size_t *values, size_t count)
{
    size_t align = 8;
    for (size_t i = 0; i < count; i++)
        while (values[i] % align != 0) align /= 2;
    return (int)align;
}

/* What the kernel's vector loads of A need aligned: A's placement and what A's operation adds
 * to its addresses (LayerNorm's weights, SwiGLU's halves). */
static int a_alignment(const gemm_call *g)
{
    const gemm_layernorm *ln = g->ln;
    const gemm_swiglu *sw = a_op(g) == A_SWIGLU ? g->swiglu : NULL;
    size_t values[] = {g->a.off,
                       g->a.ld,
                       g->a.batch_stride,
                       ln && ln->gamma ? ln->gamma_off : 0,
                       ln && ln->beta ? ln->beta_off : 0,
                       sw ? sw->silu_shift : 0,
                       sw ? sw->gate_shift : 0};
    return alignment_of(values, MCL_COUNT(values));
}

static int b_alignment(const gemm_call *g)
{
    size_t values[] = {g->b.off, g->b.ld, g->b.batch_stride};
    return alignment_of(values, MCL_COUNT(values));
}

/* What the epilogue's vector accesses need aligned: C's placement, or the partials' (rows of n
 * floats from partial_off); the bias and the residual; SwiGLU's backward's h and halves. */
static int c_alignment(const gemm_call *g, size_t partial_off, cl_uint partial)
{
    const gemm_swiglu *sw = c_op(g) == C_SWIGLU_BACKWARD ? g->swiglu : NULL;
    size_t values[] = {partial ? partial_off : g->c.off,
                       partial ? g->n : g->c.ld,
                       partial ? 0 : g->c.batch_stride,
                       g->bias ? g->bias_off : 0,
                       g->residual && !partial ? g->residual_off : 0,
                       sw ? sw->h_off : 0,
                       sw ? sw->ldh : 0,
                       sw ? sw->silu_shift : 0,
                       sw ? sw->gate_shift : 0};
    return alignment_of(values, MCL_COUNT(values));
}

/* The build options of the call: the dtype, the plan's tiles, the operand layout and
 * operations, and the alignment of this call (pieces of one plan lie at different offsets). */
static void gemm_defines(const gemm_call *g, const gemm_plan *plan, size_t partial_off, cl_uint partial,
                         mcl_defines *d)
{
    mcl_define(d, "MCL_DTYPE", g->dtype);
    mcl_define_params(d, &mcl_family_gemm, &plan->params, "gemm/gemm");
    mcl_define(d, "GEMM_TRANS_A", g->a.trans != 0);
    mcl_define(d, "GEMM_TRANS_B", g->b.trans != 0);
    mcl_define(d, "GEMM_A_F32", g->a.fp32 != 0);
    mcl_define(d, "GEMM_B_F32", g->b.fp32 != 0);
    mcl_define(d, "GEMM_C_F32", g->c.fp32 != 0);
    if (plan->params.mma) {
        mcl_define(d, "GEMM_WARPS_M", plan->warps_m);
        mcl_define(d, "MCL_MMA", plan->params.mma);
    }
    mcl_define(d, "GEMM_A_OP", a_op(g));
    mcl_define(d, "GEMM_C_OP", c_op(g));
    mcl_define(d, "GEMM_ALIGN_A", a_alignment(g));
    mcl_define(d, "GEMM_ALIGN_B", b_alignment(g));
    mcl_define(d, "GEMM_ALIGN_C", c_alignment(g, partial_off, partial));
}

/* The GEMM kernel itself; `partial` non-zero: every split writes its slot's partials at
 * `partials` (FLAG_PARTIAL, with FLAG_ACCUMULATE: adds to them). */
static mcl_status enqueue_gemm(mcl_context *ctx, const gemm_call *g, const gemm_plan *plan, mcl_tensor partials,
                               cl_uint partial, size_t first_slot, size_t slots)
{
    const gemm_layernorm no_ln = {0};
    const gemm_swiglu no_swiglu = {0};
    const gemm_layernorm *ln = g->ln ? g->ln : &no_ln;
    const gemm_swiglu *sw = g->swiglu ? g->swiglu : &no_swiglu;
    cl_uint flags = bias_flags(g) | partial;
    cl_ulong a_off = g->a.off, lda = g->a.ld, a_batch = g->a.batch_stride, b_off = g->b.off, ldb = g->b.ld,
             b_batch = g->b.batch_stride, mean_off = ln->mean_off, rstd_off = ln->rstd_off,
             stat_batch = ln->stat_batch, gamma_off = ln->gamma_off, beta_off = ln->beta_off,
             silu_shift = sw->silu_shift, gate_shift = sw->gate_shift, h_off = sw->h_off, ldh = sw->ldh,
             bias_off = g->bias_off, residual_off = g->residual_off, c_off = g->c.off, ldc = g->c.ld,
             c_batch = g->c.batch_stride, part_off = partials.offset / sizeof(float), m = g->m, n = g->n, k = g->k,
             k_chunk = plan->k_chunk;
    cl_uint splits = (cl_uint)plan->splits, slot_base = (cl_uint)first_slot, slots_u = (cl_uint)slots;
    cl_mem part = partial ? partials.mem : NULL, h = c_op(g) == C_SWIGLU_BACKWARD ? sw->h : NULL;
    mcl_arg args[] = {MCL_ARG(g->a.mem),  MCL_ARG(a_off),      MCL_ARG(lda),       MCL_ARG(a_batch),
                      MCL_ARG(g->b.mem),  MCL_ARG(b_off),      MCL_ARG(ldb),       MCL_ARG(b_batch),
                      MCL_ARG(ln->mean),  MCL_ARG(mean_off),   MCL_ARG(ln->rstd),  MCL_ARG(rstd_off),
                      MCL_ARG(stat_batch), MCL_ARG(ln->gamma), MCL_ARG(gamma_off), MCL_ARG(ln->beta),
                      MCL_ARG(beta_off),  MCL_ARG(silu_shift), MCL_ARG(gate_shift), MCL_ARG(h),
                      MCL_ARG(h_off),     MCL_ARG(ldh),        MCL_ARG(g->bias),   MCL_ARG(bias_off),
                      MCL_ARG(g->residual), MCL_ARG(residual_off),
                      MCL_ARG(g->c.mem),  MCL_ARG(c_off),      MCL_ARG(ldc),       MCL_ARG(c_batch),
                      MCL_ARG(part),      MCL_ARG(part_off),   MCL_ARG(slot_base), MCL_ARG(slots_u),
                      MCL_ARG(m),         MCL_ARG(n),          MCL_ARG(k),         MCL_ARG(k_chunk),
                      MCL_ARG(splits),    MCL_ARG(flags)};
    mcl_defines defines = {0};
    gemm_defines(g, plan, part_off, partial, &defines);
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, &mcl_family_gemm, "gemm/gemm", &defines, "gemm", &kernel));
    MCL_TRY(mcl_set_args(kernel, args, MCL_COUNT(args), "gemm"));
    const size_t local[3] = {plan->local[0], plan->local[1], 1};
    return mcl_enqueue(ctx, kernel, 3, plan->global, local, "gemm");
}

/* C = the sum of `slots` partial slots at `partials` (+ bias, + residual), in slot order. */
static mcl_status enqueue_sum(mcl_context *ctx, const gemm_call *g, mcl_tensor partials, size_t slots, cl_uint flags)
{
    mcl_defines defines = {0};
    mcl_define(&defines, "MCL_DTYPE", g->dtype);
    mcl_define(&defines, "GEMM_C_F32", g->c.fp32 != 0);
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, &mcl_family_gemm, "gemm/sums", &defines, "gemm_sum_splits", &kernel));
    cl_ulong part_off = partials.offset / sizeof(float), bias_off = g->bias_off, residual_off = g->residual_off,
             c_off = g->c.off, ldc = g->c.ld, c_batch = g->c.batch_stride, m = g->m, n = g->n;
    cl_uint slots_u = (cl_uint)slots;
    mcl_arg args[] = {MCL_ARG(partials.mem), MCL_ARG(part_off),     MCL_ARG(g->bias), MCL_ARG(bias_off),
                      MCL_ARG(g->residual),  MCL_ARG(residual_off), MCL_ARG(g->c.mem), MCL_ARG(c_off),
                      MCL_ARG(ldc),          MCL_ARG(c_batch),      MCL_ARG(m),       MCL_ARG(n),
                      MCL_ARG(slots_u),      MCL_ARG(flags)};
    MCL_TRY(mcl_set_args(kernel, args, MCL_COUNT(args), "gemm_sum_splits"));
    size_t local[3] = {64, 1, 1}, global[3] = {mcl_round_up(g->n, 64), g->m, g->batch};
    return mcl_enqueue(ctx, kernel, 3, global, local, "gemm_sum_splits");
}

static mcl_status run_planned(mcl_context *ctx, const gemm_call *g, const gemm_plan *plan, mcl_tensor partials)
{
    int split = plan->splits > 1;
    MCL_TRY(enqueue_gemm(ctx, g, plan, partials, split ? FLAG_PARTIAL : 0, 0, plan->splits));
    return split ? enqueue_sum(ctx, g, partials, plan->splits, bias_flags(g)) : MCL_OK;
}

mcl_status mcl_gemm_planned_step(mcl_walk *w, const char *step, const gemm_call *g, const gemm_plan *plan,
                                 mcl_tensor partials)
{
    return w->enqueue ? mcl_walk_step(w, step, run_planned(w->ctx, g, plan, partials)) : MCL_OK;
}

mcl_status mcl_gemm_step(mcl_walk *w, const char *step, const gemm_call *g, int part)
{
    gemm_plan plan;
    MCL_TRY(mcl_walk_step(w, step, mcl_gemm_plan(w->ctx, g, &plan)));
    return mcl_gemm_planned_step(w, step, g, &plan, mcl_walk_part(w, part, plan.partial_bytes));
}

mcl_status mcl_gemm_piece_step(mcl_walk *w, const char *step, const gemm_call *g, const gemm_plan *plan,
                               mcl_tensor slots, size_t first_slot, size_t slot_count, int accumulate)
{
    if (!w->enqueue) return MCL_OK;
    gemm_plan piece = *plan; /* the plan's splits, this piece's k spread over all of them */
    size_t bk = (size_t)plan->params.bk;
    piece.k_chunk = mcl_ceil_div(mcl_ceil_div(g->k, plan->splits), bk) * bk;
    cl_uint partial = FLAG_PARTIAL | (accumulate ? FLAG_ACCUMULATE : 0);
    return mcl_walk_step(w, step, enqueue_gemm(w->ctx, g, &piece, slots, partial, first_slot, slot_count));
}

mcl_status mcl_gemm_sum_step(mcl_walk *w, const char *step, const gemm_call *g, mcl_tensor slots, size_t slot_count)
{
    return w->enqueue ? mcl_walk_step(w, step, enqueue_sum(w->ctx, g, slots, slot_count, bias_flags(g))) : MCL_OK;
}

/* Splits of at least 64 rows, up to a few per compute unit, so the columns' sums fill the
 * device even for few columns. */
static size_t column_splits(mcl_context *ctx, size_t m, size_t n)
{
    size_t target = 4 * (size_t)ctx->device.info.compute_units * 64 / (n < 64 ? n : 64);
    size_t splits = mcl_ceil_div(m, 64);
    return splits < target ? splits : target;
}

static mcl_status enqueue_column_sums(mcl_context *ctx, mcl_dtype dtype, const mcl_tensor *x, size_t m, size_t n,
                                      const mcl_tensor *out, mcl_tensor partials)
{
    size_t splits = column_splits(ctx, m, n), es = mcl_dtype_size(dtype);
    mcl_defines defines = {0};
    mcl_define(&defines, "MCL_DTYPE", dtype);
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, &mcl_family_gemm, "gemm/sums", &defines, "column_sums", &kernel));
    cl_ulong x_off = mcl_elem_offset(x, es), part_off = partials.offset / sizeof(float), m_l = m, n_l = n,
             rows_per_split = mcl_ceil_div(m, splits);
    mcl_arg args[] = {MCL_ARG(x->mem), MCL_ARG(x_off), MCL_ARG(partials.mem), MCL_ARG(part_off),
                      MCL_ARG(m_l),    MCL_ARG(n_l),   MCL_ARG(rows_per_split)};
    MCL_TRY(mcl_set_args(kernel, args, MCL_COUNT(args), "column_sums"));
    size_t local[2] = {64, 1}, global[2] = {mcl_round_up(n, 64), splits};
    MCL_TRY(mcl_enqueue(ctx, kernel, 2, global, local, "column_sums"));
    gemm_call sum = {.dtype = dtype, .m = 1, .n = n, .k = m, .batch = 1,
                     .c = {out->mem, mcl_elem_offset(out, es), n, 0, 0}};
    return enqueue_sum(ctx, &sum, partials, splits, 0);
}

mcl_status mcl_column_sums_step(mcl_walk *w, const char *step, mcl_dtype dtype, const mcl_tensor *x, size_t m,
                                size_t n, const mcl_tensor *out, int part)
{
    mcl_tensor partials = mcl_walk_part(w, part, column_splits(w->ctx, m, n) * n * sizeof(float));
    return w->enqueue ? mcl_walk_step(w, step, enqueue_column_sums(w->ctx, dtype, x, m, n, out, partials)) : MCL_OK;
}
