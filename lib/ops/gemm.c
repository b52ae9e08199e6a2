/* The fused operators' GEMM: choose tiles and splits -> enqueue (see gemm.h). */
#include "gemm.h"

#include "../runtime/error.h"
#include "../runtime/program.h"
#include "families.h"

#include <stdio.h>

#define FLAG_GAMMA 1u
#define FLAG_BETA 2u
#define FLAG_BIAS 4u
#define FLAG_PARTIAL 8u
#define FLAG_ACCUMULATE 16u

static size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

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

mcl_status mcl_gemm_plan(mcl_context *ctx, const gemm_call *g, gemm_plan *plan)
{
    const size_t shape[3] = {g->m, g->n, g->k};
    mcl_params params;
    MCL_TRY(mcl_params_lookup(ctx, &mcl_family_gemm, g->dtype, shape, &params));
    int *v = params.values;
    fit_tile(&v[GEMM_BM], &v[GEMM_TM], g->m);
    fit_tile(&v[GEMM_BN], &v[GEMM_TN], g->n);
    size_t bm = (size_t)v[GEMM_BM], bn = (size_t)v[GEMM_BN], bk = (size_t)v[GEMM_BK];
    /* split K when the tiles cannot fill SPLIT_WAVES work-groups per compute unit, into as many
     * splits as fit in that many (a second, partial round would only add a tail), keeping >= 4
     * steps per split */
    size_t tiles = ceil_div(g->m, bm) * ceil_div(g->n, bn) * g->batch;
    size_t target = (size_t)ctx->device.info.compute_units * (size_t)v[GEMM_SPLIT_WAVES];
    size_t splits = tiles < target ? target / tiles : 1;
    if (g->swiglu && g->swiglu->h) splits = 1; /* SwiGLU's backward needs the whole sum */
    size_t max_splits = ceil_div(g->k, 4 * bk);
    if (splits > max_splits) splits = max_splits;
    if (splits < 1) splits = 1;
    plan->bk = bk;
    plan->k_chunk = ceil_div(ceil_div(g->k, splits), bk) * bk;
    plan->splits = ceil_div(g->k, plan->k_chunk);
    plan->partial_bytes = plan->splits > 1 ? plan->splits * g->batch * g->m * g->n * sizeof(float) : 0;
    plan->local[0] = bn / (size_t)v[GEMM_TN];
    plan->local[1] = bm / (size_t)v[GEMM_TM];
    plan->global[0] = ceil_div(g->n, bn) * plan->local[0];
    plan->global[1] = ceil_div(g->m, bm) * plan->local[1];
    plan->global[2] = g->batch * plan->splits;
    char defines[200];
    mcl_params_defines(&params, defines, sizeof defines);
    int a_op = g->ln ? 1 : g->swiglu && g->swiglu->on_a ? 2 : 0, c_op = g->swiglu && g->swiglu->h ? 1 : 0;
    snprintf(plan->defines, sizeof plan->defines,
             "-DMCL_DTYPE=%d %s -DGEMM_TRANS_A=%d -DGEMM_TRANS_B=%d -DGEMM_A_OP=%d -DGEMM_C_OP=%d", (int)g->dtype,
             defines, g->a.trans != 0, g->b.trans != 0, a_op, c_op);
    return MCL_OK;
}

/* The reductions of split partials depend on the dtype alone, so every tile shape shares them. */
static void dtype_defines(mcl_dtype dtype, char *out, size_t cap) { snprintf(out, cap, "-DMCL_DTYPE=%d", (int)dtype); }

static mcl_status enqueue_sum(mcl_context *ctx, const gemm_call *g, cl_mem workspace, cl_ulong partial_off,
                              size_t slots, cl_uint flags)
{
    char defines[32];
    dtype_defines(g->dtype, defines, sizeof defines);
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, "gemm", defines, "gemm_sum_splits", &kernel));
    cl_ulong bias_off = g->bias_off, c_off = g->c.off, ldc = g->c.ld, c_batch = g->c.batch_stride, m = g->m,
             n = g->n;
    cl_uint slots_u = (cl_uint)slots;
    mcl_arg args[] = {MCL_ARG(workspace), MCL_ARG(partial_off), MCL_ARG(g->bias),  MCL_ARG(bias_off),
                      MCL_ARG(g->c.mem),  MCL_ARG(c_off),       MCL_ARG(ldc),      MCL_ARG(c_batch),
                      MCL_ARG(m),         MCL_ARG(n),           MCL_ARG(slots_u),  MCL_ARG(flags)};
    MCL_TRY(mcl_set_args(kernel, args, sizeof args / sizeof args[0], "gemm_sum_splits"));
    size_t local[3] = {64, 1, 1}, global[3] = {ceil_div(g->n, 64) * 64, g->m, g->batch};
    return mcl_enqueue(ctx, kernel, 3, global, local, "gemm_sum_splits");
}

static cl_uint bias_flags(const gemm_call *g)
{
    const gemm_layernorm *ln = g->ln;
    return (ln && ln->gamma ? FLAG_GAMMA : 0) | (ln && ln->beta ? FLAG_BETA : 0) | (g->bias ? FLAG_BIAS : 0);
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
    const gemm_swiglu *sw = g->swiglu && g->swiglu->on_a ? g->swiglu : NULL;
    size_t values[] = {g->a.off,
                       g->a.ld,
                       g->a.batch_stride,
                       ln && ln->gamma ? ln->gamma_off : 0,
                       ln && ln->beta ? ln->beta_off : 0,
                       sw ? sw->silu_shift : 0,
                       sw ? sw->gate_shift : 0};
    return alignment_of(values, sizeof values / sizeof values[0]);
}

static int b_alignment(const gemm_call *g)
{
    size_t values[] = {g->b.off, g->b.ld, g->b.batch_stride};
    return alignment_of(values, sizeof values / sizeof values[0]);
}

/* What the epilogue's vector accesses need aligned: C's placement, or the partials' (rows of n
 * floats from partial_off); the bias; SwiGLU's backward's h and halves. */
static int c_alignment(const gemm_call *g, size_t partial_off, cl_uint partial)
{
    const gemm_swiglu *sw = g->swiglu && g->swiglu->h ? g->swiglu : NULL;
    size_t values[] = {partial ? partial_off : g->c.off,
                       partial ? g->n : g->c.ld,
                       partial ? 0 : g->c.batch_stride,
                       g->bias ? g->bias_off : 0,
                       sw ? sw->h_off : 0,
                       sw ? sw->ldh : 0,
                       sw ? sw->silu_shift : 0,
                       sw ? sw->gate_shift : 0};
    return alignment_of(values, sizeof values / sizeof values[0]);
}

/* The GEMM kernel itself; `partial` non-zero: every split writes its slot's partials
 * (FLAG_PARTIAL, with FLAG_ACCUMULATE: adds to them). */
static mcl_status enqueue_gemm(mcl_context *ctx, const gemm_call *g, const gemm_plan *plan, cl_mem workspace,
                               size_t partial_off, cl_uint partial, size_t first_slot, size_t slots)
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
             bias_off = g->bias_off, c_off = g->c.off, ldc = g->c.ld, c_batch = g->c.batch_stride,
             part_off = partial_off / sizeof(float), m = g->m, n = g->n, k = g->k, k_chunk = plan->k_chunk;
    cl_uint splits = (cl_uint)plan->splits, slot_base = (cl_uint)first_slot, slots_u = (cl_uint)slots;
    cl_mem part = partial ? workspace : NULL;
    mcl_arg args[] = {MCL_ARG(g->a.mem),  MCL_ARG(a_off),      MCL_ARG(lda),       MCL_ARG(a_batch),
                      MCL_ARG(g->b.mem),  MCL_ARG(b_off),      MCL_ARG(ldb),       MCL_ARG(b_batch),
                      MCL_ARG(ln->mean),  MCL_ARG(mean_off),   MCL_ARG(ln->rstd),  MCL_ARG(rstd_off),
                      MCL_ARG(stat_batch), MCL_ARG(ln->gamma), MCL_ARG(gamma_off), MCL_ARG(ln->beta),
                      MCL_ARG(beta_off),  MCL_ARG(silu_shift), MCL_ARG(gate_shift), MCL_ARG(sw->h),
                      MCL_ARG(h_off),     MCL_ARG(ldh),        MCL_ARG(g->bias),   MCL_ARG(bias_off),
                      MCL_ARG(g->c.mem),  MCL_ARG(c_off),      MCL_ARG(ldc),       MCL_ARG(c_batch),
                      MCL_ARG(part),      MCL_ARG(part_off),   MCL_ARG(slot_base), MCL_ARG(slots_u),
                      MCL_ARG(m),         MCL_ARG(n),          MCL_ARG(k),         MCL_ARG(k_chunk),
                      MCL_ARG(splits),    MCL_ARG(flags)};
    /* alignment is the call's, not the plan's: pieces of one plan lie at different offsets */
    char defines[sizeof plan->defines + 60];
    snprintf(defines, sizeof defines, "%s -DGEMM_ALIGN_A=%d -DGEMM_ALIGN_B=%d -DGEMM_ALIGN_C=%d", plan->defines,
             a_alignment(g), b_alignment(g), c_alignment(g, part_off, partial));
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, "gemm", defines, "gemm", &kernel));
    MCL_TRY(mcl_set_args(kernel, args, sizeof args / sizeof args[0], "gemm"));
    const size_t local[3] = {plan->local[0], plan->local[1], 1};
    return mcl_enqueue(ctx, kernel, 3, plan->global, local, "gemm");
}

mcl_status mcl_gemm_enqueue(mcl_context *ctx, const gemm_call *g, const gemm_plan *plan, cl_mem workspace,
                            size_t partial_off)
{
    int split = plan->splits > 1;
    MCL_TRY(enqueue_gemm(ctx, g, plan, workspace, partial_off, split ? FLAG_PARTIAL : 0, 0, plan->splits));
    return split ? mcl_gemm_sum(ctx, g, workspace, partial_off, plan->splits) : MCL_OK;
}

mcl_status mcl_gemm_enqueue_piece(mcl_context *ctx, const gemm_call *g, const gemm_plan *plan, cl_mem workspace,
                                  size_t partial_off, size_t first_slot, size_t slots, int accumulate)
{
    cl_uint partial = FLAG_PARTIAL | (accumulate ? FLAG_ACCUMULATE : 0);
    gemm_plan piece = *plan; /* the plan's splits, this piece's k spread over all of them */
    piece.k_chunk = ceil_div(ceil_div(g->k, plan->splits), plan->bk) * plan->bk;
    return enqueue_gemm(ctx, g, &piece, workspace, partial_off, partial, first_slot, slots);
}

mcl_status mcl_gemm_sum(mcl_context *ctx, const gemm_call *g, cl_mem workspace, size_t partial_off, size_t slots)
{
    return enqueue_sum(ctx, g, workspace, partial_off / sizeof(float), slots, bias_flags(g));
}

/* Splits of at least 64 rows, up to a few per compute unit, so the columns' sums fill the
 * device even for few columns. */
static size_t column_splits(mcl_context *ctx, size_t m, size_t n)
{
    size_t target = 4 * (size_t)ctx->device.info.compute_units * 64 / (n < 64 ? n : 64);
    size_t splits = ceil_div(m, 64);
    return splits < target ? splits : target;
}

size_t mcl_column_sums_bytes(mcl_context *ctx, size_t m, size_t n)
{
    return column_splits(ctx, m, n) * n * sizeof(float);
}

mcl_status mcl_column_sums(mcl_context *ctx, mcl_dtype dtype, cl_mem x, size_t x_off, size_t m, size_t n,
                           cl_mem out, size_t out_off, cl_mem workspace, size_t partial_off)
{
    size_t splits = column_splits(ctx, m, n);
    char defines[32];
    dtype_defines(dtype, defines, sizeof defines);
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, "gemm", defines, "column_sums", &kernel));
    cl_ulong x_off_l = x_off, part_off = partial_off / sizeof(float), m_l = m, n_l = n,
             rows_per_split = ceil_div(m, splits);
    mcl_arg args[] = {MCL_ARG(x), MCL_ARG(x_off_l), MCL_ARG(workspace), MCL_ARG(part_off),
                      MCL_ARG(m_l), MCL_ARG(n_l), MCL_ARG(rows_per_split)};
    MCL_TRY(mcl_set_args(kernel, args, sizeof args / sizeof args[0], "column_sums"));
    size_t local[2] = {64, 1}, global[2] = {ceil_div(n, 64) * 64, splits};
    MCL_TRY(mcl_enqueue(ctx, kernel, 2, global, local, "column_sums"));
    gemm_call sum = {.dtype = dtype, .m = 1, .n = n, .k = m, .batch = 1, .c = {out, out_off, n, 0, 0}};
    return enqueue_sum(ctx, &sum, workspace, part_off, splits, 0);
}
