/* LayerNorm: validate -> choose parameters -> enqueue. Kernels: cl/layernorm/layernorm.cl. */
#include "layernorm.h"

#include "ops/common/check.h"
#include "runtime/error.h"
#include "runtime/params.h"
#include "runtime/program.h"

#define LN_SOURCE "layernorm/layernorm"

/* The bits of the kernels' flags (cl/layernorm/layernorm.cl). */
#define FLAG_WEIGHT 1u
#define FLAG_BIAS 2u
#define FLAG_SAVE_STATS 4u
#define FLAG_STATS_ONLY 8u
#define FLAG_DX 4u
#define FLAG_PARAMS 8u
#define FLAG_DWEIGHT 16u
#define FLAG_DBIAS 32u

typedef struct ln_plan {
    ln_params params;               /* effective: TPR grows for wide rows, VEC shrinks for rows or
                                       offsets it does not divide */
    unsigned items;                 /* column groups a work-item holds */
    size_t groups, rows_per_group;  /* backward row chunks */
    int dy_fp32;                    /* the backward's dy is fp32 whatever the dtype */
} ln_plan;

/* ---- validate --------------------------------------------------------------------------- */

static mcl_status validate_desc(const mcl_layernorm_desc *d, const char *op)
{
    if (d->rows == 0 || d->cols == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: rows (%zu) and cols (%zu) must be positive", op, d->rows,
                        d->cols);
    MCL_TRY(mcl_check_dtype(d->dtype, op));
    if (d->cols > UINT32_MAX) return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: cols %zu exceeds 2^32 - 1", op, d->cols);
    return mcl_check_eps(d->eps, op);
}

/* The tensors both passes read. */
#define INPUTS(t)                                                                                \
    MCL_TENSOR("x", &(t)->x, d->dtype, MCL_REQUIRED_IN, d->rows, d->cols),                       \
    MCL_TENSOR("weight", &(t)->weight, d->dtype, MCL_OPTIONAL_IN, d->cols)
/* The row statistics, saved by the forward (both or neither) and read by the backward. */
#define ROW_STATS(t, role)                                                                       \
    mcl_needing(MCL_TENSOR("mean", &(t)->mean, MCL_F32, role, d->rows), "rstd"),                 \
    mcl_needing(MCL_TENSOR("rstd", &(t)->rstd, MCL_F32, role, d->rows), "mean")

/* ---- choose parameters ------------------------------------------------------------------ */

static unsigned next_pow2(size_t n)
{
    unsigned p = 1;
    while (p < n) p <<= 1;
    return p;
}

static mcl_status choose_plan(mcl_context *ctx, const mcl_layernorm_desc *d, unsigned vec_limit, ln_plan *plan)
{
    const size_t shape[2] = {d->rows, d->cols};
    ln_params *p = &plan->params;
    MCL_TRY(mcl_params_lookup(ctx, &mcl_family_layernorm, d->dtype, shape, p, NULL));
    plan->items = 1;
    plan->dy_fp32 = 0;
    if (p->variant == LN_VARIANT_TILED) {
        if ((unsigned)p->vec > vec_limit) p->vec = (int)vec_limit;
        while (d->cols % (size_t)p->vec != 0) p->vec /= 2;
        /* each work-item holds at most LN_MAX_COLUMNS columns: wide rows get more work-items */
        size_t groups = d->cols / (size_t)p->vec, per_item = LN_MAX_COLUMNS / (size_t)p->vec;
        size_t min_tpr = mcl_ceil_div(groups, per_item);
        if ((size_t)p->tpr < min_tpr) p->tpr = (int)next_pow2(min_tpr);
        if (p->wg < p->tpr) p->wg = p->tpr;
        if ((size_t)p->wg > ctx->device.info.max_work_group_size ||
            (uint64_t)p->wg * 2 * sizeof(float) > ctx->device.info.local_mem_bytes)
            return mcl_fail(MCL_ERR_DEVICE_LIMIT,
                            "layernorm: cols %zu needs %d work-items per row; the device allows work-groups of %zu",
                            d->cols, p->tpr, ctx->device.info.max_work_group_size);
        plan->items = next_pow2(mcl_ceil_div(groups, (size_t)p->tpr));
    } else {
        p->vec = 1;
    }
    size_t rows_per_wg = (size_t)(p->wg / p->tpr);
    size_t max_groups = (size_t)ctx->device.info.compute_units * (size_t)p->groups_per_cu;
    size_t row_blocks = mcl_ceil_div(d->rows, rows_per_wg);
    plan->rows_per_group = mcl_ceil_div(row_blocks, max_groups) * rows_per_wg;
    plan->groups = mcl_ceil_div(d->rows, plan->rows_per_group);
    if (p->variant == LN_VARIANT_REFERENCE) plan->groups = 1; /* one chunk: all rows */
    return MCL_OK;
}

static size_t partial_bytes(const mcl_layernorm_desc *d, const ln_plan *plan)
{
    return plan->groups * 2 * d->cols * sizeof(float);
}

static mcl_status kernel_of(mcl_context *ctx, const mcl_layernorm_desc *d, const ln_plan *plan, const char *name,
                            cl_kernel *kernel)
{
    mcl_defines defines = {0};
    mcl_define(&defines, "MCL_DTYPE", d->dtype);
    mcl_define_params(&defines, &mcl_family_layernorm, &plan->params, LN_SOURCE);
    mcl_define(&defines, "LN_ITEMS", plan->items);
    if (plan->dy_fp32) mcl_define(&defines, "LN_DY_F32", 1);
    return mcl_kernel_get(ctx, &mcl_family_layernorm, LN_SOURCE, &defines, name, kernel);
}

/* ---- enqueue ---------------------------------------------------------------------------- */

static mcl_status enqueue_forward(mcl_context *ctx, const mcl_layernorm_desc *d, const mcl_layernorm_fwd_tensors *t,
                                  const ln_plan *plan)
{
    int tiled = plan->params.variant == LN_VARIANT_TILED;
    const char *name = tiled ? "layernorm_forward" : "layernorm_forward_ref";
    cl_kernel kernel;
    MCL_TRY(kernel_of(ctx, d, plan, name, &kernel));
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong x_off = mcl_elem_offset(&t->x, es), w_off = mcl_elem_offset(&t->weight, es),
             b_off = mcl_elem_offset(&t->bias, es), y_off = mcl_elem_offset(&t->y, es),
             mean_off = mcl_elem_offset(&t->mean, 4), rstd_off = mcl_elem_offset(&t->rstd, 4), rows = d->rows;
    cl_uint cols = (cl_uint)d->cols;
    cl_uint flags = (mcl_has(&t->weight) ? FLAG_WEIGHT : 0) | (mcl_has(&t->bias) ? FLAG_BIAS : 0) |
                    (mcl_has(&t->mean) ? FLAG_SAVE_STATS : 0) | (mcl_has(&t->y) ? 0 : FLAG_STATS_ONLY);
    mcl_arg args[] = {MCL_ARG(t->x.mem),    MCL_ARG(x_off),       MCL_ARG(t->weight.mem), MCL_ARG(w_off),
                      MCL_ARG(t->bias.mem), MCL_ARG(b_off),       MCL_ARG(t->y.mem),      MCL_ARG(y_off),
                      MCL_ARG(t->mean.mem), MCL_ARG(mean_off),    MCL_ARG(t->rstd.mem),   MCL_ARG(rstd_off),
                      MCL_ARG(rows),        MCL_ARG(cols),        MCL_ARG(d->eps),        MCL_ARG(flags)};
    MCL_TRY(mcl_set_args(kernel, args, MCL_COUNT(args), name));
    size_t wg = (size_t)plan->params.wg, local = tiled ? wg : 64;
    size_t rows_per_wg = tiled ? wg / (size_t)plan->params.tpr : 1;
    size_t global = mcl_round_up(mcl_ceil_div(d->rows, rows_per_wg) * (tiled ? local : 1), local);
    return mcl_enqueue(ctx, kernel, 1, &global, &local, name);
}

static mcl_status enqueue_reduce(mcl_context *ctx, const mcl_layernorm_desc *d, const mcl_layernorm_bwd_tensors *t,
                                 const ln_plan *plan, mcl_tensor partial)
{
    const char *name = "layernorm_reduce_partials";
    cl_kernel kernel;
    MCL_TRY(kernel_of(ctx, d, plan, name, &kernel));
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong part_off = partial.offset / sizeof(float), chunks = plan->groups,
             dw_off = mcl_elem_offset(&t->dweight, es), db_off = mcl_elem_offset(&t->dbias, es);
    cl_uint cols = (cl_uint)d->cols;
    cl_uint flags = (mcl_has(&t->dweight) ? FLAG_DWEIGHT : 0) | (mcl_has(&t->dbias) ? FLAG_DBIAS : 0);
    mcl_arg args[] = {MCL_ARG(partial.mem),    MCL_ARG(part_off), MCL_ARG(chunks),        MCL_ARG(cols),
                      MCL_ARG(t->dweight.mem), MCL_ARG(dw_off),   MCL_ARG(t->dbias.mem), MCL_ARG(db_off),
                      MCL_ARG(flags)};
    MCL_TRY(mcl_set_args(kernel, args, MCL_COUNT(args), name));
    size_t split = (size_t)plan->params.reduce_split;
    size_t local[2] = {32, split}, global[2] = {mcl_round_up(2 * d->cols, 32), split};
    return mcl_enqueue(ctx, kernel, 2, global, local, name);
}

static mcl_status launch_backward(mcl_context *ctx, const char *name, const mcl_layernorm_desc *d,
                                  const ln_plan *plan, const mcl_arg *args, size_t nargs, size_t global,
                                  size_t local)
{
    cl_kernel kernel;
    MCL_TRY(kernel_of(ctx, d, plan, name, &kernel));
    MCL_TRY(mcl_set_args(kernel, args, nargs, name));
    return mcl_enqueue(ctx, kernel, 1, &global, &local, name);
}

/* `partial` holds the dweight/dbias partials (want_params). */
static mcl_status enqueue_backward(mcl_context *ctx, const mcl_layernorm_desc *d, const mcl_layernorm_bwd_tensors *t,
                                   const ln_plan *plan, int want_params, mcl_tensor partial)
{
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong x_off = mcl_elem_offset(&t->x, es), w_off = mcl_elem_offset(&t->weight, es),
             mean_off = mcl_elem_offset(&t->mean, 4), rstd_off = mcl_elem_offset(&t->rstd, 4),
             dy_off = mcl_elem_offset(&t->dy, plan->dy_fp32 ? sizeof(float) : es), dx_off = mcl_elem_offset(&t->dx, es),
             part_off = partial.offset / sizeof(float), rows = d->rows, rows_per_group = plan->rows_per_group;
    cl_uint cols = (cl_uint)d->cols;
    cl_uint flags = (mcl_has(&t->weight) ? FLAG_WEIGHT : 0) | (mcl_has(&t->dx) ? FLAG_DX : 0) |
                    (want_params ? FLAG_PARAMS : 0);
    mcl_arg args[] = {MCL_ARG(t->x.mem),    MCL_ARG(x_off),    MCL_ARG(t->weight.mem), MCL_ARG(w_off),
                      MCL_ARG(t->mean.mem), MCL_ARG(mean_off), MCL_ARG(t->rstd.mem),   MCL_ARG(rstd_off),
                      MCL_ARG(t->dy.mem),   MCL_ARG(dy_off),   MCL_ARG(t->dx.mem),     MCL_ARG(dx_off),
                      MCL_ARG(partial.mem), MCL_ARG(part_off), MCL_ARG(rows),          MCL_ARG(cols),
                      MCL_ARG(rows_per_group), MCL_ARG(flags)};
    const size_t nargs = MCL_COUNT(args);
    if (plan->params.variant == LN_VARIANT_TILED) {
        size_t wg = (size_t)plan->params.wg;
        MCL_TRY(launch_backward(ctx, "layernorm_backward", d, plan, args, nargs, plan->groups * wg, wg));
    } else {
        if (want_params) /* before dx: dy may be dx itself (in place) */
            MCL_TRY(launch_backward(ctx, "layernorm_param_grads_ref", d, plan, args, nargs,
                                    mcl_round_up(d->cols, 64), 64));
        if (mcl_has(&t->dx))
            MCL_TRY(launch_backward(ctx, "layernorm_backward_dx_ref", d, plan, args, nargs,
                                    mcl_round_up(d->rows, 64), 64));
    }
    return want_params ? enqueue_reduce(ctx, d, t, plan, partial) : MCL_OK;
}

/* ---- steps of the ops built on LayerNorm ------------------------------------------------ */

mcl_status mcl_layernorm_stats_step(mcl_walk *w, const char *step, const mcl_layernorm_desc *desc,
                                    const mcl_tensor *x, const mcl_tensor *mean, const mcl_tensor *rstd)
{
    if (!w->enqueue) return MCL_OK;
    ln_plan plan;
    const mcl_tensor *vectorised[] = {x};
    mcl_status status = choose_plan(w->ctx, desc, mcl_offset_vec_limit(mcl_dtype_size(desc->dtype), vectorised, 1),
                                    &plan);
    mcl_layernorm_fwd_tensors t = {.x = *x, .mean = *mean, .rstd = *rstd};
    if (status == MCL_OK) status = enqueue_forward(w->ctx, desc, &t, &plan);
    return mcl_walk_step(w, step, status);
}

mcl_status mcl_layernorm_backward_step(mcl_walk *w, const char *step, const mcl_layernorm_desc *desc,
                                       const mcl_layernorm_bwd_tensors *t, int dy_fp32, int params_part)
{
    ln_plan plan;
    const mcl_tensor *stored[] = {&t->x, &t->weight, &t->dx, &t->dy};
    unsigned vec_limit = mcl_offset_vec_limit(mcl_dtype_size(desc->dtype), stored, dy_fp32 ? 3 : 4);
    if (dy_fp32) {
        unsigned dy_limit = mcl_offset_vec_limit(sizeof(float), &stored[3], 1);
        if (dy_limit < vec_limit) vec_limit = dy_limit;
    }
    MCL_TRY(mcl_walk_step(w, step, choose_plan(w->ctx, desc, vec_limit, &plan)));
    plan.dy_fp32 = dy_fp32;
    int want_params = params_part != MCL_NO_PART;
    mcl_tensor partial = want_params ? mcl_walk_part(w, params_part, partial_bytes(desc, &plan)) : (mcl_tensor){0};
    return w->enqueue ? mcl_walk_step(w, step, enqueue_backward(w->ctx, desc, t, &plan, want_params, partial))
                      : MCL_OK;
}

/* ---- public entry points ---------------------------------------------------------------- */

MCL_ENTRY_POINT(layernorm, forward, fwd)
{
    MCL_ENTER(layernorm, forward, validate_desc, INPUTS(t),
              MCL_TENSOR("bias", &t->bias, d->dtype, MCL_OPTIONAL_IN, d->cols),
              mcl_in_place_of(MCL_TENSOR("y", &t->y, d->dtype, MCL_REQUIRED_OUT, d->rows, d->cols), "x"),
              ROW_STATS(t, MCL_OPTIONAL_OUT));
    ln_plan plan;
    const mcl_tensor *vectorised[] = {&t->x, &t->weight, &t->bias, &t->y};
    MCL_TRY(choose_plan(ctx, d, mcl_offset_vec_limit(mcl_dtype_size(d->dtype), vectorised, 4), &plan));
    MCL_TRY(enqueue_forward(ctx, d, t, &plan));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

static mcl_status backward_steps(mcl_walk *w, const void *opaque)
{
    const mcl_op_args *a = opaque;
    const mcl_layernorm_bwd_tensors *t = a->tensors;
    int want_params = mcl_has(&t->dweight) || mcl_has(&t->dbias);
    return mcl_layernorm_backward_step(w, NULL, a->desc, t, 0, want_params ? 0 : MCL_NO_PART);
}

MCL_ENTRY_POINT(layernorm, backward, bwd)
{
    MCL_ENTER(layernorm, backward, validate_desc, INPUTS(t), ROW_STATS(t, MCL_REQUIRED_IN),
              MCL_TENSOR("dy", &t->dy, d->dtype, MCL_REQUIRED_IN, d->rows, d->cols),
              mcl_in_place_of(MCL_TENSOR("dx", &t->dx, d->dtype, MCL_OPTIONAL_OUT, d->rows, d->cols), "dy"),
              MCL_TENSOR("dweight", &t->dweight, d->dtype, MCL_OPTIONAL_OUT, d->cols),
              MCL_TENSOR("dbias", &t->dbias, d->dtype, MCL_OPTIONAL_OUT, d->cols));
    return mcl_walk_op(ctx, "layernorm_backward", backward_steps, &(mcl_op_args){d, t}, event);
}

mcl_status mcl_layernorm_backward_workspace_size(mcl_context *ctx, const mcl_layernorm_desc *desc, size_t *bytes)
{
    if (!ctx || !desc || !bytes)
        return mcl_fail(MCL_ERR_NULL_POINTER, "layernorm_backward_workspace_size: NULL argument");
    MCL_TRY(validate_desc(desc, "layernorm_backward_workspace_size"));
    ln_plan plan;
    MCL_TRY(choose_plan(ctx, desc, 8, &plan)); /* the vector width does not change the size */
    size_t partials = partial_bytes(desc, &plan);
    *bytes = mcl_workspace_parts_size(&partials, 1); /* the one part the backward's walk takes */
    return MCL_OK;
}
