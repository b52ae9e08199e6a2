/* Triangle multiplicative update: validate -> choose parameters -> enqueue. GEMMs are
 * cl/gemm.cl (LayerNorm on the load; the k-sum batched over channels); the gates and layout
 * changes around them are cl/trimul.cl. */
#include "megacl.h"

#include "../runtime/error.h"
#include "../runtime/program.h"
#include "check.h"
#include "gemm.h"
#include "layernorm.h"

#include <math.h>
#include <stdio.h>

#define FLAG_MASK 1u
#define FLAG_INCOMING 2u

/* ---- validate --------------------------------------------------------------------------- */

static mcl_status validate_desc(const mcl_trimul_desc *d, const char *op)
{
    if (d->n == 0 || d->channels == 0 || d->hidden == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: n (%zu), channels (%zu) and hidden (%zu) must be positive", op,
                        d->n, d->channels, d->hidden);
    if (mcl_dtype_size(d->dtype) == 0)
        return mcl_fail(MCL_ERR_UNSUPPORTED_DTYPE, "%s: dtype %d is not f32, bf16 or f16", op, (int)d->dtype);
    if (d->n > UINT32_MAX || d->hidden > UINT32_MAX / 8 || d->channels > UINT32_MAX / 2)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: n (%zu), channels (%zu) or 4 x hidden (%zu) too large", op, d->n,
                        d->channels, d->hidden);
    if (!(d->eps >= 0.0f) || isinf(d->eps))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: eps must be finite and >= 0 (got %g)", op, (double)d->eps);
    if (d->direction != MCL_TRIMUL_OUTGOING && d->direction != MCL_TRIMUL_INCOMING)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: direction %d is not MCL_TRIMUL_OUTGOING or _INCOMING", op,
                        (int)d->direction);
    return MCL_OK;
}

static size_t width(const mcl_trimul_desc *d) { return 4 * d->hidden + d->channels; }

/* A tensor of the op's dtype: a pair tensor [N, N, cols] (pair set), or a [rows, cols] /
 * [rows] matrix or vector. */
static mcl_tensor_check pair(const char *name, const mcl_tensor *t, const mcl_trimul_desc *d, size_t cols,
                             int required, int is_output)
{
    return (mcl_tensor_check){name, t, required, is_output, mcl_dtype_size(d->dtype), mcl_dtype_name(d->dtype),
                              {d->n, d->n, cols}, cols ? 3 : 2, NULL};
}

static mcl_tensor_check matrix(const char *name, const mcl_tensor *t, const mcl_trimul_desc *d, size_t rows,
                               size_t cols, int required, int is_output)
{
    return (mcl_tensor_check){name, t, required, is_output, mcl_dtype_size(d->dtype), mcl_dtype_name(d->dtype),
                              {rows, cols}, cols ? 2 : 1, NULL};
}

static mcl_tensor_check stats(const char *name, const mcl_tensor *t, const mcl_trimul_desc *d, int is_output)
{
    return (mcl_tensor_check){name, t, 1, is_output, sizeof(float), "f32", {d->n, d->n}, 2, NULL};
}

static mcl_status validate_forward(mcl_context *ctx, const mcl_trimul_desc *d, const mcl_trimul_fwd_tensors *t)
{
    const char *op = "trimul_forward";
    if (!ctx || !d || !t) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL context, desc or tensors", op);
    MCL_TRY(validate_desc(d, op));
    size_t c = d->channels, h = d->hidden;
    mcl_tensor_check checks[] = {
        pair("z", &t->z, d, c, 1, 0),
        pair("mask", &t->mask, d, 0, 0, 0),
        matrix("ln_in_weight", &t->ln_in_weight, d, c, 0, 0, 0),
        matrix("ln_in_bias", &t->ln_in_bias, d, c, 0, 0, 0),
        matrix("w_in", &t->w_in, d, c, width(d), 1, 0),
        matrix("ln_out_weight", &t->ln_out_weight, d, h, 0, 0, 0),
        matrix("ln_out_bias", &t->ln_out_bias, d, h, 0, 0, 0),
        matrix("w_out", &t->w_out, d, h, c, 1, 0),
        pair("out", &t->out, d, c, 1, 1),
        pair("p", &t->p, d, width(d), 1, 1),
        pair("t", &t->t, d, h, 1, 1),
        stats("mean_in", &t->mean_in, d, 1),
        stats("rstd_in", &t->rstd_in, d, 1),
        stats("mean_out", &t->mean_out, d, 1),
        stats("rstd_out", &t->rstd_out, d, 1),
    };
    return mcl_check_tensors(ctx, op, checks, sizeof checks / sizeof checks[0]);
}

static mcl_status validate_backward(mcl_context *ctx, const mcl_trimul_desc *d, const mcl_trimul_bwd_tensors *t)
{
    const char *op = "trimul_backward";
    if (!ctx || !d || !t) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL context, desc or tensors", op);
    MCL_TRY(validate_desc(d, op));
    if (!mcl_has(&t->dz) && !mcl_has(&t->dln_in_weight) && !mcl_has(&t->dln_in_bias) && !mcl_has(&t->dw_in) &&
        !mcl_has(&t->dln_out_weight) && !mcl_has(&t->dln_out_bias) && !mcl_has(&t->dw_out))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: no output requested", op);
    size_t c = d->channels, h = d->hidden;
    mcl_tensor_check checks[] = {
        pair("z", &t->z, d, c, 1, 0),
        pair("mask", &t->mask, d, 0, 0, 0),
        matrix("ln_in_weight", &t->ln_in_weight, d, c, 0, 0, 0),
        matrix("ln_in_bias", &t->ln_in_bias, d, c, 0, 0, 0),
        matrix("w_in", &t->w_in, d, c, width(d), 1, 0),
        matrix("ln_out_weight", &t->ln_out_weight, d, h, 0, 0, 0),
        matrix("ln_out_bias", &t->ln_out_bias, d, h, 0, 0, 0),
        matrix("w_out", &t->w_out, d, h, c, 1, 0),
        pair("p", &t->p, d, width(d), 1, 0),
        pair("t", &t->t, d, h, 1, 0),
        stats("mean_in", &t->mean_in, d, 0),
        stats("rstd_in", &t->rstd_in, d, 0),
        stats("mean_out", &t->mean_out, d, 0),
        stats("rstd_out", &t->rstd_out, d, 0),
        pair("dout", &t->dout, d, c, 1, 0),
        pair("dz", &t->dz, d, c, 0, 1),
        matrix("dln_in_weight", &t->dln_in_weight, d, c, 0, 0, 1),
        matrix("dln_in_bias", &t->dln_in_bias, d, c, 0, 0, 1),
        matrix("dw_in", &t->dw_in, d, c, width(d), 0, 1),
        matrix("dln_out_weight", &t->dln_out_weight, d, h, 0, 0, 1),
        matrix("dln_out_bias", &t->dln_out_bias, d, h, 0, 0, 1),
        matrix("dw_out", &t->dw_out, d, h, c, 0, 1),
    };
    return mcl_check_tensors(ctx, op, checks, sizeof checks / sizeof checks[0]);
}

/* ---- choose parameters ------------------------------------------------------------------ */

static size_t elem(const mcl_tensor *t, size_t es) { return t->mem ? t->offset / es : 0; }
static size_t pairs(const mcl_trimul_desc *d) { return d->n * d->n; }

/* Workspace parts: LayerNorm partials first (the LayerNorm backward reads them from offset 0),
 * GEMM split partials, the channel-first operands A, B (and dA, dB), the channel-first triangle
 * sum (or its gradient), and [pairs, *] intermediates: o (then do), dLN(t), dt, dp, dLN(z). */
enum { PART_LN, PART_SPLITS, PART_A, PART_B, PART_DA, PART_DB, PART_TC, PART_O, PART_DTN, PART_DT, PART_DP,
       PART_DZN, PART_COUNT };

typedef struct tm_plan {
    size_t bytes[PART_COUNT];
    size_t off[PART_COUNT]; /* byte offsets, once the workspace is taken */
    cl_mem ws;
} tm_plan;

/* [pairs, cols] matrices (the op's tensors or workspace parts) as GEMM operands */
static gemm_matrix rows_of(cl_mem mem, size_t off, size_t cols, int trans)
{
    return (gemm_matrix){mem, off, cols, 0, trans};
}

static gemm_layernorm ln_of(const mcl_tensor *mean, const mcl_tensor *rstd, const mcl_tensor *w, const mcl_tensor *b,
                            size_t es)
{
    return (gemm_layernorm){mean->mem, rstd->mem, mean->offset / sizeof(float), rstd->offset / sizeof(float), 0,
                            w->mem, b->mem, elem(w, es), elem(b, es)};
}

/* The k-sum's batched GEMMs over channels: C_ch (N x N) = op(X_ch) op(Y_ch). */
static gemm_call batched(const mcl_trimul_desc *d, cl_mem ws, size_t x_off, int trans_x, size_t y_off, int trans_y,
                         size_t c_off)
{
    size_t n = d->n, nn = pairs(d);
    return (gemm_call){.dtype = d->dtype, .m = n, .n = n, .k = n, .batch = d->hidden,
                       .a = {ws, x_off, n, nn, trans_x}, .b = {ws, y_off, n, nn, trans_y}, .c = {ws, c_off, n, nn, 0}};
}

/* Plans a GEMM and widens the split partials' part to what it needs. */
static mcl_status reserve(mcl_context *ctx, const gemm_call *g, tm_plan *p)
{
    gemm_plan plan;
    MCL_TRY(mcl_gemm_plan(ctx, g, &plan));
    if (plan.partial_bytes > p->bytes[PART_SPLITS]) p->bytes[PART_SPLITS] = plan.partial_bytes;
    return MCL_OK;
}

static mcl_status run_gemm(mcl_context *ctx, const gemm_call *g, const tm_plan *p)
{
    gemm_plan plan;
    MCL_TRY(mcl_gemm_plan(ctx, g, &plan));
    return mcl_gemm_enqueue(ctx, g, &plan, p->ws, p->off[PART_SPLITS]);
}

/* ---- the elementwise kernels ------------------------------------------------------------ */

static mcl_status run_elementwise(mcl_context *ctx, const mcl_trimul_desc *d, const char *name, const mcl_arg *args,
                                  size_t nargs, size_t count)
{
    char defines[32];
    snprintf(defines, sizeof defines, "-DMCL_DTYPE=%d", (int)d->dtype);
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, "trimul", defines, name, &kernel));
    MCL_TRY(mcl_set_args(kernel, args, nargs, name));
    size_t local = 256, global = (count + local - 1) / local * local;
    return mcl_enqueue(ctx, kernel, 1, &global, &local, name);
}

static cl_uint gate_flags(const mcl_trimul_desc *d, const mcl_tensor *mask)
{
    return (mcl_has(mask) ? FLAG_MASK : 0) | (d->direction == MCL_TRIMUL_INCOMING ? FLAG_INCOMING : 0);
}

/* The channel-first operands A and B from p (and the mask). */
static mcl_status gates(mcl_context *ctx, const mcl_trimul_desc *d, const mcl_tensor *p, const mcl_tensor *mask,
                        const tm_plan *pl)
{
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong p_off = elem(p, es), mask_off = elem(mask, es), a_off = pl->off[PART_A] / es,
             b_off = pl->off[PART_B] / es;
    cl_uint n = (cl_uint)d->n, h = (cl_uint)d->hidden, w = (cl_uint)width(d), flags = gate_flags(d, mask);
    mcl_arg args[] = {MCL_ARG(p->mem), MCL_ARG(p_off), MCL_ARG(mask->mem), MCL_ARG(mask_off),
                      MCL_ARG(pl->ws), MCL_ARG(a_off), MCL_ARG(pl->ws),    MCL_ARG(b_off),
                      MCL_ARG(n),      MCL_ARG(h),     MCL_ARG(w),         MCL_ARG(flags)};
    return run_elementwise(ctx, d, "trimul_gates", args, sizeof args / sizeof args[0], pairs(d) * d->hidden);
}

/* dp's first 4h columns from dA and dB. */
static mcl_status gates_backward(mcl_context *ctx, const mcl_trimul_desc *d, const mcl_trimul_bwd_tensors *t,
                                 const tm_plan *pl)
{
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong p_off = elem(&t->p, es), mask_off = elem(&t->mask, es), da_off = pl->off[PART_DA] / es,
             db_off = pl->off[PART_DB] / es, dp_off = pl->off[PART_DP] / es;
    cl_uint n = (cl_uint)d->n, h = (cl_uint)d->hidden, w = (cl_uint)width(d), flags = gate_flags(d, &t->mask);
    mcl_arg args[] = {MCL_ARG(t->p.mem), MCL_ARG(p_off),  MCL_ARG(t->mask.mem), MCL_ARG(mask_off),
                      MCL_ARG(pl->ws),   MCL_ARG(da_off), MCL_ARG(pl->ws),      MCL_ARG(db_off),
                      MCL_ARG(pl->ws),   MCL_ARG(dp_off), MCL_ARG(n),           MCL_ARG(h),
                      MCL_ARG(w),        MCL_ARG(flags)};
    return run_elementwise(ctx, d, "trimul_gates_backward", args, sizeof args / sizeof args[0],
                           pairs(d) * d->hidden);
}

/* Between the channel-first [h, pairs] and channels-last [pairs, h] layouts. */
static mcl_status permute(mcl_context *ctx, const mcl_trimul_desc *d, cl_mem src, size_t src_off, cl_mem dst,
                          size_t dst_off, int to_first)
{
    cl_ulong so = src_off, dof = dst_off, np = pairs(d);
    cl_uint h = (cl_uint)d->hidden, first = (cl_uint)to_first;
    mcl_arg args[] = {MCL_ARG(src), MCL_ARG(so), MCL_ARG(dst), MCL_ARG(dof), MCL_ARG(np), MCL_ARG(h), MCL_ARG(first)};
    return run_elementwise(ctx, d, "trimul_permute", args, sizeof args / sizeof args[0], pairs(d) * d->hidden);
}

/* out = o * sigmoid(g), or backward: do in place of o, and dg into dp's last columns when dp
 * is wanted (want_dp). */
static mcl_status out_gate(mcl_context *ctx, const mcl_trimul_desc *d, const mcl_tensor *p, const tm_plan *pl,
                           const mcl_tensor *out, const mcl_tensor *dout, int want_dp)
{
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong o_off = pl->off[PART_O] / es, p_off = elem(p, es), np = pairs(d);
    cl_uint c = (cl_uint)d->channels, w = (cl_uint)width(d);
    if (out) {
        cl_ulong out_off = elem(out, es);
        mcl_arg args[] = {MCL_ARG(pl->ws), MCL_ARG(o_off), MCL_ARG(p->mem), MCL_ARG(p_off), MCL_ARG(out->mem),
                          MCL_ARG(out_off), MCL_ARG(np),   MCL_ARG(c),      MCL_ARG(w)};
        return run_elementwise(ctx, d, "trimul_out_gate", args, sizeof args / sizeof args[0], np * c);
    }
    cl_ulong dout_off = elem(dout, es), dp_off = pl->off[PART_DP] / es;
    cl_uint want_dg = (cl_uint)want_dp;
    mcl_arg args[] = {MCL_ARG(pl->ws),    MCL_ARG(o_off),    MCL_ARG(p->mem), MCL_ARG(p_off),
                      MCL_ARG(dout->mem), MCL_ARG(dout_off), MCL_ARG(pl->ws), MCL_ARG(dp_off),
                      MCL_ARG(np),        MCL_ARG(c),        MCL_ARG(w),      MCL_ARG(want_dg)};
    return run_elementwise(ctx, d, "trimul_out_gate_backward", args, sizeof args / sizeof args[0], np * c);
}

/* ---- the GEMMs -------------------------------------------------------------------------- */

/* p = LN(z) W_in */
static gemm_call p_gemm(const mcl_trimul_desc *d, const mcl_tensor *z, const mcl_tensor *w_in, const mcl_tensor *p,
                        const gemm_layernorm *ln)
{
    size_t es = mcl_dtype_size(d->dtype), c = d->channels;
    return (gemm_call){.dtype = d->dtype, .m = pairs(d), .n = width(d), .k = c, .batch = 1,
                       .a = rows_of(z->mem, elem(z, es), c, 0), .b = rows_of(w_in->mem, elem(w_in, es), width(d), 0),
                       .c = rows_of(p->mem, elem(p, es), width(d), 0), .ln = ln};
}

/* o = LN(t) W_out into the workspace */
static gemm_call o_gemm(const mcl_trimul_desc *d, const mcl_tensor *t, const mcl_tensor *w_out, const tm_plan *pl,
                        const gemm_layernorm *ln)
{
    size_t es = mcl_dtype_size(d->dtype), c = d->channels, h = d->hidden;
    return (gemm_call){.dtype = d->dtype, .m = pairs(d), .n = c, .k = h, .batch = 1,
                       .a = rows_of(t->mem, elem(t, es), h, 0), .b = rows_of(w_out->mem, elem(w_out, es), c, 0),
                       .c = rows_of(pl->ws, pl->off[PART_O] / es, c, 0), .ln = ln};
}

/* dX = dY W^T for a Linear of weight w [k_in, k_out]: dY [pairs, k_out] -> dX [pairs, k_in] */
static gemm_call dx_gemm(const mcl_trimul_desc *d, cl_mem dy, size_t dy_off, const mcl_tensor *w, size_t k_in,
                         size_t k_out, cl_mem dx, size_t dx_off)
{
    size_t es = mcl_dtype_size(d->dtype);
    return (gemm_call){.dtype = d->dtype, .m = pairs(d), .n = k_in, .k = k_out, .batch = 1,
                       .a = rows_of(dy, dy_off, k_out, 0), .b = rows_of(w->mem, elem(w, es), k_out, 1),
                       .c = rows_of(dx, dx_off, k_in, 0)};
}

/* dW = LN(x)^T dY for x [pairs, k_in] */
static gemm_call dw_gemm(const mcl_trimul_desc *d, const mcl_tensor *x, size_t k_in, cl_mem dy, size_t dy_off,
                         size_t k_out, const mcl_tensor *dw, const gemm_layernorm *ln)
{
    size_t es = mcl_dtype_size(d->dtype);
    return (gemm_call){.dtype = d->dtype, .m = k_in, .n = k_out, .k = pairs(d), .batch = 1,
                       .a = rows_of(x->mem, elem(x, es), k_in, 1), .b = rows_of(dy, dy_off, k_out, 0),
                       .c = rows_of(dw->mem, elem(dw, es), k_out, 0), .ln = ln};
}

/* ---- plans ------------------------------------------------------------------------------ */

static mcl_status plan_forward(mcl_context *ctx, const mcl_trimul_desc *d, const mcl_trimul_fwd_tensors *t,
                               tm_plan *p)
{
    size_t es = mcl_dtype_size(d->dtype), op = pairs(d) * d->hidden * es;
    *p = (tm_plan){0};
    p->bytes[PART_A] = p->bytes[PART_B] = p->bytes[PART_TC] = op;
    p->bytes[PART_O] = pairs(d) * d->channels * es;
    const gemm_layernorm ln = {0};
    gemm_call g1 = p_gemm(d, &t->z, &t->w_in, &t->p, &ln), g2 = batched(d, NULL, 0, 0, 0, 1, 0),
              g3 = o_gemm(d, &t->t, &t->w_out, p, &ln);
    MCL_TRY(reserve(ctx, &g1, p));
    MCL_TRY(reserve(ctx, &g2, p));
    return reserve(ctx, &g3, p);
}

typedef struct bwd_wants {
    int in_side;  /* dz, dln_in_*, dw_in: everything back to z */
    int dt;       /* dLN(t) and the LayerNorm backward of t */
} bwd_wants;

static bwd_wants wants(const mcl_trimul_bwd_tensors *t)
{
    int in_side = mcl_has(&t->dz) || mcl_has(&t->dln_in_weight) || mcl_has(&t->dln_in_bias) || mcl_has(&t->dw_in);
    return (bwd_wants){in_side, in_side || mcl_has(&t->dln_out_weight) || mcl_has(&t->dln_out_bias)};
}

static mcl_status plan_backward(mcl_context *ctx, const mcl_trimul_desc *d, const mcl_trimul_bwd_tensors *t,
                                tm_plan *p)
{
    size_t es = mcl_dtype_size(d->dtype), np = pairs(d), c = d->channels, h = d->hidden;
    bwd_wants w = wants(t);
    *p = (tm_plan){0};
    p->bytes[PART_O] = np * c * es;
    const gemm_layernorm ln = {0};
    gemm_call o = o_gemm(d, &t->t, &t->w_out, p, &ln);
    MCL_TRY(reserve(ctx, &o, p));
    if (mcl_has(&t->dw_out)) {
        gemm_call g = dw_gemm(d, &t->t, h, NULL, 0, c, &t->dw_out, &ln);
        MCL_TRY(reserve(ctx, &g, p));
    }
    size_t ln_out = 0, ln_in = 0;
    if (w.dt) {
        p->bytes[PART_DTN] = np * h * es;
        gemm_call g = dx_gemm(d, NULL, 0, &t->w_out, h, c, NULL, 0);
        MCL_TRY(reserve(ctx, &g, p));
        mcl_layernorm_desc lnd = {np, h, d->dtype, d->eps};
        if (mcl_has(&t->dln_out_weight) || mcl_has(&t->dln_out_bias))
            MCL_TRY(mcl_layernorm_backward_workspace_size(ctx, &lnd, &ln_out));
    }
    if (w.in_side) {
        p->bytes[PART_DT] = p->bytes[PART_TC] = p->bytes[PART_A] = p->bytes[PART_B] = p->bytes[PART_DA] =
            p->bytes[PART_DB] = np * h * es;
        p->bytes[PART_DP] = np * width(d) * es;
        p->bytes[PART_DZN] = np * c * es;
        gemm_call g1 = batched(d, NULL, 0, 0, 0, 0, 0), g2 = batched(d, NULL, 0, 1, 0, 0, 0),
                  g3 = dx_gemm(d, NULL, 0, &t->w_in, c, width(d), NULL, 0),
                  g4 = dw_gemm(d, &t->z, c, NULL, 0, width(d), &t->dw_in, &ln);
        MCL_TRY(reserve(ctx, &g1, p));
        MCL_TRY(reserve(ctx, &g2, p));
        MCL_TRY(reserve(ctx, &g3, p));
        if (mcl_has(&t->dw_in)) MCL_TRY(reserve(ctx, &g4, p));
        mcl_layernorm_desc lnd = {np, c, d->dtype, d->eps};
        if (mcl_has(&t->dln_in_weight) || mcl_has(&t->dln_in_bias))
            MCL_TRY(mcl_layernorm_backward_workspace_size(ctx, &lnd, &ln_in));
    }
    p->bytes[PART_LN] = ln_out > ln_in ? ln_out : ln_in;
    return MCL_OK;
}

static mcl_status take_workspace(mcl_context *ctx, tm_plan *p)
{
    return mcl_workspace_parts(ctx, p->bytes, PART_COUNT, &p->ws, p->off);
}

/* ---- enqueue ---------------------------------------------------------------------------- */

static mcl_status enqueue_forward(mcl_context *ctx, const mcl_trimul_desc *d, const mcl_trimul_fwd_tensors *t,
                                  tm_plan *p)
{
    size_t es = mcl_dtype_size(d->dtype), np = pairs(d);
    MCL_TRY(take_workspace(ctx, p));
    mcl_layernorm_desc ln_in = {np, d->channels, d->dtype, d->eps}, ln_out = {np, d->hidden, d->dtype, d->eps};
    MCL_TRY(mcl_layernorm_stats_into(ctx, &ln_in, &t->z, &t->mean_in, &t->rstd_in));
    gemm_layernorm lin = ln_of(&t->mean_in, &t->rstd_in, &t->ln_in_weight, &t->ln_in_bias, es);
    gemm_call g = p_gemm(d, &t->z, &t->w_in, &t->p, &lin);
    MCL_TRY(run_gemm(ctx, &g, p));
    MCL_TRY(gates(ctx, d, &t->p, &t->mask, p));
    g = batched(d, p->ws, p->off[PART_A] / es, 0, p->off[PART_B] / es, 1, p->off[PART_TC] / es);
    MCL_TRY(run_gemm(ctx, &g, p));
    MCL_TRY(permute(ctx, d, p->ws, p->off[PART_TC] / es, t->t.mem, elem(&t->t, es), 0));
    MCL_TRY(mcl_layernorm_stats_into(ctx, &ln_out, &t->t, &t->mean_out, &t->rstd_out));
    gemm_layernorm lout = ln_of(&t->mean_out, &t->rstd_out, &t->ln_out_weight, &t->ln_out_bias, es);
    g = o_gemm(d, &t->t, &t->w_out, p, &lout);
    MCL_TRY(run_gemm(ctx, &g, p));
    return out_gate(ctx, d, &t->p, p, &t->out, NULL, 0);
}

/* From dout back to dLN(t)'s LayerNorm: do (in PART_O), dg (dp's last columns), dW_out, dt. */
static mcl_status backward_out_side(mcl_context *ctx, const mcl_trimul_desc *d, const mcl_trimul_bwd_tensors *t,
                                    const tm_plan *p, bwd_wants w)
{
    size_t es = mcl_dtype_size(d->dtype), np = pairs(d), c = d->channels, h = d->hidden;
    gemm_layernorm lout = ln_of(&t->mean_out, &t->rstd_out, &t->ln_out_weight, &t->ln_out_bias, es);
    gemm_call g = o_gemm(d, &t->t, &t->w_out, p, &lout);
    MCL_TRY(run_gemm(ctx, &g, p));
    MCL_TRY(out_gate(ctx, d, &t->p, p, NULL, &t->dout, w.in_side));
    if (mcl_has(&t->dw_out)) {
        g = dw_gemm(d, &t->t, h, p->ws, p->off[PART_O] / es, c, &t->dw_out, &lout);
        MCL_TRY(run_gemm(ctx, &g, p));
    }
    if (!w.dt) return MCL_OK;
    g = dx_gemm(d, p->ws, p->off[PART_O] / es, &t->w_out, h, c, p->ws, p->off[PART_DTN] / es);
    MCL_TRY(run_gemm(ctx, &g, p));
    mcl_layernorm_desc lnd = {np, h, d->dtype, d->eps};
    mcl_tensor dt = w.in_side ? (mcl_tensor){p->ws, p->off[PART_DT]} : (mcl_tensor){0};
    mcl_layernorm_bwd_tensors lt = {.x = t->t, .weight = t->ln_out_weight, .mean = t->mean_out,
                                    .rstd = t->rstd_out, .dy = {p->ws, p->off[PART_DTN]}, .dx = dt,
                                    .dweight = t->dln_out_weight, .dbias = t->dln_out_bias};
    return mcl_layernorm_backward_into(ctx, &lnd, &lt, p->ws);
}

/* From dt back to z: dA, dB, dp's gate columns, dW_in, the LayerNorm backward of z. */
static mcl_status backward_in_side(mcl_context *ctx, const mcl_trimul_desc *d, const mcl_trimul_bwd_tensors *t,
                                   const tm_plan *p)
{
    size_t es = mcl_dtype_size(d->dtype), np = pairs(d), c = d->channels;
    size_t tc = p->off[PART_TC] / es, a = p->off[PART_A] / es, b = p->off[PART_B] / es;
    MCL_TRY(permute(ctx, d, p->ws, p->off[PART_DT] / es, p->ws, tc, 1));
    MCL_TRY(gates(ctx, d, &t->p, &t->mask, p));
    gemm_call g = batched(d, p->ws, tc, 0, b, 0, p->off[PART_DA] / es); /* dA = dT B */
    MCL_TRY(run_gemm(ctx, &g, p));
    g = batched(d, p->ws, tc, 1, a, 0, p->off[PART_DB] / es); /* dB = dT^T A */
    MCL_TRY(run_gemm(ctx, &g, p));
    MCL_TRY(gates_backward(ctx, d, t, p));
    gemm_layernorm lin = ln_of(&t->mean_in, &t->rstd_in, &t->ln_in_weight, &t->ln_in_bias, es);
    if (mcl_has(&t->dw_in)) {
        g = dw_gemm(d, &t->z, c, p->ws, p->off[PART_DP] / es, width(d), &t->dw_in, &lin);
        MCL_TRY(run_gemm(ctx, &g, p));
    }
    if (!mcl_has(&t->dz) && !mcl_has(&t->dln_in_weight) && !mcl_has(&t->dln_in_bias)) return MCL_OK;
    g = dx_gemm(d, p->ws, p->off[PART_DP] / es, &t->w_in, c, width(d), p->ws, p->off[PART_DZN] / es);
    MCL_TRY(run_gemm(ctx, &g, p));
    mcl_layernorm_desc lnd = {np, c, d->dtype, d->eps};
    mcl_layernorm_bwd_tensors lt = {.x = t->z, .weight = t->ln_in_weight, .mean = t->mean_in, .rstd = t->rstd_in,
                                    .dy = {p->ws, p->off[PART_DZN]}, .dx = t->dz, .dweight = t->dln_in_weight,
                                    .dbias = t->dln_in_bias};
    return mcl_layernorm_backward_into(ctx, &lnd, &lt, p->ws);
}

/* ---- public entry points ---------------------------------------------------------------- */

mcl_status mcl_trimul_forward(mcl_context *ctx, const mcl_trimul_desc *desc, const mcl_trimul_fwd_tensors *tensors,
                              cl_event *event)
{
    MCL_TRY(validate_forward(ctx, desc, tensors));
    tm_plan plan;
    MCL_TRY(plan_forward(ctx, desc, tensors, &plan));
    MCL_TRY(enqueue_forward(ctx, desc, tensors, &plan));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

mcl_status mcl_trimul_backward(mcl_context *ctx, const mcl_trimul_desc *desc, const mcl_trimul_bwd_tensors *tensors,
                               cl_event *event)
{
    MCL_TRY(validate_backward(ctx, desc, tensors));
    tm_plan plan;
    MCL_TRY(plan_backward(ctx, desc, tensors, &plan));
    MCL_TRY(take_workspace(ctx, &plan));
    bwd_wants w = wants(tensors);
    MCL_TRY(backward_out_side(ctx, desc, tensors, &plan, w));
    if (w.in_side) MCL_TRY(backward_in_side(ctx, desc, tensors, &plan));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

mcl_status mcl_trimul_workspace_size(mcl_context *ctx, const mcl_trimul_desc *desc, size_t *forward_bytes,
                                     size_t *backward_bytes)
{
    if (!ctx || !desc || !forward_bytes || !backward_bytes)
        return mcl_fail(MCL_ERR_NULL_POINTER, "trimul_workspace_size: NULL argument");
    MCL_TRY(validate_desc(desc, "trimul_workspace_size"));
    /* every output requested, so the most the backward takes; planning only tests whether a
     * tensor is given, so a non-NULL placeholder handle stands for each (never dereferenced) */
    const mcl_tensor any = {(cl_mem)1, 0};
    mcl_trimul_fwd_tensors f = {.ln_in_weight = any, .ln_out_weight = any};
    mcl_trimul_bwd_tensors b = {.dz = any, .dln_in_weight = any, .dw_in = any, .dln_out_weight = any, .dw_out = any};
    tm_plan p;
    MCL_TRY(plan_forward(ctx, desc, &f, &p));
    *forward_bytes = mcl_workspace_parts_size(p.bytes, PART_COUNT);
    MCL_TRY(plan_backward(ctx, desc, &b, &p));
    *backward_bytes = mcl_workspace_parts_size(p.bytes, PART_COUNT);
    return MCL_OK;
}
