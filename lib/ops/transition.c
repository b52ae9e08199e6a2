/* Transition (LayerNorm -> Linear c->2F -> SwiGLU -> Linear F->c): validate -> choose
 * parameters -> enqueue. Every GEMM is cl/gemm.cl with LayerNorm or SwiGLU formed on the
 * operand load, and the backward's dS -> dh through its SwiGLU-backward epilogue. */
#include "megacl.h"

#include "../runtime/error.h"
#include "check.h"
#include "gemm.h"
#include "layernorm.h"

#include <math.h>

/* The backward's rows per chunk when the caller leaves desc->chunk_rows 0: its dh scratch
 * then holds 32768 x 2F values, and each chunk's GEMMs still fill a large GPU. */
#define DEFAULT_CHUNK_ROWS 32768

/* ---- validate --------------------------------------------------------------------------- */

static mcl_status validate_desc(const mcl_transition_desc *d, const char *op)
{
    if (d->rows == 0 || d->channels == 0 || d->hidden == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: rows (%zu), channels (%zu) and hidden (%zu) must be positive", op,
                        d->rows, d->channels, d->hidden);
    if (mcl_dtype_size(d->dtype) == 0)
        return mcl_fail(MCL_ERR_UNSUPPORTED_DTYPE, "%s: dtype %d is not f32, bf16 or f16", op, (int)d->dtype);
    if (d->channels > UINT32_MAX || d->hidden > UINT32_MAX / 2)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: channels (%zu) or 2 x hidden (%zu) exceeds 2^32 - 1", op,
                        d->channels, d->hidden);
    if (!(d->eps >= 0.0f) || isinf(d->eps))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: eps must be finite and >= 0 (got %g)", op, (double)d->eps);
    if (d->silu_half != MCL_SWIGLU_SILU_FIRST && d->silu_half != MCL_SWIGLU_SILU_SECOND)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: silu_half %d is not MCL_SWIGLU_SILU_FIRST or _SECOND", op,
                        (int)d->silu_half);
    return MCL_OK;
}

static mcl_tensor_check tensor(const char *name, const mcl_tensor *t, const mcl_transition_desc *d, size_t rows,
                               size_t cols, int required, int is_output)
{
    return (mcl_tensor_check){name, t, required, is_output, mcl_dtype_size(d->dtype), mcl_dtype_name(d->dtype),
                              {rows, cols}, cols ? 2 : 1, NULL};
}

static mcl_tensor_check stats(const char *name, const mcl_tensor *t, const mcl_transition_desc *d, int is_output)
{
    return (mcl_tensor_check){name, t, 1, is_output, sizeof(float), "f32", {d->rows}, 1, NULL};
}

static mcl_status validate_forward(mcl_context *ctx, const mcl_transition_desc *d,
                                   const mcl_transition_fwd_tensors *t)
{
    const char *op = "transition_forward";
    if (!ctx || !d || !t) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL context, desc or tensors", op);
    MCL_TRY(validate_desc(d, op));
    size_t c = d->channels, f = d->hidden;
    mcl_tensor_check checks[] = {
        tensor("x", &t->x, d, d->rows, c, 1, 0),       tensor("ln_weight", &t->ln_weight, d, c, 0, 0, 0),
        tensor("ln_bias", &t->ln_bias, d, c, 0, 0, 0), tensor("w1", &t->w1, d, c, 2 * f, 1, 0),
        tensor("w2", &t->w2, d, f, c, 1, 0),           tensor("y", &t->y, d, d->rows, c, 1, 1),
        stats("mean", &t->mean, d, 1),                 stats("rstd", &t->rstd, d, 1),
        tensor("h", &t->h, d, d->rows, 2 * f, 1, 1),
    };
    return mcl_check_tensors(ctx, op, checks, sizeof checks / sizeof checks[0]);
}

static mcl_status validate_backward(mcl_context *ctx, const mcl_transition_desc *d,
                                    const mcl_transition_bwd_tensors *t)
{
    const char *op = "transition_backward";
    if (!ctx || !d || !t) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL context, desc or tensors", op);
    MCL_TRY(validate_desc(d, op));
    if (!mcl_has(&t->dx) && !mcl_has(&t->dln_weight) && !mcl_has(&t->dln_bias) && !mcl_has(&t->dw1) &&
        !mcl_has(&t->dw2))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: no output requested (dx, dln_weight, dln_bias, dw1, dw2)", op);
    size_t c = d->channels, f = d->hidden;
    mcl_tensor_check checks[] = {
        tensor("x", &t->x, d, d->rows, c, 1, 0),       tensor("ln_weight", &t->ln_weight, d, c, 0, 0, 0),
        tensor("ln_bias", &t->ln_bias, d, c, 0, 0, 0), tensor("w1", &t->w1, d, c, 2 * f, 1, 0),
        tensor("w2", &t->w2, d, f, c, 1, 0),           stats("mean", &t->mean, d, 0),
        stats("rstd", &t->rstd, d, 0),                 tensor("h", &t->h, d, d->rows, 2 * f, 1, 0),
        tensor("dy", &t->dy, d, d->rows, c, 1, 0),     tensor("dx", &t->dx, d, d->rows, c, 0, 1),
        tensor("dln_weight", &t->dln_weight, d, c, 0, 0, 1), tensor("dln_bias", &t->dln_bias, d, c, 0, 0, 1),
        tensor("dw1", &t->dw1, d, c, 2 * f, 0, 1),     tensor("dw2", &t->dw2, d, f, c, 0, 1),
    };
    return mcl_check_tensors(ctx, op, checks, sizeof checks / sizeof checks[0]);
}

/* ---- choose parameters ------------------------------------------------------------------ */

static size_t elem(const mcl_tensor *t, size_t es) { return t->mem ? t->offset / es : 0; }
static size_t stat_elem(const mcl_tensor *t) { return t->offset / sizeof(float); }

static mcl_layernorm_desc ln_desc(const mcl_transition_desc *d)
{
    return (mcl_layernorm_desc){d->rows, d->channels, d->dtype, d->eps};
}

/* LayerNorm of x's rows from `row` on, formed on a GEMM's load */
static gemm_layernorm ln_on_load(const mcl_tensor *mean, const mcl_tensor *rstd, const mcl_tensor *gamma,
                                 const mcl_tensor *beta, size_t es, size_t row)
{
    return (gemm_layernorm){mean->mem, rstd->mem, stat_elem(mean) + row, stat_elem(rstd) + row, 0,
                            gamma->mem, beta->mem, elem(gamma, es), elem(beta, es)};
}

/* SwiGLU of h's rows (h_off: their first element), formed on a load or undone on a store */
static gemm_swiglu swiglu_of(const mcl_transition_desc *d, cl_mem h, size_t h_off, int on_a)
{
    size_t f = d->hidden, silu = d->silu_half == MCL_SWIGLU_SILU_SECOND ? f : 0;
    return (gemm_swiglu){on_a, on_a ? NULL : h, h_off, 2 * f, silu, f - silu};
}

/* h = LN(x) W1 */
static gemm_call h_gemm(const mcl_transition_desc *d, const mcl_transition_fwd_tensors *t, const gemm_layernorm *ln)
{
    size_t es = mcl_dtype_size(d->dtype), c = d->channels, f2 = 2 * d->hidden;
    return (gemm_call){.dtype = d->dtype, .m = d->rows, .n = f2, .k = c, .batch = 1,
                       .a = {t->x.mem, elem(&t->x, es), c, 0, 0}, .b = {t->w1.mem, elem(&t->w1, es), f2, 0, 0},
                       .c = {t->h.mem, elem(&t->h, es), f2, 0, 0}, .ln = ln};
}

/* y = SwiGLU(h) W2 */
static gemm_call y_gemm(const mcl_transition_desc *d, const mcl_transition_fwd_tensors *t, const gemm_swiglu *sw)
{
    size_t es = mcl_dtype_size(d->dtype), c = d->channels, f = d->hidden;
    return (gemm_call){.dtype = d->dtype, .m = d->rows, .n = c, .k = f, .batch = 1,
                       .a = {t->h.mem, elem(&t->h, es), 2 * f, 0, 0}, .b = {t->w2.mem, elem(&t->w2, es), c, 0, 0},
                       .c = {t->y.mem, elem(&t->y, es), c, 0, 0}, .swiglu = sw};
}

/* The backward over rows [row, row + rows) of one chunk. */
typedef struct chunk {
    size_t row, rows;
} chunk;

/* dW2 += SwiGLU(h)^T dy over the chunk (a piece of a K range split over chunks) */
static gemm_call dw2_gemm(const mcl_transition_desc *d, const mcl_transition_bwd_tensors *t, chunk k,
                          const gemm_swiglu *sw)
{
    size_t es = mcl_dtype_size(d->dtype), c = d->channels, f = d->hidden;
    return (gemm_call){.dtype = d->dtype, .m = f, .n = c, .k = k.rows, .batch = 1,
                       .a = {t->h.mem, elem(&t->h, es) + k.row * 2 * f, 2 * f, 0, 1},
                       .b = {t->dy.mem, elem(&t->dy, es) + k.row * c, c, 0, 0},
                       .c = {t->dw2.mem, elem(&t->dw2, es), c, 0, 0}, .swiglu = sw};
}

/* dh = SwiGLU'(dy W2^T) over the chunk, into the workspace's chunk of dh */
static gemm_call dh_gemm(const mcl_transition_desc *d, const mcl_transition_bwd_tensors *t, chunk k, cl_mem ws,
                         size_t dh_off, const gemm_swiglu *sw)
{
    size_t es = mcl_dtype_size(d->dtype), c = d->channels, f = d->hidden;
    return (gemm_call){.dtype = d->dtype, .m = k.rows, .n = f, .k = c, .batch = 1,
                       .a = {t->dy.mem, elem(&t->dy, es) + k.row * c, c, 0, 0},
                       .b = {t->w2.mem, elem(&t->w2, es), c, 0, 1}, .c = {ws, dh_off, 2 * f, 0, 0}, .swiglu = sw};
}

/* dLN(x) = dh W1^T over the chunk, into dLN(x) (`dxn`: dx itself, or the workspace's) */
static gemm_call dxn_gemm(const mcl_transition_desc *d, const mcl_transition_bwd_tensors *t, chunk k, cl_mem ws,
                          size_t dh_off, const mcl_tensor *dxn)
{
    size_t es = mcl_dtype_size(d->dtype), c = d->channels, f2 = 2 * d->hidden;
    return (gemm_call){.dtype = d->dtype, .m = k.rows, .n = c, .k = f2, .batch = 1, .a = {ws, dh_off, f2, 0, 0},
                       .b = {t->w1.mem, elem(&t->w1, es), f2, 0, 1},
                       .c = {dxn->mem, elem(dxn, es) + k.row * c, c, 0, 0}};
}

/* dW1 += LN(x)^T dh over the chunk */
static gemm_call dw1_gemm(const mcl_transition_desc *d, const mcl_transition_bwd_tensors *t, chunk k, cl_mem ws,
                          size_t dh_off, const gemm_layernorm *ln)
{
    size_t es = mcl_dtype_size(d->dtype), c = d->channels, f2 = 2 * d->hidden;
    return (gemm_call){.dtype = d->dtype, .m = c, .n = f2, .k = k.rows, .batch = 1,
                       .a = {t->x.mem, elem(&t->x, es) + k.row * c, c, 0, 1}, .b = {ws, dh_off, f2, 0, 0},
                       .c = {t->dw1.mem, elem(&t->dw1, es), f2, 0, 0}, .ln = ln};
}

/* The backward's workspace:
 *  - scratch at offset 0 (where the LayerNorm backward wants its partials), which the
 *    LayerNorm backward and the split partials of each chunk's dLN(x) GEMM share, as they run
 *    one after another on the in-order queue;
 *  - dLN(x), only without dx: with it, dLN(x) goes into dx, and the LayerNorm backward turns
 *    it into dx in place;
 *  - a chunk of dh;
 *  - the fp32 partial slots of dW2 and dW1, to which every chunk adds its piece in order. */
enum { PART_SCRATCH, PART_DXN, PART_DH, PART_DW2, PART_DW1, PART_COUNT };

typedef struct bwd_plan {
    int want_dh; /* dx, dln_weight, dln_bias or dw1 */
    size_t chunks, chunk_rows;
    gemm_plan dw2, dw1; /* the same splits for every chunk, each chunk's k spread over them */
    size_t bytes[PART_COUNT];
} bwd_plan;

static chunk chunk_at(const mcl_transition_desc *d, const bwd_plan *p, size_t i)
{
    size_t row = i * p->chunk_rows, rows = d->rows - row < p->chunk_rows ? d->rows - row : p->chunk_rows;
    return (chunk){row, rows};
}

static mcl_status plan_backward(mcl_context *ctx, const mcl_transition_desc *d, const mcl_transition_bwd_tensors *t,
                                bwd_plan *p)
{
    size_t es = mcl_dtype_size(d->dtype), c = d->channels, f = d->hidden;
    *p = (bwd_plan){.want_dh = mcl_has(&t->dx) || mcl_has(&t->dln_weight) || mcl_has(&t->dln_bias) ||
                               mcl_has(&t->dw1)};
    p->chunk_rows = d->chunk_rows ? d->chunk_rows : DEFAULT_CHUNK_ROWS;
    if (p->chunk_rows > d->rows) p->chunk_rows = d->rows;
    p->chunks = (d->rows + p->chunk_rows - 1) / p->chunk_rows;
    chunk first = chunk_at(d, p, 0);
    const gemm_layernorm ln = {0};
    const gemm_swiglu sw = swiglu_of(d, NULL, 0, 1);
    if (mcl_has(&t->dw2)) {
        gemm_call g = dw2_gemm(d, t, first, &sw);
        MCL_TRY(mcl_gemm_plan(ctx, &g, &p->dw2));
        p->bytes[PART_DW2] = p->dw2.splits * f * c * sizeof(float);
    }
    if (p->want_dh) {
        if (!mcl_has(&t->dx)) p->bytes[PART_DXN] = d->rows * c * es;
        p->bytes[PART_DH] = p->chunk_rows * 2 * f * es;
        for (size_t i = 0; i < p->chunks; i += p->chunks - 1) { /* the first and the last chunk */
            gemm_call g = dxn_gemm(d, t, chunk_at(d, p, i), NULL, 0, &t->dx);
            gemm_plan plan;
            MCL_TRY(mcl_gemm_plan(ctx, &g, &plan));
            mcl_part_grow(&p->bytes[PART_SCRATCH], plan.partial_bytes);
            if (p->chunks == 1) break;
        }
    }
    if (mcl_has(&t->dw1)) {
        gemm_call g = dw1_gemm(d, t, first, NULL, 0, &ln);
        MCL_TRY(mcl_gemm_plan(ctx, &g, &p->dw1));
        p->bytes[PART_DW1] = p->dw1.splits * c * 2 * f * sizeof(float);
    }
    if (mcl_has(&t->dln_weight) || mcl_has(&t->dln_bias)) {
        mcl_layernorm_desc lnd = ln_desc(d);
        size_t bytes;
        MCL_TRY(mcl_layernorm_backward_workspace_size(ctx, &lnd, &bytes));
        mcl_part_grow(&p->bytes[PART_SCRATCH], bytes);
    }
    return MCL_OK;
}

/* ---- enqueue ---------------------------------------------------------------------------- */

/* A GEMM whose split partials (if any) go to the workspace at byte offset partial_off; NULL
 * workspace: the op has no other scratch, so take the context's. */
static mcl_status run_gemm(mcl_context *ctx, const gemm_call *g, cl_mem ws, size_t partial_off)
{
    gemm_plan plan;
    MCL_TRY(mcl_gemm_plan(ctx, g, &plan));
    if (!ws && plan.partial_bytes) MCL_TRY(mcl_workspace(ctx, plan.partial_bytes, &ws));
    return mcl_gemm_enqueue(ctx, g, &plan, ws, partial_off);
}

static mcl_status enqueue_forward(mcl_context *ctx, const mcl_transition_desc *d, const mcl_transition_fwd_tensors *t)
{
    size_t es = mcl_dtype_size(d->dtype);
    mcl_layernorm_desc lnd = ln_desc(d);
    MCL_TRY(mcl_layernorm_stats_into(ctx, &lnd, &t->x, &t->mean, &t->rstd));
    gemm_layernorm ln = ln_on_load(&t->mean, &t->rstd, &t->ln_weight, &t->ln_bias, es, 0);
    gemm_call h = h_gemm(d, t, &ln);
    MCL_TRY(run_gemm(ctx, &h, NULL, 0));
    gemm_swiglu sw = swiglu_of(d, NULL, 0, 1);
    gemm_call y = y_gemm(d, t, &sw);
    return run_gemm(ctx, &y, NULL, 0);
}

/* One chunk of rows: its pieces of dW2 and dW1 (added to the earlier chunks'), its dh and its
 * rows of dLN(x). */
static mcl_status enqueue_chunk(mcl_context *ctx, const mcl_transition_desc *d, const mcl_transition_bwd_tensors *t,
                                const bwd_plan *p, size_t i, cl_mem ws, const size_t *off, const mcl_tensor *dxn)
{
    size_t es = mcl_dtype_size(d->dtype);
    chunk k = chunk_at(d, p, i);
    if (mcl_has(&t->dw2)) {
        gemm_swiglu on_load = swiglu_of(d, NULL, 0, 1);
        gemm_call g = dw2_gemm(d, t, k, &on_load);
        MCL_TRY(mcl_gemm_enqueue_piece(ctx, &g, &p->dw2, ws, off[PART_DW2], 0, p->dw2.splits, i > 0));
    }
    if (!p->want_dh) return MCL_OK;
    size_t dh_off = off[PART_DH] / es;
    gemm_swiglu backward = swiglu_of(d, t->h.mem, elem(&t->h, es) + k.row * 2 * d->hidden, 0);
    gemm_call dh = dh_gemm(d, t, k, ws, dh_off, &backward);
    MCL_TRY(run_gemm(ctx, &dh, ws, off[PART_SCRATCH])); /* never split: its epilogue needs whole sums */
    gemm_call dxn_call = dxn_gemm(d, t, k, ws, dh_off, dxn);
    MCL_TRY(run_gemm(ctx, &dxn_call, ws, off[PART_SCRATCH]));
    if (mcl_has(&t->dw1)) {
        gemm_layernorm ln = ln_on_load(&t->mean, &t->rstd, &t->ln_weight, &t->ln_bias, es, k.row);
        gemm_call g = dw1_gemm(d, t, k, ws, dh_off, &ln);
        MCL_TRY(mcl_gemm_enqueue_piece(ctx, &g, &p->dw1, ws, off[PART_DW1], 0, p->dw1.splits, i > 0));
    }
    return MCL_OK;
}

static mcl_status enqueue_backward(mcl_context *ctx, const mcl_transition_desc *d,
                                   const mcl_transition_bwd_tensors *t, const bwd_plan *p)
{
    size_t off[PART_COUNT];
    cl_mem ws;
    MCL_TRY(mcl_workspace_parts(ctx, p->bytes, PART_COUNT, &ws, off));
    mcl_tensor dxn = mcl_has(&t->dx) ? t->dx : (mcl_tensor){ws, off[PART_DXN]};
    for (size_t i = 0; i < p->chunks; i++) MCL_TRY(enqueue_chunk(ctx, d, t, p, i, ws, off, &dxn));
    chunk all = {0, d->rows};
    if (mcl_has(&t->dw2)) {
        gemm_call g = dw2_gemm(d, t, all, NULL);
        MCL_TRY(mcl_gemm_sum(ctx, &g, ws, off[PART_DW2], p->dw2.splits));
    }
    if (mcl_has(&t->dw1)) {
        gemm_call g = dw1_gemm(d, t, all, ws, 0, NULL);
        MCL_TRY(mcl_gemm_sum(ctx, &g, ws, off[PART_DW1], p->dw1.splits));
    }
    if (!mcl_has(&t->dx) && !mcl_has(&t->dln_weight) && !mcl_has(&t->dln_bias)) return MCL_OK;
    mcl_layernorm_desc lnd = ln_desc(d);
    mcl_layernorm_bwd_tensors lt = {.x = t->x, .weight = t->ln_weight, .mean = t->mean, .rstd = t->rstd,
                                    .dy = dxn, .dx = t->dx, .dweight = t->dln_weight, .dbias = t->dln_bias};
    return mcl_layernorm_backward_into(ctx, &lnd, &lt, ws);
}

/* ---- public entry points ---------------------------------------------------------------- */

mcl_status mcl_transition_forward(mcl_context *ctx, const mcl_transition_desc *desc,
                                  const mcl_transition_fwd_tensors *tensors, cl_event *event)
{
    MCL_TRY(validate_forward(ctx, desc, tensors));
    MCL_TRY(enqueue_forward(ctx, desc, tensors));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

mcl_status mcl_transition_backward(mcl_context *ctx, const mcl_transition_desc *desc,
                                   const mcl_transition_bwd_tensors *tensors, cl_event *event)
{
    MCL_TRY(validate_backward(ctx, desc, tensors));
    bwd_plan plan;
    MCL_TRY(plan_backward(ctx, desc, tensors, &plan));
    MCL_TRY(enqueue_backward(ctx, desc, tensors, &plan));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

mcl_status mcl_transition_backward_workspace_size(mcl_context *ctx, const mcl_transition_desc *desc,
                                                  const mcl_transition_bwd_tensors *tensors, size_t *bytes)
{
    if (!ctx || !desc || !tensors || !bytes)
        return mcl_fail(MCL_ERR_NULL_POINTER, "transition_backward_workspace_size: NULL argument");
    MCL_TRY(validate_desc(desc, "transition_backward_workspace_size"));
    bwd_plan plan;
    MCL_TRY(plan_backward(ctx, desc, tensors, &plan));
    *bytes = mcl_workspace_parts_size(plan.bytes, PART_COUNT);
    return MCL_OK;
}
