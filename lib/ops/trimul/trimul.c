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
/* What the forward saves for the backward: the triangle sum t and both LayerNorms' row
 * statistics (the backward recomputes the projections of LN(z) a chunk of channels at a time). */
#define SAVED(t, role)                                                                           \
    PAIR("t", &(t)->t, role, d->hidden), STATS("mean_in", &(t)->mean_in, role),                  \
    STATS("rstd_in", &(t)->rstd_in, role), STATS("mean_out", &(t)->mean_out, role),              \
    STATS("rstd_out", &(t)->rstd_out, role)

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
static int want_dzn(tm_wants w) { return w.dz || w.dln_in; }           /* dLN(z) */

/* The channels of one chunk of the triangle core. */
static mcl_status chunk_channels(mcl_context *ctx, const mcl_trimul_desc *d, size_t *chunk)
{
    const size_t shape[3] = {d->n, d->channels, d->hidden};
    tm_params params;
    MCL_TRY(mcl_params_lookup(ctx, &mcl_family_trimul, d->dtype, shape, &params, NULL));
    *chunk = (size_t)params.chunk < d->hidden ? (size_t)params.chunk : d->hidden;
    return MCL_OK;
}

/* Workspace parts, shared where lifetimes do not overlap: LayerNorm partials, GEMM split
 * partials; [pairs, *] intermediates: the channel-first triangle sum T (then o) in the forward,
 * o (then do, then the channel-first dT) in the backward; a chunk's projections p4 (and their
 * gradient; g, then dg, outside the chunks); the fp32 dLN(t) (then the fp32 dLN(z)); dt; a
 * chunk's operands A, B (and dA, dB) and its gathered weights. */
enum { PART_LN, PART_SPLITS, PART_O, PART_G, PART_DLN, PART_DT, PART_A, PART_B, PART_DA, PART_DB, PART_WC };

static mcl_tensor pair_part(mcl_walk *w, const mcl_trimul_desc *d, int part, size_t cols)
{
    return mcl_walk_part(w, part, pairs(d) * cols * mcl_dtype_size(d->dtype));
}

static mcl_tensor fp32_pair_part(mcl_walk *w, const mcl_trimul_desc *d, int part, size_t cols)
{
    return mcl_walk_part(w, part, pairs(d) * cols * sizeof(float));
}

/* Channel `first` on of a channel-first [h, pairs] tensor. */
static mcl_tensor channel_from(const mcl_trimul_desc *d, const mcl_tensor *t, size_t first)
{
    return (mcl_tensor){t->mem, t->offset + first * pairs(d) * mcl_dtype_size(d->dtype)};
}

/* ---- the elementwise kernels ------------------------------------------------------------ */

static mcl_status trimul_kernel(mcl_context *ctx, const mcl_trimul_desc *d, const char *name, const mcl_arg *args,
                                size_t nargs, cl_kernel *kernel)
{
    mcl_defines defines = {0};
    mcl_define(&defines, "MCL_DTYPE", d->dtype);
    MCL_TRY(mcl_kernel_get(ctx, &mcl_family_trimul, "trimul/trimul", &defines, name, kernel));
    return mcl_set_args(*kernel, args, nargs, name);
}

static mcl_status enqueue_elementwise(mcl_context *ctx, const mcl_trimul_desc *d, const char *name,
                                      const mcl_arg *args, size_t nargs, size_t count)
{
    const size_t shape[3] = {d->n, d->channels, d->hidden};
    tm_params params;
    MCL_TRY(mcl_params_lookup(ctx, &mcl_family_trimul, d->dtype, shape, &params, NULL));
    cl_kernel kernel;
    MCL_TRY(trimul_kernel(ctx, d, name, args, nargs, &kernel));
    size_t local = (size_t)params.wg, global = mcl_round_up(count, local);
    return mcl_enqueue(ctx, kernel, 1, &global, &local, name);
}

/* An elementwise kernel over `count` elements as a step of the walk. */
static mcl_status run_elementwise(mcl_walk *w, const mcl_trimul_desc *d, const char *name, const mcl_arg *args,
                                  size_t nargs, size_t count)
{
    return w->enqueue ? mcl_walk_step(w, name, enqueue_elementwise(w->ctx, d, name, args, nargs, count)) : MCL_OK;
}

/* A layout-changing kernel over a [rows, cols] grid in tiles of TILE x TILE (cl/trimul/trimul.cl):
 * work-groups of TILE x TILE_ROWS, x along cols. */
enum { TILE = 32, TILE_ROWS = 8 };
static mcl_status run_tiled(mcl_walk *w, const mcl_trimul_desc *d, const char *name, const mcl_arg *args,
                            size_t nargs, size_t rows, size_t cols)
{
    if (!w->enqueue) return MCL_OK;
    cl_kernel kernel;
    mcl_status s = trimul_kernel(w->ctx, d, name, args, nargs, &kernel);
    size_t local[2] = {TILE, TILE_ROWS}, global[2] = {mcl_round_up(cols, TILE), mcl_ceil_div(rows, TILE) * TILE_ROWS};
    if (s == MCL_OK) s = mcl_enqueue(w->ctx, kernel, 2, global, local, name);
    return mcl_walk_step(w, name, s);
}

static cl_uint gate_flags(const mcl_trimul_desc *d, const mcl_tensor *mask)
{
    return (mcl_has(mask) ? FLAG_MASK : 0) | (d->direction == MCL_TRIMUL_INCOMING ? FLAG_INCOMING : 0);
}

/* The channel-first operands A and B of a chunk of hc channels from its projections p4
 * [pairs, 4 hc] (a_proj, a_gate, b_proj, b_gate) and the mask. */
static mcl_status gates(mcl_walk *w, const mcl_trimul_desc *d, size_t hc, const mcl_tensor *p4,
                        const mcl_tensor *mask, const mcl_tensor *a, const mcl_tensor *b)
{
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong p_off = mcl_elem_offset(p4, es), mask_off = mcl_elem_offset(mask, es), a_off = mcl_elem_offset(a, es),
             b_off = mcl_elem_offset(b, es);
    cl_uint n = (cl_uint)d->n, h = (cl_uint)hc, wd = (cl_uint)(4 * hc), flags = gate_flags(d, mask);
    mcl_arg args[] = {MCL_ARG(p4->mem), MCL_ARG(p_off), MCL_ARG(mask->mem), MCL_ARG(mask_off),
                      MCL_ARG(a->mem),  MCL_ARG(a_off), MCL_ARG(b->mem),    MCL_ARG(b_off),
                      MCL_ARG(n),       MCL_ARG(h),     MCL_ARG(wd),        MCL_ARG(flags)};
    return run_tiled(w, d, "trimul_gates", args, MCL_COUNT(args), hc, pairs(d));
}

/* The chunk's projections' gradient from dA and dB, in place of the projections p4. */
static mcl_status gates_backward(mcl_walk *w, const mcl_trimul_desc *d, size_t hc, const mcl_tensor *p4,
                                 const mcl_tensor *mask, const mcl_tensor *da, const mcl_tensor *db)
{
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong p_off = mcl_elem_offset(p4, es), mask_off = mcl_elem_offset(mask, es), da_off = mcl_elem_offset(da, es),
             db_off = mcl_elem_offset(db, es);
    cl_uint n = (cl_uint)d->n, h = (cl_uint)hc, wd = (cl_uint)(4 * hc), flags = gate_flags(d, mask);
    mcl_arg args[] = {MCL_ARG(p4->mem), MCL_ARG(p_off), MCL_ARG(mask->mem), MCL_ARG(mask_off),
                      MCL_ARG(da->mem), MCL_ARG(da_off), MCL_ARG(db->mem),  MCL_ARG(db_off),
                      MCL_ARG(p4->mem), MCL_ARG(p_off), MCL_ARG(n),         MCL_ARG(h),
                      MCL_ARG(wd),      MCL_ARG(flags)};
    return run_tiled(w, d, "trimul_gates_backward", args, MCL_COUNT(args), hc, pairs(d));
}

/* Between the channel-first [h, pairs] and channels-last [pairs, h] layouts. */
static mcl_status permute(mcl_walk *w, const mcl_trimul_desc *d, const mcl_tensor *src, const mcl_tensor *dst,
                          int to_first)
{
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong so = mcl_elem_offset(src, es), dof = mcl_elem_offset(dst, es), np = pairs(d), h = d->hidden;
    cl_ulong rows = to_first ? np : h, cols = to_first ? h : np;
    mcl_arg args[] = {MCL_ARG(src->mem), MCL_ARG(so), MCL_ARG(dst->mem), MCL_ARG(dof), MCL_ARG(rows), MCL_ARG(cols)};
    return run_tiled(w, d, "trimul_permute", args, MCL_COUNT(args), rows, cols);
}

/* wc [c, 4 hc]: the columns of W_in that project channels first .. first + hc - 1 (a_proj,
 * a_gate, b_proj, b_gate), side by side. */
static mcl_status gather_weights(mcl_walk *w, const mcl_trimul_desc *d, const mcl_tensor *w_in, size_t first,
                                 size_t hc, const mcl_tensor *wc)
{
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong w_off = mcl_elem_offset(w_in, es), wc_off = mcl_elem_offset(wc, es);
    cl_uint c = (cl_uint)d->channels, h = (cl_uint)d->hidden, wd = (cl_uint)width(d), f = (cl_uint)first,
            chunk = (cl_uint)hc;
    mcl_arg args[] = {MCL_ARG(w_in->mem), MCL_ARG(w_off), MCL_ARG(wc->mem), MCL_ARG(wc_off), MCL_ARG(c),
                      MCL_ARG(h),         MCL_ARG(wd),    MCL_ARG(f),       MCL_ARG(chunk)};
    return run_elementwise(w, d, "trimul_gather_weights", args, MCL_COUNT(args), d->channels * 4 * hc);
}

/* out = o * sigmoid(g). */
static mcl_status out_gate(mcl_walk *w, const mcl_trimul_desc *d, const mcl_tensor *o, const mcl_tensor *g,
                           const mcl_tensor *out)
{
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong o_off = mcl_elem_offset(o, es), g_off = mcl_elem_offset(g, es), out_off = mcl_elem_offset(out, es),
             np = pairs(d);
    cl_uint c = (cl_uint)d->channels;
    mcl_arg args[] = {MCL_ARG(o->mem),  MCL_ARG(o_off), MCL_ARG(g->mem), MCL_ARG(g_off), MCL_ARG(out->mem),
                      MCL_ARG(out_off), MCL_ARG(np),    MCL_ARG(c)};
    return run_elementwise(w, d, "trimul_out_gate", args, MCL_COUNT(args), np * d->channels);
}

/* do = dout * sigmoid(g) in place of o, and with want_dg dg in place of g. */
static mcl_status out_gate_backward(mcl_walk *w, const mcl_trimul_desc *d, const mcl_tensor *o,
                                    const mcl_tensor *g, const mcl_tensor *dout, int want_dg)
{
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong o_off = mcl_elem_offset(o, es), g_off = mcl_elem_offset(g, es), dout_off = mcl_elem_offset(dout, es),
             np = pairs(d);
    cl_uint c = (cl_uint)d->channels, dg = (cl_uint)want_dg;
    mcl_arg args[] = {MCL_ARG(o->mem),    MCL_ARG(o_off),    MCL_ARG(g->mem), MCL_ARG(g_off),
                      MCL_ARG(dout->mem), MCL_ARG(dout_off), MCL_ARG(np),     MCL_ARG(c),
                      MCL_ARG(dg)};
    return run_elementwise(w, d, "trimul_out_gate_backward", args, MCL_COUNT(args), np * d->channels);
}

/* ---- the GEMMs -------------------------------------------------------------------------- */

/* [rows, cols] matrices of the op's dtype (its tensors or workspace parts), from column `first` */
static gemm_matrix rows_of(const mcl_trimul_desc *d, const mcl_tensor *t, size_t first, size_t cols, int trans)
{
    return gemm_operand(t, d->dtype, first, cols, trans);
}

/* an fp32 workspace part [pairs, cols] (the fp32 gradient chain into the LayerNorm backwards) */
static gemm_matrix fp32_rows(const mcl_tensor *t, size_t cols)
{
    return (gemm_matrix){t->mem, (size_t)mcl_elem_offset(t, sizeof(float)), cols, 0, 0, 1};
}

/* Y = LN(X) W for X [pairs, k] and W's columns first .. first + n - 1 (rows ldw apart) */
static gemm_call ln_gemm(const mcl_trimul_desc *d, const mcl_tensor *x, size_t k, const mcl_tensor *w, size_t first,
                         size_t ldw, size_t n, const mcl_tensor *y, const gemm_layernorm *ln)
{
    return (gemm_call){.dtype = d->dtype, .m = pairs(d), .n = n, .k = k, .batch = 1,
                       .a = rows_of(d, x, 0, k, 0), .b = rows_of(d, w, first, ldw, 0), .c = rows_of(d, y, 0, n, 0),
                       .ln = ln};
}

/* The k-sum's batched GEMMs over hc channels: C_ch (N x N) = op(X_ch) op(Y_ch). */
static gemm_call batched(const mcl_trimul_desc *d, size_t hc, const mcl_tensor *x, int trans_x, const mcl_tensor *y,
                         int trans_y, const mcl_tensor *c)
{
    size_t n = d->n, nn = pairs(d), es = mcl_dtype_size(d->dtype);
    return (gemm_call){.dtype = d->dtype, .m = n, .n = n, .k = n, .batch = hc,
                       .a = {x->mem, mcl_elem_offset(x, es), n, nn, trans_x, 0},
                       .b = {y->mem, mcl_elem_offset(y, es), n, nn, trans_y, 0},
                       .c = {c->mem, mcl_elem_offset(c, es), n, nn, 0, 0}};
}

/* dX (fp32, plus dX itself with accumulate) = dY W^T for a Linear of weight columns first ..
 * first + k_out - 1 (rows ldw apart): dY [pairs, k_out] -> dX [pairs, k_in] */
static gemm_call dx_gemm(const mcl_trimul_desc *d, const mcl_tensor *dy, const mcl_tensor *w, size_t first,
                         size_t ldw, size_t k_in, size_t k_out, const mcl_tensor *dx, int accumulate)
{
    gemm_call g = {.dtype = d->dtype, .m = pairs(d), .n = k_in, .k = k_out, .batch = 1,
                   .a = rows_of(d, dy, 0, k_out, 0), .b = rows_of(d, w, first, ldw, 1), .c = fp32_rows(dx, k_in)};
    if (accumulate) g.residual = dx->mem, g.residual_off = g.c.off;
    return g;
}

/* dW = LN(x)^T dY for x [pairs, k_in], dY's columns in `batch` blocks of n (ldy apart in a row,
 * block_dy apart) into W's columns in blocks block_dw apart from column `first` */
static gemm_call dw_gemm(const mcl_trimul_desc *d, const mcl_tensor *x, size_t k_in, const mcl_tensor *dy, size_t ldy,
                         size_t block_dy, size_t n, size_t batch, const mcl_tensor *dw, size_t first, size_t ldw,
                         size_t block_dw, const gemm_layernorm *ln)
{
    gemm_call g = {.dtype = d->dtype, .m = k_in, .n = n, .k = pairs(d), .batch = batch,
                   .a = rows_of(d, x, 0, k_in, 1), .b = rows_of(d, dy, 0, ldy, 0), .c = rows_of(d, dw, first, ldw, 0),
                   .ln = ln};
    g.b.batch_stride = block_dy, g.c.batch_stride = block_dw;
    return g;
}

/* ---- enqueue ---------------------------------------------------------------------------- */

/* The parts a chunk of the triangle core works in. */
typedef struct tm_chunk {
    size_t first, hc;
    mcl_tensor wc, p4, a, b;
} tm_chunk;

static tm_chunk chunk_at(mcl_walk *w, const mcl_trimul_desc *d, size_t first, size_t hc)
{
    return (tm_chunk){first, hc, mcl_walk_part(w, PART_WC, d->channels * 4 * hc * mcl_dtype_size(d->dtype)),
                      pair_part(w, d, PART_G, 4 * hc), pair_part(w, d, PART_A, hc), pair_part(w, d, PART_B, hc)};
}

/* A chunk's projections p4 = LN(z) W_in's chunk columns and its operands A, B. */
static mcl_status chunk_operands(mcl_walk *w, const mcl_trimul_desc *d, const mcl_tensor *z, const mcl_tensor *w_in,
                                 const mcl_tensor *mask, const gemm_layernorm *lin, const tm_chunk *ch)
{
    MCL_TRY(gather_weights(w, d, w_in, ch->first, ch->hc, &ch->wc));
    gemm_call g = ln_gemm(d, z, d->channels, &ch->wc, 0, 4 * ch->hc, 4 * ch->hc, &ch->p4, lin);
    MCL_TRY(mcl_gemm_step(w, "chunk projections GEMM", &g, PART_SPLITS));
    return gates(w, d, ch->hc, &ch->p4, mask, &ch->a, &ch->b);
}

static mcl_status forward_steps(mcl_walk *w, const void *args)
{
    const mcl_op_args *a = args;
    const mcl_trimul_desc *d = a->desc;
    const mcl_trimul_fwd_tensors *t = a->tensors;
    size_t c = d->channels, h = d->hidden, hc = 0;
    MCL_TRY(mcl_walk_step(w, NULL, chunk_channels(w->ctx, d, &hc)));
    mcl_layernorm_desc ln_in = {pairs(d), c, d->dtype, d->eps}, ln_out = {pairs(d), h, d->dtype, d->eps};
    MCL_TRY(mcl_layernorm_stats_step(w, "LN(z) statistics", &ln_in, &t->z, &t->mean_in, &t->rstd_in));
    gemm_layernorm lin = gemm_layernorm_of(&t->mean_in, &t->rstd_in, &t->ln_in_weight, &t->ln_in_bias, d->dtype, 0);
    mcl_tensor tc = pair_part(w, d, PART_O, h);
    for (size_t first = 0; first < h; first += hc) {
        tm_chunk ch = chunk_at(w, d, first, first + hc <= h ? hc : h - first);
        MCL_TRY(chunk_operands(w, d, &t->z, &t->w_in, &t->mask, &lin, &ch));
        mcl_tensor sum = channel_from(d, &tc, first);
        gemm_call g = batched(d, ch.hc, &ch.a, 0, &ch.b, 1, &sum);
        MCL_TRY(mcl_gemm_step(w, "triangle sum GEMM", &g, PART_SPLITS));
    }
    MCL_TRY(permute(w, d, &tc, &t->t, 0));
    MCL_TRY(mcl_layernorm_stats_step(w, "LN(t) statistics", &ln_out, &t->t, &t->mean_out, &t->rstd_out));
    gemm_layernorm lout = gemm_layernorm_of(&t->mean_out, &t->rstd_out, &t->ln_out_weight, &t->ln_out_bias, d->dtype, 0);
    mcl_tensor o = pair_part(w, d, PART_O, c), gate = pair_part(w, d, PART_G, c);
    gemm_call g = ln_gemm(d, &t->t, h, &t->w_out, 0, c, c, &o, &lout);
    MCL_TRY(mcl_gemm_step(w, "o = LN(t) W_out GEMM", &g, PART_SPLITS));
    g = ln_gemm(d, &t->z, c, &t->w_in, 4 * h, width(d), c, &gate, &lin);
    MCL_TRY(mcl_gemm_step(w, "g = LN(z) W_in GEMM", &g, PART_SPLITS));
    return out_gate(w, d, &o, &gate, &t->out);
}

/* The backward's arguments: the wants decide every step, tensors only where they lie. */
typedef struct bwd_args {
    const mcl_trimul_desc *desc;
    const mcl_trimul_bwd_tensors *tensors;
    tm_wants wants;
} bwd_args;

/* From dout back to dt: o and g recomputed, do (in o's part), dg (in g's), dW_out, the fp32
 * dLN(t) and its LayerNorm backward. */
static mcl_status backward_out_side(mcl_walk *w, const bwd_args *a, const gemm_layernorm *lin, const mcl_tensor *dt)
{
    const mcl_trimul_desc *d = a->desc;
    const mcl_trimul_bwd_tensors *t = a->tensors;
    size_t c = d->channels, h = d->hidden;
    gemm_layernorm lout = gemm_layernorm_of(&t->mean_out, &t->rstd_out, &t->ln_out_weight, &t->ln_out_bias, d->dtype, 0);
    mcl_tensor o = pair_part(w, d, PART_O, c), gate = pair_part(w, d, PART_G, c);
    gemm_call g = ln_gemm(d, &t->t, h, &t->w_out, 0, c, c, &o, &lout);
    MCL_TRY(mcl_gemm_step(w, "o = LN(t) W_out GEMM", &g, PART_SPLITS));
    g = ln_gemm(d, &t->z, c, &t->w_in, 4 * h, width(d), c, &gate, lin);
    MCL_TRY(mcl_gemm_step(w, "g = LN(z) W_in GEMM", &g, PART_SPLITS));
    MCL_TRY(out_gate_backward(w, d, &o, &gate, &t->dout, in_side(a->wants)));
    if (a->wants.dw_out) {
        g = dw_gemm(d, &t->t, h, &o, c, 0, c, 1, &t->dw_out, 0, c, 0, &lout);
        MCL_TRY(mcl_gemm_step(w, "dW_out GEMM", &g, PART_SPLITS));
    }
    if (!want_dt(a->wants)) return MCL_OK;
    mcl_tensor dtn = fp32_pair_part(w, d, PART_DLN, h);
    g = dx_gemm(d, &o, &t->w_out, 0, c, h, c, &dtn, 0);
    MCL_TRY(mcl_gemm_step(w, "dLN(t) GEMM", &g, PART_SPLITS));
    mcl_layernorm_desc lnd = {pairs(d), h, d->dtype, d->eps};
    mcl_layernorm_bwd_tensors lt = {.x = t->t, .weight = t->ln_out_weight, .mean = t->mean_out, .rstd = t->rstd_out,
                                    .dy = dtn, .dx = *dt, .dweight = t->dln_out_weight, .dbias = t->dln_out_bias};
    return mcl_layernorm_backward_step(w, "LN(t) backward", &lnd, &lt, 1, a->wants.dln_out ? PART_LN : MCL_NO_PART);
}

/* A chunk of the triangle core's backward: its projections and operands recomputed, dA = dT B,
 * dB = dT^T A, the projections' gradient, dW_in's chunk columns and the chunk's share of dLN(z). */
static mcl_status backward_chunk(mcl_walk *w, const bwd_args *a, const gemm_layernorm *lin, const mcl_tensor *tc,
                                 const mcl_tensor *dzn, const tm_chunk *ch)
{
    const mcl_trimul_desc *d = a->desc;
    const mcl_trimul_bwd_tensors *t = a->tensors;
    size_t h = d->hidden, hc = ch->hc;
    MCL_TRY(chunk_operands(w, d, &t->z, &t->w_in, &t->mask, lin, ch));
    mcl_tensor dt = channel_from(d, tc, ch->first), da = pair_part(w, d, PART_DA, hc), db = pair_part(w, d, PART_DB, hc);
    gemm_call g = batched(d, hc, &dt, 0, &ch->b, 0, &da);
    MCL_TRY(mcl_gemm_step(w, "dA GEMM", &g, PART_SPLITS));
    g = batched(d, hc, &dt, 1, &ch->a, 0, &db);
    MCL_TRY(mcl_gemm_step(w, "dB GEMM", &g, PART_SPLITS));
    MCL_TRY(gates_backward(w, d, hc, &ch->p4, &t->mask, &da, &db));
    if (a->wants.dw_in) {
        g = dw_gemm(d, &t->z, d->channels, &ch->p4, 4 * hc, hc, hc, 4, &t->dw_in, ch->first, width(d), h, lin);
        MCL_TRY(mcl_gemm_step(w, "dW_in GEMM", &g, PART_SPLITS));
    }
    if (!want_dzn(a->wants)) return MCL_OK;
    g = dx_gemm(d, &ch->p4, &ch->wc, 0, 4 * hc, d->channels, 4 * hc, dzn, 1);
    return mcl_gemm_step(w, "dLN(z) GEMM", &g, PART_SPLITS);
}

/* From dt and dg back to z: dW_in's gate columns, dLN(z) in fp32 over the gate and then each
 * chunk, the LayerNorm backward of z. */
static mcl_status backward_in_side(mcl_walk *w, const bwd_args *a, const gemm_layernorm *lin, const mcl_tensor *dt)
{
    const mcl_trimul_desc *d = a->desc;
    const mcl_trimul_bwd_tensors *t = a->tensors;
    size_t c = d->channels, h = d->hidden, hc = 0;
    MCL_TRY(mcl_walk_step(w, NULL, chunk_channels(w->ctx, d, &hc)));
    mcl_tensor dg = pair_part(w, d, PART_G, c), dzn = fp32_pair_part(w, d, PART_DLN, c);
    gemm_call g;
    if (a->wants.dw_in) {
        g = dw_gemm(d, &t->z, c, &dg, c, 0, c, 1, &t->dw_in, 4 * h, width(d), 0, lin);
        MCL_TRY(mcl_gemm_step(w, "dW_in gate GEMM", &g, PART_SPLITS));
    }
    if (want_dzn(a->wants)) {
        g = dx_gemm(d, &dg, &t->w_in, 4 * h, width(d), c, c, &dzn, 0);
        MCL_TRY(mcl_gemm_step(w, "dLN(z) gate GEMM", &g, PART_SPLITS));
    }
    mcl_tensor tc = pair_part(w, d, PART_O, h);
    MCL_TRY(permute(w, d, dt, &tc, 1));
    for (size_t first = 0; first < h; first += hc) {
        tm_chunk ch = chunk_at(w, d, first, first + hc <= h ? hc : h - first);
        MCL_TRY(backward_chunk(w, a, lin, &tc, &dzn, &ch));
    }
    if (!want_dzn(a->wants)) return MCL_OK;
    mcl_layernorm_desc lnd = {pairs(d), c, d->dtype, d->eps};
    mcl_layernorm_bwd_tensors lt = {.x = t->z, .weight = t->ln_in_weight, .mean = t->mean_in, .rstd = t->rstd_in,
                                    .dy = dzn, .dx = t->dz, .dweight = t->dln_in_weight, .dbias = t->dln_in_bias};
    return mcl_layernorm_backward_step(w, "LN(z) backward", &lnd, &lt, 1, a->wants.dln_in ? PART_LN : MCL_NO_PART);
}

static mcl_status backward_steps(mcl_walk *w, const void *args)
{
    const bwd_args *a = args;
    const mcl_trimul_desc *d = a->desc;
    const mcl_trimul_bwd_tensors *t = a->tensors;
    gemm_layernorm lin = gemm_layernorm_of(&t->mean_in, &t->rstd_in, &t->ln_in_weight, &t->ln_in_bias, d->dtype, 0);
    int in = in_side(a->wants);
    mcl_tensor dt = in ? pair_part(w, d, PART_DT, d->hidden) : (mcl_tensor){0};
    MCL_TRY(backward_out_side(w, a, &lin, &dt));
    return in ? backward_in_side(w, a, &lin, &dt) : MCL_OK;
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
