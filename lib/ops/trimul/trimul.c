/* Triangle multiplicative update: validate -> choose parameters -> enqueue, as steps of a walk.
 * GEMMs are the gemm family's (LayerNorm on the load; the k-sum batched over channels); the
 * gates and layout changes around them are the trimul family's (cl/trimul/trimul.cl). */
#include "trimul.h"

#include "ops/common/check.h"
#include "ops/common/walk.h"
#include "ops/gemm/gemm.h"
#include "ops/layernorm/layernorm.h"
#include "runtime/error.h"
#include "runtime/params.h"
#include "runtime/program.h"

#define FLAG_MASK 1u
#define FLAG_INCOMING 2u

/* ---- validate --------------------------------------------------------------------------- */

static mcl_status validate_desc(const mcl_trimul_desc *d, const char *op)
{
    if (d->n == 0 || d->channels == 0 || d->hidden == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: n (%zu), channels (%zu) and hidden (%zu) must be positive", op,
                        d->n, d->channels, d->hidden);
    MCL_TRY(mcl_check_dtype(d->dtype, op));
    if (d->n > UINT32_MAX || d->hidden > UINT32_MAX / 8 || d->channels > UINT32_MAX / 2)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: n (%zu), channels (%zu) or 4 x hidden (%zu) too large", op, d->n,
                        d->channels, d->hidden);
    MCL_TRY(mcl_check_eps(d->eps, op));
    return mcl_check_either((int)d->direction, MCL_TRIMUL_OUTGOING, MCL_TRIMUL_INCOMING, op, "direction",
                            "MCL_TRIMUL_OUTGOING or _INCOMING");
}

static size_t width(const mcl_trimul_desc *d) { return 4 * d->hidden + d->channels; }
static size_t pairs(const mcl_trimul_desc *d) { return d->n * d->n; }

/* pair tensors [N, N, cols] (PAIR0: [N, N]), vectors and matrices of the op's dtype, statistics */
#define PAIR(name, t, role, cols) MCL_TENSOR(name, t, d->dtype, role, d->n, d->n, cols)
#define PAIR0(name, t, role) MCL_TENSOR(name, t, d->dtype, role, d->n, d->n)
#define OF(name, t, role, ...) MCL_TENSOR(name, t, d->dtype, role, __VA_ARGS__)
#define STATS(name, t, role) MCL_TENSOR(name, t, MCL_F32, role, d->n, d->n)

/* The tensors both passes read. */
#define INPUTS(t)                                                                                \
    PAIR("z", &(t)->z, MCL_REQUIRED_IN, d->channels), PAIR0("mask", &(t)->mask, MCL_OPTIONAL_IN), \
    OF("ln_in_weight", &(t)->ln_in_weight, MCL_OPTIONAL_IN, d->channels),                        \
    OF("ln_in_bias", &(t)->ln_in_bias, MCL_OPTIONAL_IN, d->channels),                            \
    OF("w_in", &(t)->w_in, MCL_REQUIRED_IN, d->channels, width(d)),                              \
    OF("ln_out_weight", &(t)->ln_out_weight, MCL_OPTIONAL_IN, d->hidden),                        \
    OF("ln_out_bias", &(t)->ln_out_bias, MCL_OPTIONAL_IN, d->hidden),                            \
    OF("w_out", &(t)->w_out, MCL_REQUIRED_IN, d->hidden, d->channels)
/* What the forward saves for the backward: p = LN(z) W_in, the gated product t and both
 * LayerNorms' row statistics. */
#define SAVED(t, role)                                                                           \
    PAIR("p", &(t)->p, role, width(d)), PAIR("t", &(t)->t, role, d->hidden),                     \
    STATS("mean_in", &(t)->mean_in, role), STATS("rstd_in", &(t)->rstd_in, role),                \
    STATS("mean_out", &(t)->mean_out, role), STATS("rstd_out", &(t)->rstd_out, role)

/* ---- choose parameters ------------------------------------------------------------------ */

/* What the backward is asked for: a sizing pass over no tensors (the workspace size of every
 * output) reads the same. */
typedef struct tm_wants {
    int dz, dln_in, dw_in, dln_out, dw_out;
} tm_wants;

static tm_wants wants_of(const mcl_trimul_bwd_tensors *t)
{
    return (tm_wants){mcl_has(&t->dz), mcl_has(&t->dln_in_weight) || mcl_has(&t->dln_in_bias), mcl_has(&t->dw_in),
                      mcl_has(&t->dln_out_weight) || mcl_has(&t->dln_out_bias), mcl_has(&t->dw_out)};
}

static int in_side(tm_wants w) { return w.dz || w.dln_in || w.dw_in; } /* everything back to z */
static int want_dt(tm_wants w) { return in_side(w) || w.dln_out; }     /* dLN(t), the LayerNorm backward of t */

/* Workspace parts: LayerNorm partials, GEMM split partials, the channel-first operands A, B (and
 * dA, dB), the channel-first triangle sum (or its gradient), and [pairs, *] intermediates: o
 * (then do), dLN(t), dt, dp, dLN(z). */
enum { PART_LN, PART_SPLITS, PART_A, PART_B, PART_DA, PART_DB, PART_TC, PART_O, PART_DTN, PART_DT, PART_DP,
       PART_DZN };

static mcl_tensor pair_part(mcl_walk *w, const mcl_trimul_desc *d, int part, size_t cols)
{
    return mcl_walk_part(w, part, pairs(d) * cols * mcl_dtype_size(d->dtype));
}

/* ---- the elementwise kernels ------------------------------------------------------------ */

static mcl_status enqueue_elementwise(mcl_context *ctx, const mcl_trimul_desc *d, const char *name,
                                      const mcl_arg *args, size_t nargs, size_t count)
{
    const size_t shape[3] = {d->n, d->channels, d->hidden};
    tm_params params;
    MCL_TRY(mcl_params_lookup(ctx, &mcl_family_trimul, d->dtype, shape, &params, NULL));
    mcl_defines defines = {0};
    mcl_define(&defines, "MCL_DTYPE", d->dtype);
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, &mcl_family_trimul, "trimul/trimul", &defines, name, &kernel));
    MCL_TRY(mcl_set_args(kernel, args, nargs, name));
    size_t local = (size_t)params.wg, global = mcl_round_up(count, local);
    return mcl_enqueue(ctx, kernel, 1, &global, &local, name);
}

/* An elementwise kernel over `count` elements as a step of the walk. */
static mcl_status run_elementwise(mcl_walk *w, const mcl_trimul_desc *d, const char *name, const mcl_arg *args,
                                  size_t nargs, size_t count)
{
    return w->enqueue ? mcl_walk_step(w, name, enqueue_elementwise(w->ctx, d, name, args, nargs, count)) : MCL_OK;
}

static cl_uint gate_flags(const mcl_trimul_desc *d, const mcl_tensor *mask)
{
    return (mcl_has(mask) ? FLAG_MASK : 0) | (d->direction == MCL_TRIMUL_INCOMING ? FLAG_INCOMING : 0);
}

/* The channel-first operands A and B from p (and the mask). */
static mcl_status gates(mcl_walk *w, const mcl_trimul_desc *d, const mcl_tensor *p, const mcl_tensor *mask,
                        const mcl_tensor *a, const mcl_tensor *b)
{
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong p_off = mcl_elem_offset(p, es), mask_off = mcl_elem_offset(mask, es), a_off = mcl_elem_offset(a, es),
             b_off = mcl_elem_offset(b, es);
    cl_uint n = (cl_uint)d->n, h = (cl_uint)d->hidden, wd = (cl_uint)width(d), flags = gate_flags(d, mask);
    mcl_arg args[] = {MCL_ARG(p->mem), MCL_ARG(p_off), MCL_ARG(mask->mem), MCL_ARG(mask_off),
                      MCL_ARG(a->mem), MCL_ARG(a_off), MCL_ARG(b->mem),    MCL_ARG(b_off),
                      MCL_ARG(n),      MCL_ARG(h),     MCL_ARG(wd),        MCL_ARG(flags)};
    return run_elementwise(w, d, "trimul_gates", args, MCL_COUNT(args), pairs(d) * d->hidden);
}

/* dp's first 4h columns from dA and dB. */
static mcl_status gates_backward(mcl_walk *w, const mcl_trimul_desc *d, const mcl_trimul_bwd_tensors *t,
                                 const mcl_tensor *da, const mcl_tensor *db, const mcl_tensor *dp)
{
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong p_off = mcl_elem_offset(&t->p, es), mask_off = mcl_elem_offset(&t->mask, es),
             da_off = mcl_elem_offset(da, es), db_off = mcl_elem_offset(db, es), dp_off = mcl_elem_offset(dp, es);
    cl_uint n = (cl_uint)d->n, h = (cl_uint)d->hidden, wd = (cl_uint)width(d), flags = gate_flags(d, &t->mask);
    mcl_arg args[] = {MCL_ARG(t->p.mem), MCL_ARG(p_off),  MCL_ARG(t->mask.mem), MCL_ARG(mask_off),
                      MCL_ARG(da->mem),  MCL_ARG(da_off), MCL_ARG(db->mem),     MCL_ARG(db_off),
                      MCL_ARG(dp->mem),  MCL_ARG(dp_off), MCL_ARG(n),           MCL_ARG(h),
                      MCL_ARG(wd),       MCL_ARG(flags)};
    return run_elementwise(w, d, "trimul_gates_backward", args, MCL_COUNT(args), pairs(d) * d->hidden);
}

/* Between the channel-first [h, pairs] and channels-last [pairs, h] layouts. */
static mcl_status permute(mcl_walk *w, const mcl_trimul_desc *d, const mcl_tensor *src, const mcl_tensor *dst,
                          int to_first)
{
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong so = mcl_elem_offset(src, es), dof = mcl_elem_offset(dst, es), np = pairs(d);
    cl_uint h = (cl_uint)d->hidden, first = (cl_uint)to_first;
    mcl_arg args[] = {MCL_ARG(src->mem), MCL_ARG(so), MCL_ARG(dst->mem), MCL_ARG(dof),
                      MCL_ARG(np),       MCL_ARG(h),  MCL_ARG(first)};
    return run_elementwise(w, d, "trimul_permute", args, MCL_COUNT(args), pairs(d) * d->hidden);
}

/* out = o * sigmoid(g). */
static mcl_status out_gate(mcl_walk *w, const mcl_trimul_desc *d, const mcl_tensor *o, const mcl_tensor *p,
                           const mcl_tensor *out)
{
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong o_off = mcl_elem_offset(o, es), p_off = mcl_elem_offset(p, es), out_off = mcl_elem_offset(out, es),
             np = pairs(d);
    cl_uint c = (cl_uint)d->channels, wd = (cl_uint)width(d);
    mcl_arg args[] = {MCL_ARG(o->mem),   MCL_ARG(o_off), MCL_ARG(p->mem), MCL_ARG(p_off), MCL_ARG(out->mem),
                      MCL_ARG(out_off),  MCL_ARG(np),    MCL_ARG(c),      MCL_ARG(wd)};
    return run_elementwise(w, d, "trimul_out_gate", args, MCL_COUNT(args), np * d->channels);
}

/* do = dout * sigmoid(g) in place of o, and dg into dp's last columns when dp is given. */
static mcl_status out_gate_backward(mcl_walk *w, const mcl_trimul_desc *d, const mcl_tensor *o,
                                    const mcl_tensor *p, const mcl_tensor *dout, const mcl_tensor *dp)
{
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong o_off = mcl_elem_offset(o, es), p_off = mcl_elem_offset(p, es), dout_off = mcl_elem_offset(dout, es),
             dp_off = mcl_elem_offset(dp, es), np = pairs(d);
    cl_uint c = (cl_uint)d->channels, wd = (cl_uint)width(d), want_dg = dp->mem != NULL;
    mcl_arg args[] = {MCL_ARG(o->mem),    MCL_ARG(o_off),    MCL_ARG(p->mem),  MCL_ARG(p_off),
                      MCL_ARG(dout->mem), MCL_ARG(dout_off), MCL_ARG(dp->mem), MCL_ARG(dp_off),
                      MCL_ARG(np),        MCL_ARG(c),        MCL_ARG(wd),      MCL_ARG(want_dg)};
    return run_elementwise(w, d, "trimul_out_gate_backward", args, MCL_COUNT(args), np * d->channels);
}

/* ---- the GEMMs -------------------------------------------------------------------------- */

/* [pairs, cols] matrices (the op's tensors or workspace parts) as GEMM operands */
static gemm_matrix rows_of(const mcl_trimul_desc *d, const mcl_tensor *t, size_t cols, int trans)
{
    return gemm_operand(t, d->dtype, 0, cols, trans);
}

/* p = LN(z) W_in */
static gemm_call p_gemm(const mcl_trimul_desc *d, const mcl_tensor *z, const mcl_tensor *w_in, const mcl_tensor *p,
                        const gemm_layernorm *ln)
{
    return (gemm_call){.dtype = d->dtype, .m = pairs(d), .n = width(d), .k = d->channels, .batch = 1,
                       .a = rows_of(d, z, d->channels, 0), .b = rows_of(d, w_in, width(d), 0),
                       .c = rows_of(d, p, width(d), 0), .ln = ln};
}

/* o = LN(t) W_out */
static gemm_call o_gemm(const mcl_trimul_desc *d, const mcl_tensor *t, const mcl_tensor *w_out, const mcl_tensor *o,
                        const gemm_layernorm *ln)
{
    return (gemm_call){.dtype = d->dtype, .m = pairs(d), .n = d->channels, .k = d->hidden, .batch = 1,
                       .a = rows_of(d, t, d->hidden, 0), .b = rows_of(d, w_out, d->channels, 0),
                       .c = rows_of(d, o, d->channels, 0), .ln = ln};
}

/* The k-sum's batched GEMMs over channels: C_ch (N x N) = op(X_ch) op(Y_ch). */
static gemm_call batched(const mcl_trimul_desc *d, const mcl_tensor *x, int trans_x, const mcl_tensor *y, int trans_y,
                         const mcl_tensor *c)
{
    size_t n = d->n, nn = pairs(d), es = mcl_dtype_size(d->dtype);
    return (gemm_call){.dtype = d->dtype, .m = n, .n = n, .k = n, .batch = d->hidden,
                       .a = {x->mem, mcl_elem_offset(x, es), n, nn, trans_x},
                       .b = {y->mem, mcl_elem_offset(y, es), n, nn, trans_y},
                       .c = {c->mem, mcl_elem_offset(c, es), n, nn, 0}};
}

/* dX = dY W^T for a Linear of weight w [k_in, k_out]: dY [pairs, k_out] -> dX [pairs, k_in] */
static gemm_call dx_gemm(const mcl_trimul_desc *d, const mcl_tensor *dy, const mcl_tensor *w, size_t k_in,
                         size_t k_out, const mcl_tensor *dx)
{
    return (gemm_call){.dtype = d->dtype, .m = pairs(d), .n = k_in, .k = k_out, .batch = 1,
                       .a = rows_of(d, dy, k_out, 0), .b = rows_of(d, w, k_out, 1), .c = rows_of(d, dx, k_in, 0)};
}

/* dW = LN(x)^T dY for x [pairs, k_in] */
static gemm_call dw_gemm(const mcl_trimul_desc *d, const mcl_tensor *x, size_t k_in, const mcl_tensor *dy,
                         size_t k_out, const mcl_tensor *dw, const gemm_layernorm *ln)
{
    return (gemm_call){.dtype = d->dtype, .m = k_in, .n = k_out, .k = pairs(d), .batch = 1,
                       .a = rows_of(d, x, k_in, 1), .b = rows_of(d, dy, k_out, 0), .c = rows_of(d, dw, k_out, 0),
                       .ln = ln};
}

/* ---- enqueue ---------------------------------------------------------------------------- */

static mcl_status forward_steps(mcl_walk *w, const void *args)
{
    const mcl_op_args *a = args;
    const mcl_trimul_desc *d = a->desc;
    const mcl_trimul_fwd_tensors *t = a->tensors;
    mcl_layernorm_desc ln_in = {pairs(d), d->channels, d->dtype, d->eps}, ln_out = {pairs(d), d->hidden, d->dtype, d->eps};
    MCL_TRY(mcl_layernorm_stats_step(w, "LN(z) statistics", &ln_in, &t->z, &t->mean_in, &t->rstd_in));
    gemm_layernorm lin = gemm_layernorm_of(&t->mean_in, &t->rstd_in, &t->ln_in_weight, &t->ln_in_bias, d->dtype, 0);
    gemm_call g = p_gemm(d, &t->z, &t->w_in, &t->p, &lin);
    MCL_TRY(mcl_gemm_step(w, "p = LN(z) W_in GEMM", &g, PART_SPLITS));
    mcl_tensor pa = pair_part(w, d, PART_A, d->hidden), pb = pair_part(w, d, PART_B, d->hidden);
    MCL_TRY(gates(w, d, &t->p, &t->mask, &pa, &pb));
    mcl_tensor tc = pair_part(w, d, PART_TC, d->hidden);
    g = batched(d, &pa, 0, &pb, 1, &tc);
    MCL_TRY(mcl_gemm_step(w, "triangle sum GEMM", &g, PART_SPLITS));
    MCL_TRY(permute(w, d, &tc, &t->t, 0));
    MCL_TRY(mcl_layernorm_stats_step(w, "LN(t) statistics", &ln_out, &t->t, &t->mean_out, &t->rstd_out));
    gemm_layernorm lout = gemm_layernorm_of(&t->mean_out, &t->rstd_out, &t->ln_out_weight, &t->ln_out_bias, d->dtype, 0);
    mcl_tensor o = pair_part(w, d, PART_O, d->channels);
    g = o_gemm(d, &t->t, &t->w_out, &o, &lout);
    MCL_TRY(mcl_gemm_step(w, "o = LN(t) W_out GEMM", &g, PART_SPLITS));
    return out_gate(w, d, &o, &t->p, &t->out);
}

/* The backward's arguments: the wants decide every step, tensors only where they lie. */
typedef struct bwd_args {
    const mcl_trimul_desc *desc;
    const mcl_trimul_bwd_tensors *tensors;
    tm_wants wants;
} bwd_args;

/* From dout back to dLN(t)'s LayerNorm: do (in o's part), dg (dp's last columns), dW_out, dt. */
static mcl_status backward_out_side(mcl_walk *w, const bwd_args *a, const mcl_tensor *dp, const mcl_tensor *dt)
{
    const mcl_trimul_desc *d = a->desc;
    const mcl_trimul_bwd_tensors *t = a->tensors;
    size_t c = d->channels, h = d->hidden;
    gemm_layernorm lout = gemm_layernorm_of(&t->mean_out, &t->rstd_out, &t->ln_out_weight, &t->ln_out_bias, d->dtype, 0);
    mcl_tensor o = pair_part(w, d, PART_O, c);
    gemm_call g = o_gemm(d, &t->t, &t->w_out, &o, &lout);
    MCL_TRY(mcl_gemm_step(w, "o = LN(t) W_out GEMM", &g, PART_SPLITS));
    MCL_TRY(out_gate_backward(w, d, &o, &t->p, &t->dout, dp));
    if (a->wants.dw_out) {
        g = dw_gemm(d, &t->t, h, &o, c, &t->dw_out, &lout);
        MCL_TRY(mcl_gemm_step(w, "dW_out GEMM", &g, PART_SPLITS));
    }
    if (!want_dt(a->wants)) return MCL_OK;
    mcl_tensor dtn = pair_part(w, d, PART_DTN, h);
    g = dx_gemm(d, &o, &t->w_out, h, c, &dtn);
    MCL_TRY(mcl_gemm_step(w, "dLN(t) GEMM", &g, PART_SPLITS));
    mcl_layernorm_desc lnd = {pairs(d), h, d->dtype, d->eps};
    mcl_layernorm_bwd_tensors lt = {.x = t->t, .weight = t->ln_out_weight, .mean = t->mean_out, .rstd = t->rstd_out,
                                    .dy = dtn, .dx = *dt, .dweight = t->dln_out_weight, .dbias = t->dln_out_bias};
    return mcl_layernorm_backward_step(w, "LN(t) backward", &lnd, &lt, a->wants.dln_out ? PART_LN : MCL_NO_PART);
}

/* From dt back to z: dA, dB, dp's gate columns, dW_in, the LayerNorm backward of z. */
static mcl_status backward_in_side(mcl_walk *w, const bwd_args *a, const mcl_tensor *dp, const mcl_tensor *dt)
{
    const mcl_trimul_desc *d = a->desc;
    const mcl_trimul_bwd_tensors *t = a->tensors;
    size_t c = d->channels, h = d->hidden;
    mcl_tensor tc = pair_part(w, d, PART_TC, h), pa = pair_part(w, d, PART_A, h), pb = pair_part(w, d, PART_B, h);
    mcl_tensor da = pair_part(w, d, PART_DA, h), db = pair_part(w, d, PART_DB, h);
    MCL_TRY(permute(w, d, dt, &tc, 1));
    MCL_TRY(gates(w, d, &t->p, &t->mask, &pa, &pb));
    gemm_call g = batched(d, &tc, 0, &pb, 0, &da); /* dA = dT B */
    MCL_TRY(mcl_gemm_step(w, "dA GEMM", &g, PART_SPLITS));
    g = batched(d, &tc, 1, &pa, 0, &db); /* dB = dT^T A */
    MCL_TRY(mcl_gemm_step(w, "dB GEMM", &g, PART_SPLITS));
    MCL_TRY(gates_backward(w, d, t, &da, &db, dp));
    gemm_layernorm lin = gemm_layernorm_of(&t->mean_in, &t->rstd_in, &t->ln_in_weight, &t->ln_in_bias, d->dtype, 0);
    if (a->wants.dw_in) {
        g = dw_gemm(d, &t->z, c, dp, width(d), &t->dw_in, &lin);
        MCL_TRY(mcl_gemm_step(w, "dW_in GEMM", &g, PART_SPLITS));
    }
    if (!a->wants.dz && !a->wants.dln_in) return MCL_OK;
    mcl_tensor dzn = pair_part(w, d, PART_DZN, c);
    g = dx_gemm(d, dp, &t->w_in, c, width(d), &dzn);
    MCL_TRY(mcl_gemm_step(w, "dLN(z) GEMM", &g, PART_SPLITS));
    mcl_layernorm_desc lnd = {pairs(d), c, d->dtype, d->eps};
    mcl_layernorm_bwd_tensors lt = {.x = t->z, .weight = t->ln_in_weight, .mean = t->mean_in, .rstd = t->rstd_in,
                                    .dy = dzn, .dx = t->dz, .dweight = t->dln_in_weight, .dbias = t->dln_in_bias};
    return mcl_layernorm_backward_step(w, "LN(z) backward", &lnd, &lt, a->wants.dln_in ? PART_LN : MCL_NO_PART);
}

static mcl_status backward_steps(mcl_walk *w, const void *args)
{
    const bwd_args *a = args;
    const mcl_trimul_desc *d = a->desc;
    int in = in_side(a->wants);
    mcl_tensor dp = in ? pair_part(w, a->desc, PART_DP, width(d)) : (mcl_tensor){0};
    mcl_tensor dt = in ? pair_part(w, a->desc, PART_DT, d->hidden) : (mcl_tensor){0};
    MCL_TRY(backward_out_side(w, a, &dp, &dt));
    return in ? backward_in_side(w, a, &dp, &dt) : MCL_OK;
}

/* ---- public entry points ---------------------------------------------------------------- */

MCL_WALKED_ENTRY_POINT(trimul, forward, fwd, INPUTS(t), PAIR("out", &t->out, MCL_REQUIRED_OUT, d->channels),
                       SAVED(t, MCL_REQUIRED_OUT))

MCL_ENTRY_POINT(trimul, backward, bwd)
{
    MCL_ENTER(trimul, backward, validate_desc, INPUTS(t), SAVED(t, MCL_REQUIRED_IN),
              PAIR("dout", &t->dout, MCL_REQUIRED_IN, d->channels), PAIR("dz", &t->dz, MCL_OPTIONAL_OUT, d->channels),
              OF("dln_in_weight", &t->dln_in_weight, MCL_OPTIONAL_OUT, d->channels),
              OF("dln_in_bias", &t->dln_in_bias, MCL_OPTIONAL_OUT, d->channels),
              OF("dw_in", &t->dw_in, MCL_OPTIONAL_OUT, d->channels, width(d)),
              OF("dln_out_weight", &t->dln_out_weight, MCL_OPTIONAL_OUT, d->hidden),
              OF("dln_out_bias", &t->dln_out_bias, MCL_OPTIONAL_OUT, d->hidden),
              OF("dw_out", &t->dw_out, MCL_OPTIONAL_OUT, d->hidden, d->channels));
    return mcl_walk_op(ctx, "trimul_backward", backward_steps, &(bwd_args){d, t, wants_of(t)}, event);
}

MCL_WALKED_WORKSPACE_SIZES(trimul, ((tm_wants){1, 1, 1, 1, 1}))
