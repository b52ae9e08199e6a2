/* LayerNorm: validate -> choose parameters -> enqueue. Kernels: cl/layernorm.cl. */
#include "megacl.h"

#include "../runtime/error.h"
#include "../runtime/program.h"
#include "check.h"
#include "families.h"
#include "layernorm.h"

#include <math.h>
#include <stdio.h>

#define FLAG_WEIGHT 1u
#define FLAG_BIAS 2u
#define FLAG_SAVE_STATS 4u
#define FLAG_STATS_ONLY 8u
#define FLAG_DX 4u
#define FLAG_PARAMS 8u
#define FLAG_DWEIGHT 16u
#define FLAG_DBIAS 32u

typedef struct ln_plan {
    mcl_params params;
    unsigned tpr, vec, wg, items; /* effective values: TPR grows for wide rows, VEC shrinks for
                                     rows or offsets it does not divide */
    size_t groups, rows_per_group; /* backward row chunks */
    char defines[512];
} ln_plan;

/* ---- validate --------------------------------------------------------------------------- */

static mcl_status validate_desc(const mcl_layernorm_desc *d, const char *op)
{
    if (d->rows == 0 || d->cols == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: rows (%zu) and cols (%zu) must be positive", op,
                        d->rows, d->cols);
    if (mcl_dtype_size(d->dtype) == 0)
        return mcl_fail(MCL_ERR_UNSUPPORTED_DTYPE, "%s: dtype %d is not f32, bf16 or f16", op,
                        (int)d->dtype);
    if (d->cols > UINT32_MAX)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: cols %zu exceeds 2^32 - 1", op, d->cols);
    if (!(d->eps >= 0.0f) || isinf(d->eps))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: eps must be finite and >= 0 (got %g)", op,
                        (double)d->eps);
    return MCL_OK;
}

static mcl_tensor_check matrix(const char *name, const mcl_tensor *t, const mcl_layernorm_desc *d,
                               int required, int is_output)
{
    return (mcl_tensor_check){name, t, required, is_output, mcl_dtype_size(d->dtype),
                              mcl_dtype_name(d->dtype), {d->rows, d->cols}, 2, NULL};
}

static mcl_tensor_check vector(const char *name, const mcl_tensor *t, const mcl_layernorm_desc *d,
                               int is_output)
{
    return (mcl_tensor_check){name, t, 0, is_output, mcl_dtype_size(d->dtype),
                              mcl_dtype_name(d->dtype), {d->cols}, 1, NULL};
}

static mcl_tensor_check stats(const char *name, const mcl_tensor *t, const mcl_layernorm_desc *d,
                              int required, int is_output)
{
    return (mcl_tensor_check){name, t, required, is_output, sizeof(float), "f32", {d->rows}, 1, NULL};
}

static mcl_status validate_forward(mcl_context *ctx, const mcl_layernorm_desc *d,
                                   const mcl_layernorm_fwd_tensors *t)
{
    const char *op = "layernorm_forward";
    if (!ctx || !d || !t) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL context, desc or tensors", op);
    MCL_TRY(validate_desc(d, op));
    if (mcl_has(&t->mean) != mcl_has(&t->rstd))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: mean and rstd are saved together", op);
    mcl_tensor_check checks[] = {
        matrix("x", &t->x, d, 1, 0),       vector("weight", &t->weight, d, 0),
        vector("bias", &t->bias, d, 0),    matrix("y", &t->y, d, 1, 1),
        stats("mean", &t->mean, d, 0, 1),  stats("rstd", &t->rstd, d, 0, 1),
    };
    checks[3].may_alias = "x";
    return mcl_check_tensors(ctx, op, checks, sizeof checks / sizeof checks[0]);
}

static mcl_status validate_backward(mcl_context *ctx, const mcl_layernorm_desc *d,
                                    const mcl_layernorm_bwd_tensors *t)
{
    const char *op = "layernorm_backward";
    if (!ctx || !d || !t) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL context, desc or tensors", op);
    MCL_TRY(validate_desc(d, op));
    if (!mcl_has(&t->dx) && !mcl_has(&t->dweight) && !mcl_has(&t->dbias))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: no output requested (dx, dweight, dbias)", op);
    mcl_tensor_check checks[] = {
        matrix("x", &t->x, d, 1, 0),         vector("weight", &t->weight, d, 0),
        stats("mean", &t->mean, d, 1, 0),    stats("rstd", &t->rstd, d, 1, 0),
        matrix("dy", &t->dy, d, 1, 0),       matrix("dx", &t->dx, d, 0, 1),
        vector("dweight", &t->dweight, d, 1), vector("dbias", &t->dbias, d, 1),
    };
    checks[5].may_alias = "dy";
    return mcl_check_tensors(ctx, op, checks, sizeof checks / sizeof checks[0]);
}

/* ---- choose parameters ------------------------------------------------------------------ */

static unsigned next_pow2(size_t n)
{
    unsigned p = 1;
    while (p < n) p <<= 1;
    return p;
}

static mcl_status choose_plan(mcl_context *ctx, const mcl_layernorm_desc *d, unsigned vec_limit,
                              ln_plan *plan)
{
    const size_t shape[2] = {d->rows, d->cols};
    MCL_TRY(mcl_params_lookup(ctx, &mcl_family_layernorm, d->dtype, shape, &plan->params));
    int *v = plan->params.values;
    plan->tpr = (unsigned)v[LN_TPR];
    plan->wg = (unsigned)v[LN_WG];
    plan->vec = 1;
    plan->items = 1;
    if (v[LN_VARIANT] == LN_VARIANT_TILED) {
        plan->vec = (unsigned)v[LN_VEC] < vec_limit ? (unsigned)v[LN_VEC] : vec_limit;
        while (d->cols % plan->vec != 0) plan->vec /= 2;
        /* each work-item holds at most LN_MAX_COLUMNS columns: wide rows get more work-items */
        size_t groups = d->cols / plan->vec, per_item = LN_MAX_COLUMNS / plan->vec;
        size_t min_tpr = (groups + per_item - 1) / per_item;
        if (plan->tpr < min_tpr) plan->tpr = next_pow2(min_tpr);
        if (plan->wg < plan->tpr) plan->wg = plan->tpr;
        if (plan->wg > ctx->device.info.max_work_group_size ||
            (uint64_t)plan->wg * 2 * sizeof(float) > ctx->device.info.local_mem_bytes)
            return mcl_fail(MCL_ERR_DEVICE_LIMIT,
                            "layernorm: cols %zu needs %u work-items per row; the device allows "
                            "work-groups of %zu",
                            d->cols, plan->tpr, ctx->device.info.max_work_group_size);
        plan->items = next_pow2((groups + plan->tpr - 1) / plan->tpr);
    }
    size_t rows_per_wg = plan->wg / plan->tpr;
    size_t max_groups = (size_t)ctx->device.info.compute_units * v[LN_GROUPS_PER_CU];
    size_t row_blocks = (d->rows + rows_per_wg - 1) / rows_per_wg;
    size_t blocks_per_group = (row_blocks + max_groups - 1) / max_groups;
    plan->rows_per_group = blocks_per_group * rows_per_wg;
    plan->groups = (d->rows + plan->rows_per_group - 1) / plan->rows_per_group;
    if (v[LN_VARIANT] == LN_VARIANT_REFERENCE) plan->groups = 1; /* one chunk: all rows */

    mcl_params effective = plan->params;
    effective.values[LN_TPR] = (int)plan->tpr;
    effective.values[LN_WG] = (int)plan->wg;
    effective.values[LN_VEC] = (int)plan->vec;
    char defines[400];
    mcl_params_defines(&effective, defines, sizeof defines);
    snprintf(plan->defines, sizeof plan->defines, "-DMCL_DTYPE=%d %s -DLN_ITEMS=%u", (int)d->dtype,
             defines, plan->items);
    return MCL_OK;
}

static size_t partial_bytes(const mcl_layernorm_desc *d, const ln_plan *plan)
{
    return plan->groups * 2 * d->cols * sizeof(float);
}

/* ---- enqueue ---------------------------------------------------------------------------- */

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

static mcl_status enqueue_forward(mcl_context *ctx, const mcl_layernorm_desc *d,
                                  const mcl_layernorm_fwd_tensors *t, const ln_plan *plan)
{
    int tiled = plan->params.values[LN_VARIANT] == LN_VARIANT_TILED;
    const char *name = tiled ? "layernorm_forward" : "layernorm_forward_ref";
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, "layernorm", plan->defines, name, &kernel));
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong x_off = mcl_elem_offset(&t->x, es), w_off = mcl_elem_offset(&t->weight, es),
             b_off = mcl_elem_offset(&t->bias, es), y_off = mcl_elem_offset(&t->y, es),
             mean_off = mcl_elem_offset(&t->mean, 4), rstd_off = mcl_elem_offset(&t->rstd, 4);
    cl_ulong rows = d->rows;
    cl_uint cols = (cl_uint)d->cols;
    cl_uint flags = (mcl_has(&t->weight) ? FLAG_WEIGHT : 0) | (mcl_has(&t->bias) ? FLAG_BIAS : 0) |
                    (mcl_has(&t->mean) ? FLAG_SAVE_STATS : 0) | (mcl_has(&t->y) ? 0 : FLAG_STATS_ONLY);
    mcl_arg args[] = {MCL_ARG(t->x.mem),    MCL_ARG(x_off),    MCL_ARG(t->weight.mem),
                      MCL_ARG(w_off),       MCL_ARG(t->bias.mem), MCL_ARG(b_off),
                      MCL_ARG(t->y.mem),    MCL_ARG(y_off),    MCL_ARG(t->mean.mem),
                      MCL_ARG(mean_off),    MCL_ARG(t->rstd.mem), MCL_ARG(rstd_off),
                      MCL_ARG(rows),        MCL_ARG(cols),     MCL_ARG(d->eps),
                      MCL_ARG(flags)};
    MCL_TRY(mcl_set_args(kernel, args, sizeof args / sizeof args[0], name));
    size_t local = tiled ? plan->wg : 64;
    size_t rows_per_wg = tiled ? plan->wg / plan->tpr : 1;
    size_t global = round_up(d->rows, rows_per_wg) / rows_per_wg * (tiled ? local : 1);
    global = round_up(global, local);
    return mcl_enqueue(ctx, kernel, 1, &global, &local, name);
}

static mcl_status enqueue_reduce(mcl_context *ctx, const mcl_layernorm_desc *d,
                                 const mcl_layernorm_bwd_tensors *t, const ln_plan *plan,
                                 cl_mem partial)
{
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, "layernorm", plan->defines, "layernorm_reduce_partials", &kernel));
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong chunks = plan->groups, dw_off = mcl_elem_offset(&t->dweight, es),
             db_off = mcl_elem_offset(&t->dbias, es);
    cl_uint cols = (cl_uint)d->cols;
    cl_uint flags = (mcl_has(&t->dweight) ? FLAG_DWEIGHT : 0) | (mcl_has(&t->dbias) ? FLAG_DBIAS : 0);
    mcl_arg args[] = {MCL_ARG(partial),  MCL_ARG(chunks),         MCL_ARG(cols),
                      MCL_ARG(t->dweight.mem), MCL_ARG(dw_off), MCL_ARG(t->dbias.mem),
                      MCL_ARG(db_off),   MCL_ARG(flags)};
    MCL_TRY(mcl_set_args(kernel, args, sizeof args / sizeof args[0], "layernorm_reduce_partials"));
    size_t split = (size_t)plan->params.values[LN_REDUCE_SPLIT];
    size_t local[2] = {32, split}, global[2] = {round_up(2 * d->cols, 32), split};
    return mcl_enqueue(ctx, kernel, 2, global, local, "layernorm_reduce_partials");
}

/* `partial` holds the dweight/dbias partials from its start (unused without them). */
static mcl_status enqueue_backward(mcl_context *ctx, const mcl_layernorm_desc *d,
                                   const mcl_layernorm_bwd_tensors *t, const ln_plan *plan, cl_mem partial)
{
    int tiled = plan->params.values[LN_VARIANT] == LN_VARIANT_TILED;
    int want_params = mcl_has(&t->dweight) || mcl_has(&t->dbias);
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong x_off = mcl_elem_offset(&t->x, es), w_off = mcl_elem_offset(&t->weight, es),
             mean_off = mcl_elem_offset(&t->mean, 4), rstd_off = mcl_elem_offset(&t->rstd, 4),
             dy_off = mcl_elem_offset(&t->dy, es), dx_off = mcl_elem_offset(&t->dx, es);
    cl_ulong rows = d->rows, rows_per_group = plan->rows_per_group;
    cl_uint cols = (cl_uint)d->cols;
    cl_uint flags = (mcl_has(&t->weight) ? FLAG_WEIGHT : 0) | (mcl_has(&t->dx) ? FLAG_DX : 0) |
                    (want_params ? FLAG_PARAMS : 0);
    mcl_arg args[] = {MCL_ARG(t->x.mem),   MCL_ARG(x_off),    MCL_ARG(t->weight.mem),
                      MCL_ARG(w_off),      MCL_ARG(t->mean.mem), MCL_ARG(mean_off),
                      MCL_ARG(t->rstd.mem), MCL_ARG(rstd_off), MCL_ARG(t->dy.mem),
                      MCL_ARG(dy_off),     MCL_ARG(t->dx.mem), MCL_ARG(dx_off),
                      MCL_ARG(partial),    MCL_ARG(rows),     MCL_ARG(cols),
                      MCL_ARG(rows_per_group), MCL_ARG(flags)};
    const size_t nargs = sizeof args / sizeof args[0];
    cl_kernel kernel;
    if (tiled) {
        MCL_TRY(mcl_kernel_get(ctx, "layernorm", plan->defines, "layernorm_backward", &kernel));
        MCL_TRY(mcl_set_args(kernel, args, nargs, "layernorm_backward"));
        size_t local = plan->wg, global = plan->groups * plan->wg;
        MCL_TRY(mcl_enqueue(ctx, kernel, 1, &global, &local, "layernorm_backward"));
    } else {
        size_t local = 64;
        if (want_params) { /* before dx: dy may be dx itself (in place) */
            MCL_TRY(mcl_kernel_get(ctx, "layernorm", plan->defines, "layernorm_param_grads_ref", &kernel));
            MCL_TRY(mcl_set_args(kernel, args, nargs, "layernorm_param_grads_ref"));
            size_t global = round_up(d->cols, local);
            MCL_TRY(mcl_enqueue(ctx, kernel, 1, &global, &local, "layernorm_param_grads_ref"));
        }
        if (mcl_has(&t->dx)) {
            MCL_TRY(mcl_kernel_get(ctx, "layernorm", plan->defines, "layernorm_backward_dx_ref", &kernel));
            MCL_TRY(mcl_set_args(kernel, args, nargs, "layernorm_backward_dx_ref"));
            size_t global = round_up(d->rows, local);
            MCL_TRY(mcl_enqueue(ctx, kernel, 1, &global, &local, "layernorm_backward_dx_ref"));
        }
    }
    return want_params ? enqueue_reduce(ctx, d, t, plan, partial) : MCL_OK;
}

/* ---- public entry points ---------------------------------------------------------------- */

mcl_status mcl_layernorm_forward(mcl_context *ctx, const mcl_layernorm_desc *desc,
                                 const mcl_layernorm_fwd_tensors *tensors, cl_event *event)
{
    ln_plan plan;
    MCL_TRY(validate_forward(ctx, desc, tensors));
    const mcl_tensor *vectorised[] = {&tensors->x, &tensors->weight, &tensors->bias, &tensors->y};
    MCL_TRY(choose_plan(ctx, desc, mcl_offset_vec_limit(mcl_dtype_size(desc->dtype), vectorised, 4),
                        &plan));
    MCL_TRY(enqueue_forward(ctx, desc, tensors, &plan));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

mcl_status mcl_layernorm_stats_into(mcl_context *ctx, const mcl_layernorm_desc *desc, const mcl_tensor *x,
                                    const mcl_tensor *mean, const mcl_tensor *rstd)
{
    ln_plan plan;
    const mcl_tensor *vectorised[] = {x};
    MCL_TRY(choose_plan(ctx, desc, mcl_offset_vec_limit(mcl_dtype_size(desc->dtype), vectorised, 1), &plan));
    mcl_layernorm_fwd_tensors t = {.x = *x, .mean = *mean, .rstd = *rstd};
    return enqueue_forward(ctx, desc, &t, &plan);
}

mcl_status mcl_layernorm_backward(mcl_context *ctx, const mcl_layernorm_desc *desc,
                                  const mcl_layernorm_bwd_tensors *tensors, cl_event *event)
{
    MCL_TRY(validate_backward(ctx, desc, tensors));
    cl_mem partial = NULL;
    if (mcl_has(&tensors->dweight) || mcl_has(&tensors->dbias)) {
        size_t bytes;
        MCL_TRY(mcl_layernorm_backward_workspace_size(ctx, desc, &bytes));
        MCL_TRY(mcl_workspace(ctx, bytes, &partial));
    }
    MCL_TRY(mcl_layernorm_backward_into(ctx, desc, tensors, partial));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

mcl_status mcl_layernorm_backward_into(mcl_context *ctx, const mcl_layernorm_desc *desc,
                                       const mcl_layernorm_bwd_tensors *tensors, cl_mem partial)
{
    ln_plan plan;
    const mcl_tensor *vectorised[] = {&tensors->x, &tensors->weight, &tensors->dy, &tensors->dx};
    MCL_TRY(choose_plan(ctx, desc, mcl_offset_vec_limit(mcl_dtype_size(desc->dtype), vectorised, 4),
                        &plan));
    return enqueue_backward(ctx, desc, tensors, &plan, partial);
}

mcl_status mcl_layernorm_backward_workspace_size(mcl_context *ctx, const mcl_layernorm_desc *desc,
                                                 size_t *bytes)
{
    if (!ctx || !desc || !bytes)
        return mcl_fail(MCL_ERR_NULL_POINTER, "layernorm_backward_workspace_size: NULL argument");
    ln_plan plan;
    MCL_TRY(validate_desc(desc, "layernorm_backward_workspace_size"));
    MCL_TRY(choose_plan(ctx, desc, 8, &plan)); /* the vector width does not change the size */
    *bytes = partial_bytes(desc, &plan);
    return MCL_OK;
}
