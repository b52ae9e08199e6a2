/* LayerNorm + Linear: validate -> choose parameters -> enqueue. Kernels: cl/layernorm.cl (row
 * statistics, the LayerNorm backward) and cl/gemm.cl (GEMMs with LayerNorm on the load). */
#include "megacl.h"

#include "../runtime/error.h"
#include "check.h"
#include "gemm.h"
#include "layernorm.h"

#include <math.h>

/* ---- validate --------------------------------------------------------------------------- */

static mcl_status validate_desc(const mcl_ln_linear_desc *d, const char *op)
{
    if (d->rows == 0 || d->in_features == 0 || d->out_features == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: rows (%zu), in_features (%zu) and out_features (%zu) must be positive",
                        op, d->rows, d->in_features, d->out_features);
    if (mcl_dtype_size(d->dtype) == 0)
        return mcl_fail(MCL_ERR_UNSUPPORTED_DTYPE, "%s: dtype %d is not f32, bf16 or f16", op, (int)d->dtype);
    if (d->in_features > UINT32_MAX)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: in_features %zu exceeds 2^32 - 1", op, d->in_features);
    if (!(d->eps >= 0.0f) || isinf(d->eps))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: eps must be finite and >= 0 (got %g)", op, (double)d->eps);
    return MCL_OK;
}

static mcl_tensor_check tensor(const char *name, const mcl_tensor *t, const mcl_ln_linear_desc *d, size_t rows,
                               size_t cols, int required, int is_output)
{
    return (mcl_tensor_check){name, t, required, is_output, mcl_dtype_size(d->dtype), mcl_dtype_name(d->dtype),
                              {rows, cols}, cols ? 2 : 1, NULL};
}

static mcl_tensor_check stats(const char *name, const mcl_tensor *t, const mcl_ln_linear_desc *d, int is_output)
{
    return (mcl_tensor_check){name, t, 1, is_output, sizeof(float), "f32", {d->rows}, 1, NULL};
}

static mcl_status validate_forward(mcl_context *ctx, const mcl_ln_linear_desc *d, const mcl_ln_linear_fwd_tensors *t)
{
    const char *op = "ln_linear_forward";
    if (!ctx || !d || !t) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL context, desc or tensors", op);
    MCL_TRY(validate_desc(d, op));
    size_t in = d->in_features, out = d->out_features;
    mcl_tensor_check checks[] = {
        tensor("x", &t->x, d, d->rows, in, 1, 0),        tensor("ln_weight", &t->ln_weight, d, in, 0, 0, 0),
        tensor("ln_bias", &t->ln_bias, d, in, 0, 0, 0),  tensor("weight", &t->weight, d, in, out, 1, 0),
        tensor("bias", &t->bias, d, out, 0, 0, 0),       tensor("y", &t->y, d, d->rows, out, 1, 1),
        stats("mean", &t->mean, d, 1),                   stats("rstd", &t->rstd, d, 1),
    };
    return mcl_check_tensors(ctx, op, checks, sizeof checks / sizeof checks[0]);
}

static mcl_status validate_backward(mcl_context *ctx, const mcl_ln_linear_desc *d,
                                    const mcl_ln_linear_bwd_tensors *t)
{
    const char *op = "ln_linear_backward";
    if (!ctx || !d || !t) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL context, desc or tensors", op);
    MCL_TRY(validate_desc(d, op));
    if (!mcl_has(&t->dx) && !mcl_has(&t->dln_weight) && !mcl_has(&t->dln_bias) && !mcl_has(&t->dweight) &&
        !mcl_has(&t->dbias))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: no output requested (dx, dln_weight, dln_bias, dweight, dbias)",
                        op);
    size_t in = d->in_features, out = d->out_features;
    mcl_tensor_check checks[] = {
        tensor("x", &t->x, d, d->rows, in, 1, 0),          tensor("ln_weight", &t->ln_weight, d, in, 0, 0, 0),
        tensor("ln_bias", &t->ln_bias, d, in, 0, 0, 0),    tensor("weight", &t->weight, d, in, out, 1, 0),
        stats("mean", &t->mean, d, 0),                     stats("rstd", &t->rstd, d, 0),
        tensor("dy", &t->dy, d, d->rows, out, 1, 0),       tensor("dx", &t->dx, d, d->rows, in, 0, 1),
        tensor("dln_weight", &t->dln_weight, d, in, 0, 0, 1), tensor("dln_bias", &t->dln_bias, d, in, 0, 0, 1),
        tensor("dweight", &t->dweight, d, in, out, 0, 1),  tensor("dbias", &t->dbias, d, out, 0, 0, 1),
    };
    return mcl_check_tensors(ctx, op, checks, sizeof checks / sizeof checks[0]);
}

/* ---- choose parameters ------------------------------------------------------------------ */

static size_t elem(const mcl_tensor *t, size_t es) { return t->mem ? t->offset / es : 0; }

static mcl_layernorm_desc ln_desc(const mcl_ln_linear_desc *d)
{
    return (mcl_layernorm_desc){d->rows, d->in_features, d->dtype, d->eps};
}

static gemm_layernorm on_load(const mcl_tensor *mean, const mcl_tensor *rstd, const mcl_tensor *gamma,
                              const mcl_tensor *beta, size_t es)
{
    return (gemm_layernorm){mean->mem, rstd->mem, mean->offset / sizeof(float), rstd->offset / sizeof(float), 0,
                            gamma->mem, beta->mem, elem(gamma, es), elem(beta, es)};
}

/* y = LN(x) W + b */
static gemm_call forward_gemm(const mcl_ln_linear_desc *d, const mcl_ln_linear_fwd_tensors *t,
                              const gemm_layernorm *ln)
{
    size_t es = mcl_dtype_size(d->dtype), in = d->in_features, out = d->out_features;
    return (gemm_call){.dtype = d->dtype, .m = d->rows, .n = out, .k = in, .batch = 1,
                       .a = {t->x.mem, elem(&t->x, es), in, 0, 0},
                       .b = {t->weight.mem, elem(&t->weight, es), out, 0, 0},
                       .c = {t->y.mem, elem(&t->y, es), out, 0, 0},
                       .ln = ln, .bias = t->bias.mem, .bias_off = elem(&t->bias, es)};
}

/* dLN(x) = dy W^T into `dest` (dx's own buffer, or the workspace without dx) */
static gemm_call dxn_gemm(const mcl_ln_linear_desc *d, const mcl_ln_linear_bwd_tensors *t, cl_mem dest,
                          size_t dest_off)
{
    size_t es = mcl_dtype_size(d->dtype), in = d->in_features, out = d->out_features;
    return (gemm_call){.dtype = d->dtype, .m = d->rows, .n = in, .k = out, .batch = 1,
                       .a = {t->dy.mem, elem(&t->dy, es), out, 0, 0},
                       .b = {t->weight.mem, elem(&t->weight, es), out, 0, 1},
                       .c = {dest, dest_off, in, 0, 0}};
}

/* dW = LN(x)^T dy, LayerNorm recomputed on the load */
static gemm_call dweight_gemm(const mcl_ln_linear_desc *d, const mcl_ln_linear_bwd_tensors *t,
                              const gemm_layernorm *ln)
{
    size_t es = mcl_dtype_size(d->dtype), in = d->in_features, out = d->out_features;
    return (gemm_call){.dtype = d->dtype, .m = in, .n = out, .k = d->rows, .batch = 1,
                       .a = {t->x.mem, elem(&t->x, es), in, 0, 1},
                       .b = {t->dy.mem, elem(&t->dy, es), out, 0, 0},
                       .c = {t->dweight.mem, elem(&t->dweight, es), out, 0, 0}, .ln = ln};
}

/* The backward keeps its peak memory at the outputs it writes (MegaFold's target):
 *  - dLN(x) goes into dx, and the LayerNorm backward turns it into dx in place (each element
 *    is read before it is overwritten, by the same work-item). Only without dx does dLN(x)
 *    take workspace.
 *  - dW runs first, its split partials in dx's bytes when they fit: dx is written only later.
 *  - Everything else shares one scratch part, at offset 0 where the LayerNorm backward wants
 *    its partials: the kernels that use it run one after another on the in-order queue. */
enum { PART_SCRATCH, PART_DXN, PART_COUNT };

typedef struct bwd_plan {
    int want_dxn;
    int dweight_partials_in_dx;
    size_t dx_partial_off; /* byte offset of dW's partials in dx's buffer */
    gemm_plan dxn, dweight;
    size_t bytes[PART_COUNT];
} bwd_plan;

/* Whether dW's fp32 partials fit in dx's bytes (from the first float-aligned byte on). */
static int dweight_partials_fit_dx(const mcl_ln_linear_desc *d, const mcl_ln_linear_bwd_tensors *t, bwd_plan *p)
{
    if (!mcl_has(&t->dx) || p->dweight.partial_bytes == 0) return 0;
    size_t end = t->dx.offset + d->rows * d->in_features * mcl_dtype_size(d->dtype);
    p->dx_partial_off = (t->dx.offset + sizeof(float) - 1) / sizeof(float) * sizeof(float);
    return p->dx_partial_off + p->dweight.partial_bytes <= end;
}

static mcl_status plan_backward(mcl_context *ctx, const mcl_ln_linear_desc *d, const mcl_ln_linear_bwd_tensors *t,
                                bwd_plan *p)
{
    *p = (bwd_plan){.want_dxn = mcl_has(&t->dx) || mcl_has(&t->dln_weight) || mcl_has(&t->dln_bias)};
    const gemm_layernorm ln = {0};
    if (p->want_dxn) {
        gemm_call g = dxn_gemm(d, t, NULL, 0);
        MCL_TRY(mcl_gemm_plan(ctx, &g, &p->dxn));
        mcl_part_grow(&p->bytes[PART_SCRATCH], p->dxn.partial_bytes);
        if (!mcl_has(&t->dx)) p->bytes[PART_DXN] = d->rows * d->in_features * mcl_dtype_size(d->dtype);
    }
    if (mcl_has(&t->dln_weight) || mcl_has(&t->dln_bias)) {
        mcl_layernorm_desc lnd = ln_desc(d);
        size_t bytes;
        MCL_TRY(mcl_layernorm_backward_workspace_size(ctx, &lnd, &bytes));
        mcl_part_grow(&p->bytes[PART_SCRATCH], bytes);
    }
    if (mcl_has(&t->dweight)) {
        gemm_call g = dweight_gemm(d, t, &ln);
        MCL_TRY(mcl_gemm_plan(ctx, &g, &p->dweight));
        p->dweight_partials_in_dx = dweight_partials_fit_dx(d, t, p);
        if (!p->dweight_partials_in_dx)
            mcl_part_grow(&p->bytes[PART_SCRATCH], p->dweight.partial_bytes);
    }
    if (mcl_has(&t->dbias))
        mcl_part_grow(&p->bytes[PART_SCRATCH],
                      mcl_column_sums_bytes(ctx, d->rows, d->out_features));
    return MCL_OK;
}

/* ---- enqueue ---------------------------------------------------------------------------- */

static mcl_status enqueue_forward(mcl_context *ctx, const mcl_ln_linear_desc *d, const mcl_ln_linear_fwd_tensors *t)
{
    mcl_layernorm_desc lnd = ln_desc(d);
    MCL_TRY(mcl_layernorm_stats_into(ctx, &lnd, &t->x, &t->mean, &t->rstd));
    gemm_layernorm ln = on_load(&t->mean, &t->rstd, &t->ln_weight, &t->ln_bias, mcl_dtype_size(d->dtype));
    gemm_call g = forward_gemm(d, t, &ln);
    gemm_plan plan;
    MCL_TRY(mcl_gemm_plan(ctx, &g, &plan));
    cl_mem ws = NULL;
    if (plan.partial_bytes) MCL_TRY(mcl_workspace(ctx, plan.partial_bytes, &ws));
    return mcl_gemm_enqueue(ctx, &g, &plan, ws, 0);
}

static mcl_status enqueue_backward(mcl_context *ctx, const mcl_ln_linear_desc *d, const mcl_ln_linear_bwd_tensors *t,
                                   const bwd_plan *p)
{
    size_t es = mcl_dtype_size(d->dtype), off[PART_COUNT];
    cl_mem ws;
    MCL_TRY(mcl_workspace_parts(ctx, p->bytes, PART_COUNT, &ws, off));
    if (mcl_has(&t->dweight)) {
        gemm_layernorm ln = on_load(&t->mean, &t->rstd, &t->ln_weight, &t->ln_bias, es);
        gemm_call g = dweight_gemm(d, t, &ln);
        if (p->dweight_partials_in_dx)
            MCL_TRY(mcl_gemm_enqueue(ctx, &g, &p->dweight, t->dx.mem, p->dx_partial_off));
        else
            MCL_TRY(mcl_gemm_enqueue(ctx, &g, &p->dweight, ws, off[PART_SCRATCH]));
    }
    if (mcl_has(&t->dbias))
        MCL_TRY(mcl_column_sums(ctx, d->dtype, t->dy.mem, elem(&t->dy, es), d->rows, d->out_features, t->dbias.mem,
                                elem(&t->dbias, es), ws, off[PART_SCRATCH]));
    if (!p->want_dxn) return MCL_OK;
    mcl_tensor dxn = mcl_has(&t->dx) ? t->dx : (mcl_tensor){ws, off[PART_DXN]};
    gemm_call g = dxn_gemm(d, t, dxn.mem, dxn.offset / es);
    MCL_TRY(mcl_gemm_enqueue(ctx, &g, &p->dxn, ws, off[PART_SCRATCH]));
    mcl_layernorm_desc lnd = ln_desc(d);
    mcl_layernorm_bwd_tensors lt = {.x = t->x, .weight = t->ln_weight, .mean = t->mean, .rstd = t->rstd,
                                    .dy = dxn, .dx = t->dx, .dweight = t->dln_weight, .dbias = t->dln_bias};
    return mcl_layernorm_backward_into(ctx, &lnd, &lt, ws);
}

/* ---- public entry points ---------------------------------------------------------------- */

mcl_status mcl_ln_linear_forward(mcl_context *ctx, const mcl_ln_linear_desc *desc,
                                 const mcl_ln_linear_fwd_tensors *tensors, cl_event *event)
{
    MCL_TRY(validate_forward(ctx, desc, tensors));
    MCL_TRY(enqueue_forward(ctx, desc, tensors));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

mcl_status mcl_ln_linear_backward(mcl_context *ctx, const mcl_ln_linear_desc *desc,
                                  const mcl_ln_linear_bwd_tensors *tensors, cl_event *event)
{
    MCL_TRY(validate_backward(ctx, desc, tensors));
    bwd_plan plan;
    MCL_TRY(plan_backward(ctx, desc, tensors, &plan));
    MCL_TRY(enqueue_backward(ctx, desc, tensors, &plan));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

mcl_status mcl_ln_linear_backward_workspace_size(mcl_context *ctx, const mcl_ln_linear_desc *desc,
                                                 const mcl_ln_linear_bwd_tensors *tensors, size_t *bytes)
{
    if (!ctx || !desc || !tensors || !bytes)
        return mcl_fail(MCL_ERR_NULL_POINTER, "ln_linear_backward_workspace_size: NULL argument");
    MCL_TRY(validate_desc(desc, "ln_linear_backward_workspace_size"));
    bwd_plan plan;
    MCL_TRY(plan_backward(ctx, desc, tensors, &plan));
    *bytes = mcl_workspace_parts_size(plan.bytes, PART_COUNT);
    return MCL_OK;
}
