/* Transition (LayerNorm -> Linear c->2F -> SwiGLU -> Linear F->c): validate -> choose
 * parameters -> enqueue, as steps of a walk; the forward's LayerNorm -> Linear is LayerNorm +
 * Linear's own steps. Every GEMM is the gemm family's, with LayerNorm or SwiGLU formed on the
 * operand load, and the backward's dS -> dh through its SwiGLU-backward epilogue. */
#include "ops/common/check.h"
#include "ops/common/walk.h"
#include "ops/gemm/gemm.h"
#include "ops/layernorm/layernorm.h"
#include "ops/ln_linear/ln_linear.h"
#include "runtime/error.h"

/* The backward's rows per chunk when the caller leaves desc->chunk_rows 0: its dh scratch
 * then holds 32768 x 2F values, and each chunk's GEMMs still fill a large GPU. */
#define DEFAULT_CHUNK_ROWS 32768

/* ---- validate --------------------------------------------------------------------------- */

static mcl_status validate_desc(const mcl_transition_desc *d, const char *op)
{
    if (d->rows == 0 || d->channels == 0 || d->hidden == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: rows (%zu), channels (%zu) and hidden (%zu) must be positive", op,
                        d->rows, d->channels, d->hidden);
    MCL_TRY(mcl_check_dtype(d->dtype, op));
    if (d->channels > UINT32_MAX || d->hidden > UINT32_MAX / 2)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: channels (%zu) or 2 x hidden (%zu) exceeds 2^32 - 1", op,
                        d->channels, d->hidden);
    MCL_TRY(mcl_check_eps(d->eps, op));
    return mcl_check_either((int)d->silu_half, MCL_SWIGLU_SILU_FIRST, MCL_SWIGLU_SILU_SECOND, op, "silu_half",
                            "MCL_SWIGLU_SILU_FIRST or _SECOND");
}

/* The tensors both passes read. */
#define INPUTS(t)                                                                                \
    MCL_LN_INPUT_CHECKS(t, d->dtype, d->rows, d->channels),                                      \
    MCL_TENSOR("w1", &(t)->w1, d->dtype, MCL_REQUIRED_IN, d->channels, 2 * d->hidden),           \
    MCL_TENSOR("w2", &(t)->w2, d->dtype, MCL_REQUIRED_IN, d->hidden, d->channels)
/* What the forward saves and the backward reads: LayerNorm's row statistics and h = LN(x) W1. */
#define SAVED(t, role)                                                                           \
    MCL_LN_STATS_CHECKS(t, role, d->rows), MCL_TENSOR("h", &(t)->h, d->dtype, role, d->rows, 2 * d->hidden)

/* ---- choose parameters ------------------------------------------------------------------ */

static mcl_layernorm_desc ln_desc(const mcl_transition_desc *d)
{
    return (mcl_layernorm_desc){d->rows, d->channels, d->dtype, d->eps};
}

/* SwiGLU of h's rows (first: the element of their start), formed on A's load or undone as C's
 * backward */
static gemm_swiglu swiglu_of(const mcl_transition_desc *d, const mcl_tensor *h, size_t first, gemm_swiglu_role role)
{
    size_t f = d->hidden, silu = d->silu_half == MCL_SWIGLU_SILU_SECOND ? f : 0;
    size_t h_off = h ? (size_t)mcl_elem_offset(h, mcl_dtype_size(d->dtype)) + first : 0;
    return (gemm_swiglu){role, h ? h->mem : NULL, h_off, 2 * f, silu, f - silu};
}

/* h = LN(x) W1 and x's row statistics: a LayerNorm + Linear forward without bias */
static mcl_ln_linear_desc h_desc(const mcl_transition_desc *d)
{
    return (mcl_ln_linear_desc){d->rows, d->channels, 2 * d->hidden, d->dtype, d->eps};
}

static mcl_ln_linear_fwd_tensors h_tensors(const mcl_transition_fwd_tensors *t)
{
    return (mcl_ln_linear_fwd_tensors){.x = t->x, .ln_weight = t->ln_weight, .ln_bias = t->ln_bias, .weight = t->w1,
                                       .y = t->h, .mean = t->mean, .rstd = t->rstd};
}

/* y = SwiGLU(h) W2 */
static gemm_call y_gemm(const mcl_transition_desc *d, const mcl_transition_fwd_tensors *t, const gemm_swiglu *sw)
{
    size_t c = d->channels, f = d->hidden;
    return (gemm_call){.dtype = d->dtype, .m = d->rows, .n = c, .k = f, .batch = 1,
                       .a = gemm_operand(&t->h, d->dtype, 0, 2 * f, 0), .b = gemm_operand(&t->w2, d->dtype, 0, c, 0),
                       .c = gemm_operand(&t->y, d->dtype, 0, c, 0), .swiglu = sw};
}

/* The backward over rows [row, row + rows) of one chunk. */
typedef struct chunk {
    size_t row, rows;
} chunk;

/* dW2 += SwiGLU(h)^T dy over the chunk (a piece of a K range split over chunks) */
static gemm_call dw2_gemm(const mcl_transition_desc *d, const mcl_transition_bwd_tensors *t, chunk k,
                          const gemm_swiglu *sw)
{
    size_t c = d->channels, f = d->hidden;
    return (gemm_call){.dtype = d->dtype, .m = f, .n = c, .k = k.rows, .batch = 1,
                       .a = gemm_operand(&t->h, d->dtype, k.row * 2 * f, 2 * f, 1),
                       .b = gemm_operand(&t->dy, d->dtype, k.row * c, c, 0),
                       .c = gemm_operand(&t->dw2, d->dtype, 0, c, 0), .swiglu = sw};
}

/* dh = SwiGLU'(dy W2^T) over the chunk, into the workspace's chunk of dh */
static gemm_call dh_gemm(const mcl_transition_desc *d, const mcl_transition_bwd_tensors *t, chunk k,
                         const mcl_tensor *dh, const gemm_swiglu *sw)
{
    size_t c = d->channels, f = d->hidden;
    return (gemm_call){.dtype = d->dtype, .m = k.rows, .n = f, .k = c, .batch = 1,
                       .a = gemm_operand(&t->dy, d->dtype, k.row * c, c, 0), .b = gemm_operand(&t->w2, d->dtype, 0, c, 1),
                       .c = gemm_operand(dh, d->dtype, 0, 2 * f, 0), .swiglu = sw};
}

/* dLN(x) = dh W1^T over the chunk, into dLN(x) (`dxn`: dx itself, or the workspace's) */
static gemm_call dxn_gemm(const mcl_transition_desc *d, const mcl_transition_bwd_tensors *t, chunk k,
                          const mcl_tensor *dh, const mcl_tensor *dxn)
{
    size_t c = d->channels, f2 = 2 * d->hidden;
    return (gemm_call){.dtype = d->dtype, .m = k.rows, .n = c, .k = f2, .batch = 1,
                       .a = gemm_operand(dh, d->dtype, 0, f2, 0), .b = gemm_operand(&t->w1, d->dtype, 0, f2, 1),
                       .c = gemm_operand(dxn, d->dtype, k.row * c, c, 0)};
}

/* dW1 += LN(x)^T dh over the chunk */
static gemm_call dw1_gemm(const mcl_transition_desc *d, const mcl_transition_bwd_tensors *t, chunk k,
                          const mcl_tensor *dh, const gemm_layernorm *ln)
{
    size_t c = d->channels, f2 = 2 * d->hidden;
    return (gemm_call){.dtype = d->dtype, .m = c, .n = f2, .k = k.rows, .batch = 1,
                       .a = gemm_operand(&t->x, d->dtype, k.row * c, c, 1), .b = gemm_operand(dh, d->dtype, 0, f2, 0),
                       .c = gemm_operand(&t->dw1, d->dtype, 0, f2, 0), .ln = ln};
}

/* The backward's workspace:
 *  - scratch, which the LayerNorm backward and the split partials of each chunk's dLN(x) GEMM
 *    share, as they run one after another on the in-order queue;
 *  - dLN(x), only without dx: with it, dLN(x) goes into dx, and the LayerNorm backward turns
 *    it into dx in place;
 *  - a chunk of dh;
 *  - the fp32 partial slots of dW2 and dW1, to which every chunk adds its piece in order. */
enum { PART_SCRATCH, PART_DXN, PART_DH, PART_DW2, PART_DW1 };

/* The chunks of the backward and the plans every chunk's weight-gradient pieces share. */
typedef struct bwd_plan {
    int want_dh; /* dx, dln_weight, dln_bias or dw1 */
    size_t chunks, chunk_rows;
    gemm_plan dw2, dw1; /* the same splits for every chunk, each chunk's k spread over them */
    mcl_tensor dw2_slots, dw1_slots, dh, dxn;
} bwd_plan;

static chunk chunk_at(const mcl_transition_desc *d, const bwd_plan *p, size_t i)
{
    size_t row = i * p->chunk_rows, rows = d->rows - row < p->chunk_rows ? d->rows - row : p->chunk_rows;
    return (chunk){row, rows};
}

/* ---- enqueue ---------------------------------------------------------------------------- */

static mcl_status forward_steps(mcl_walk *w, const void *args)
{
    const mcl_op_args *a = args;
    const mcl_transition_desc *d = a->desc;
    const mcl_transition_fwd_tensors *t = a->tensors;
    mcl_ln_linear_desc hd = h_desc(d);
    mcl_ln_linear_fwd_tensors ht = h_tensors(t);
    MCL_TRY(mcl_ln_linear_forward_steps(w, &hd, &ht, "h = LN(x) W1 GEMM", PART_SCRATCH));
    gemm_swiglu sw = swiglu_of(d, NULL, 0, GEMM_SWIGLU_ON_A);
    gemm_call y = y_gemm(d, t, &sw);
    return mcl_gemm_step(w, "y = SwiGLU(h) W2 GEMM", &y, PART_SCRATCH);
}

/* The chunks, the weight gradients' plans (from the first chunk) and the parts they use. */
static mcl_status plan_backward(mcl_walk *w, const mcl_transition_desc *d, const mcl_transition_bwd_tensors *t,
                                bwd_plan *p)
{
    size_t es = mcl_dtype_size(d->dtype), c = d->channels, f = d->hidden;
    *p = (bwd_plan){.want_dh = mcl_has(&t->dx) || mcl_has(&t->dln_weight) || mcl_has(&t->dln_bias) || mcl_has(&t->dw1),
                    .chunk_rows = d->chunk_rows ? d->chunk_rows : DEFAULT_CHUNK_ROWS};
    if (p->chunk_rows > d->rows) p->chunk_rows = d->rows;
    p->chunks = mcl_ceil_div(d->rows, p->chunk_rows);
    chunk first = chunk_at(d, p, 0);
    if (mcl_has(&t->dw2)) {
        gemm_swiglu sw = swiglu_of(d, NULL, 0, GEMM_SWIGLU_ON_A);
        gemm_call g = dw2_gemm(d, t, first, &sw);
        MCL_TRY(mcl_walk_step(w, "dW2 GEMM", mcl_gemm_plan(w->ctx, &g, &p->dw2)));
        p->dw2_slots = mcl_walk_part(w, PART_DW2, p->dw2.splits * f * c * sizeof(float));
    }
    if (!p->want_dh) return MCL_OK;
    p->dxn = mcl_has(&t->dx) ? t->dx : mcl_walk_part(w, PART_DXN, d->rows * c * es);
    p->dh = mcl_walk_part(w, PART_DH, p->chunk_rows * 2 * f * es);
    if (mcl_has(&t->dw1)) {
        gemm_layernorm ln = gemm_layernorm_of(&t->mean, &t->rstd, &t->ln_weight, &t->ln_bias, d->dtype, 0);
        gemm_call g = dw1_gemm(d, t, first, &p->dh, &ln);
        MCL_TRY(mcl_walk_step(w, "dW1 GEMM", mcl_gemm_plan(w->ctx, &g, &p->dw1)));
        p->dw1_slots = mcl_walk_part(w, PART_DW1, p->dw1.splits * c * 2 * f * sizeof(float));
    }
    return MCL_OK;
}

/* One chunk of rows: its pieces of dW2 and dW1 (added to the earlier chunks'), its dh and its
 * rows of dLN(x). */
static mcl_status chunk_steps(mcl_walk *w, const mcl_transition_desc *d, const mcl_transition_bwd_tensors *t,
                              const bwd_plan *p, size_t i)
{
    chunk k = chunk_at(d, p, i);
    if (mcl_has(&t->dw2)) {
        gemm_swiglu on_load = swiglu_of(d, NULL, 0, GEMM_SWIGLU_ON_A);
        gemm_call g = dw2_gemm(d, t, k, &on_load);
        MCL_TRY(mcl_gemm_piece_step(w, "dW2 GEMM", &g, &p->dw2, p->dw2_slots, 0, p->dw2.splits, i > 0));
    }
    if (!p->want_dh) return MCL_OK;
    gemm_swiglu backward = swiglu_of(d, &t->h, k.row * 2 * d->hidden, GEMM_SWIGLU_BACKWARD_ON_C);
    gemm_call dh = dh_gemm(d, t, k, &p->dh, &backward);
    MCL_TRY(mcl_gemm_step(w, "dh GEMM", &dh, PART_SCRATCH)); /* never split: its epilogue needs whole sums */
    gemm_call dxn = dxn_gemm(d, t, k, &p->dh, &p->dxn);
    MCL_TRY(mcl_gemm_step(w, "dLN(x) GEMM", &dxn, PART_SCRATCH));
    if (!mcl_has(&t->dw1)) return MCL_OK;
    gemm_layernorm ln = gemm_layernorm_of(&t->mean, &t->rstd, &t->ln_weight, &t->ln_bias, d->dtype, k.row);
    gemm_call g = dw1_gemm(d, t, k, &p->dh, &ln);
    return mcl_gemm_piece_step(w, "dW1 GEMM", &g, &p->dw1, p->dw1_slots, 0, p->dw1.splits, i > 0);
}

static mcl_status backward_steps(mcl_walk *w, const void *args)
{
    const mcl_op_args *a = args;
    const mcl_transition_desc *d = a->desc;
    const mcl_transition_bwd_tensors *t = a->tensors;
    bwd_plan p;
    MCL_TRY(plan_backward(w, d, t, &p));
    for (size_t i = 0; i < p.chunks; i++) MCL_TRY(chunk_steps(w, d, t, &p, i));
    chunk all = {0, d->rows};
    if (mcl_has(&t->dw2)) {
        gemm_call g = dw2_gemm(d, t, all, NULL);
        MCL_TRY(mcl_gemm_sum_step(w, "dW2 sum", &g, p.dw2_slots, p.dw2.splits));
    }
    if (mcl_has(&t->dw1)) {
        gemm_call g = dw1_gemm(d, t, all, &p.dh, NULL);
        MCL_TRY(mcl_gemm_sum_step(w, "dW1 sum", &g, p.dw1_slots, p.dw1.splits));
    }
    int want_params = mcl_has(&t->dln_weight) || mcl_has(&t->dln_bias);
    if (!mcl_has(&t->dx) && !want_params) return MCL_OK;
    mcl_layernorm_desc lnd = ln_desc(d);
    mcl_layernorm_bwd_tensors lt = {.x = t->x, .weight = t->ln_weight, .mean = t->mean, .rstd = t->rstd,
                                    .dy = p.dxn, .dx = t->dx, .dweight = t->dln_weight, .dbias = t->dln_bias};
    return mcl_layernorm_backward_step(w, "LayerNorm backward", &lnd, &lt, 0, want_params ? PART_SCRATCH : MCL_NO_PART);
}

/* ---- public entry points ---------------------------------------------------------------- */

MCL_WALKED_ENTRY_POINT(transition, forward, fwd, INPUTS(t),
                       MCL_TENSOR("y", &t->y, d->dtype, MCL_REQUIRED_OUT, d->rows, d->channels),
                       SAVED(t, MCL_REQUIRED_OUT))
MCL_WALKED_ENTRY_POINT(transition, backward, bwd, INPUTS(t), SAVED(t, MCL_REQUIRED_IN),
                       MCL_TENSOR("dy", &t->dy, d->dtype, MCL_REQUIRED_IN, d->rows, d->channels),
                       MCL_LN_GRAD_CHECKS(t, d->dtype, d->rows, d->channels),
                       MCL_TENSOR("dw1", &t->dw1, d->dtype, MCL_OPTIONAL_OUT, d->channels, 2 * d->hidden),
                       MCL_TENSOR("dw2", &t->dw2, d->dtype, MCL_OPTIONAL_OUT, d->hidden, d->channels))
MCL_WALKED_WORKSPACE_SIZE(transition)
