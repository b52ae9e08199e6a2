/* LayerNorm + Linear: validate -> choose parameters -> enqueue, as steps of a walk. Kernels:
 * the layernorm family's (row statistics, the LayerNorm backward) and the gemm family's (GEMMs
 * with LayerNorm on the load). */
#include "ln_linear.h"

#include "ops/common/check.h"
#include "ops/common/walk.h"
#include "ops/gemm/gemm.h"
#include "ops/layernorm/layernorm.h"
#include "runtime/error.h"

/* ---- validate --------------------------------------------------------------------------- */

static mcl_status validate_desc(const mcl_ln_linear_desc *d, const char *op)
{
    if (d->rows == 0 || d->in_features == 0 || d->out_features == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: rows (%zu), in_features (%zu) and out_features (%zu) must be positive",
                        op, d->rows, d->in_features, d->out_features);
    MCL_TRY(mcl_check_dtype(d->dtype, op));
    if (d->in_features > UINT32_MAX)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: in_features %zu exceeds 2^32 - 1", op, d->in_features);
    return mcl_check_eps(d->eps, op);
}

/* The tensors both passes read. */
#define INPUTS(t)                                                                                \
    MCL_LN_INPUT_CHECKS(t, d->dtype, d->rows, d->in_features),                                   \
    MCL_TENSOR("weight", &(t)->weight, d->dtype, MCL_REQUIRED_IN, d->in_features, d->out_features)

/* ---- choose parameters ------------------------------------------------------------------ */

static mcl_layernorm_desc ln_desc(const mcl_ln_linear_desc *d)
{
    return (mcl_layernorm_desc){d->rows, d->in_features, d->dtype, d->eps};
}

/* y = LN(x) W + b */
static gemm_call forward_gemm(const mcl_ln_linear_desc *d, const mcl_ln_linear_fwd_tensors *t,
                              const gemm_layernorm *ln)
{
    size_t in = d->in_features, out = d->out_features, es = mcl_dtype_size(d->dtype);
    return (gemm_call){.dtype = d->dtype, .m = d->rows, .n = out, .k = in, .batch = 1,
                       .a = gemm_operand(&t->x, d->dtype, 0, in, 0), .b = gemm_operand(&t->weight, d->dtype, 0, out, 0),
                       .c = gemm_operand(&t->y, d->dtype, 0, out, 0), .ln = ln, .bias = t->bias.mem,
                       .bias_off = mcl_elem_offset(&t->bias, es)};
}

/* dLN(x) = dy W^T into dxn (dx's own buffer, or the workspace without dx) */
static gemm_call dxn_gemm(const mcl_ln_linear_desc *d, const mcl_ln_linear_bwd_tensors *t, const mcl_tensor *dxn)
{
    size_t in = d->in_features, out = d->out_features;
    return (gemm_call){.dtype = d->dtype, .m = d->rows, .n = in, .k = out, .batch = 1,
                       .a = gemm_operand(&t->dy, d->dtype, 0, out, 0), .b = gemm_operand(&t->weight, d->dtype, 0, out, 1),
                       .c = gemm_operand(dxn, d->dtype, 0, in, 0)};
}

/* dW = LN(x)^T dy, LayerNorm recomputed on the load */
static gemm_call dweight_gemm(const mcl_ln_linear_desc *d, const mcl_ln_linear_bwd_tensors *t,
                              const gemm_layernorm *ln)
{
    size_t in = d->in_features, out = d->out_features;
    return (gemm_call){.dtype = d->dtype, .m = in, .n = out, .k = d->rows, .batch = 1,
                       .a = gemm_operand(&t->x, d->dtype, 0, in, 1), .b = gemm_operand(&t->dy, d->dtype, 0, out, 0),
                       .c = gemm_operand(&t->dweight, d->dtype, 0, out, 0), .ln = ln};
}

/* The backward keeps its peak memory at the outputs it writes (MegaFold's target):
 *  - dLN(x) goes into dx, and the LayerNorm backward turns it into dx in place (each element
 *    is read before it is overwritten, by the same work-item). Only without dx does dLN(x)
 *    take workspace.
 *  - dW runs first, its split partials in dx's bytes when they fit: dx is written only later.
 *  - Everything else shares one scratch part: the kernels that use it run one after another
 *    on the in-order queue. */
enum { PART_SCRATCH, PART_DXN };

/* Where dW's fp32 partials go: dx's bytes from the first float-aligned one, when they fit. */
static mcl_tensor dweight_partials(mcl_walk *w, const mcl_ln_linear_desc *d, const mcl_ln_linear_bwd_tensors *t,
                                   const gemm_plan *plan)
{
    size_t end = t->dx.offset + d->rows * d->in_features * mcl_dtype_size(d->dtype);
    mcl_tensor in_dx = {t->dx.mem, mcl_round_up(t->dx.offset, sizeof(float))};
    int fits = mcl_has(&t->dx) && plan->partial_bytes > 0 && in_dx.offset + plan->partial_bytes <= end;
    return fits ? in_dx : mcl_walk_part(w, PART_SCRATCH, plan->partial_bytes);
}

/* ---- enqueue ---------------------------------------------------------------------------- */

mcl_status mcl_ln_linear_forward_steps(mcl_walk *w, const mcl_ln_linear_desc *d, const mcl_ln_linear_fwd_tensors *t,
                                       const char *gemm_step, int part)
{
    mcl_layernorm_desc lnd = ln_desc(d);
    MCL_TRY(mcl_layernorm_stats_step(w, "row statistics", &lnd, &t->x, &t->mean, &t->rstd));
    gemm_layernorm ln = gemm_layernorm_of(&t->mean, &t->rstd, &t->ln_weight, &t->ln_bias, d->dtype, 0);
    gemm_call g = forward_gemm(d, t, &ln);
    return mcl_gemm_step(w, gemm_step, &g, part);
}

static mcl_status forward_steps(mcl_walk *w, const void *args)
{
    const mcl_op_args *a = args;
    return mcl_ln_linear_forward_steps(w, a->desc, a->tensors, "LN(x) W GEMM", PART_SCRATCH);
}

static mcl_status backward_steps(mcl_walk *w, const void *args)
{
    const mcl_op_args *a = args;
    const mcl_ln_linear_desc *d = a->desc;
    const mcl_ln_linear_bwd_tensors *t = a->tensors;
    if (mcl_has(&t->dweight)) {
        gemm_layernorm ln = gemm_layernorm_of(&t->mean, &t->rstd, &t->ln_weight, &t->ln_bias, d->dtype, 0);
        gemm_call g = dweight_gemm(d, t, &ln);
        gemm_plan plan;
        MCL_TRY(mcl_walk_step(w, "dW GEMM", mcl_gemm_plan(w->ctx, &g, &plan)));
        MCL_TRY(mcl_gemm_planned_step(w, "dW GEMM", &g, &plan, dweight_partials(w, d, t, &plan)));
    }
    if (mcl_has(&t->dbias))
        MCL_TRY(mcl_column_sums_step(w, "db column sums", d->dtype, &t->dy, d->rows, d->out_features, &t->dbias,
                                     PART_SCRATCH));
    if (!mcl_has(&t->dx) && !mcl_has(&t->dln_weight) && !mcl_has(&t->dln_bias)) return MCL_OK;
    mcl_tensor dxn = mcl_has(&t->dx) ? t->dx
                                     : mcl_walk_part(w, PART_DXN, d->rows * d->in_features * mcl_dtype_size(d->dtype));
    gemm_call g = dxn_gemm(d, t, &dxn);
    MCL_TRY(mcl_gemm_step(w, "dLN(x) GEMM", &g, PART_SCRATCH));
    mcl_layernorm_desc lnd = ln_desc(d);
    mcl_layernorm_bwd_tensors lt = {.x = t->x, .weight = t->ln_weight, .mean = t->mean, .rstd = t->rstd,
                                    .dy = dxn, .dx = t->dx, .dweight = t->dln_weight, .dbias = t->dln_bias};
    int want_params = mcl_has(&t->dln_weight) || mcl_has(&t->dln_bias);
    return mcl_layernorm_backward_step(w, "LayerNorm backward", &lnd, &lt, 0, want_params ? PART_SCRATCH : MCL_NO_PART);
}

/* ---- public entry points ---------------------------------------------------------------- */

MCL_WALKED_ENTRY_POINT(ln_linear, forward, fwd, INPUTS(t),
                       MCL_TENSOR("bias", &t->bias, d->dtype, MCL_OPTIONAL_IN, d->out_features),
                       MCL_TENSOR("y", &t->y, d->dtype, MCL_REQUIRED_OUT, d->rows, d->out_features),
                       MCL_LN_STATS_CHECKS(t, MCL_REQUIRED_OUT, d->rows))
MCL_WALKED_ENTRY_POINT(ln_linear, backward, bwd, INPUTS(t), MCL_LN_STATS_CHECKS(t, MCL_REQUIRED_IN, d->rows),
                       MCL_TENSOR("dy", &t->dy, d->dtype, MCL_REQUIRED_IN, d->rows, d->out_features),
                       MCL_LN_GRAD_CHECKS(t, d->dtype, d->rows, d->in_features),
                       MCL_TENSOR("dweight", &t->dweight, d->dtype, MCL_OPTIONAL_OUT, d->in_features, d->out_features),
                       MCL_TENSOR("dbias", &t->dbias, d->dtype, MCL_OPTIONAL_OUT, d->out_features))
MCL_WALKED_WORKSPACE_SIZE(ln_linear)
