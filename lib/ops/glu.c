/* Sigmoid gating and SwiGLU: validate -> choose parameters -> enqueue. Kernels: cl/glu.cl. */
#include "megacl.h"

#include "../runtime/error.h"
#include "../runtime/program.h"
#include "check.h"
#include "families.h"

#include <stdio.h>

#define FLAG_DX 1u
#define FLAG_DG 2u

typedef struct glu_plan {
    size_t vectors;       /* work units of GLU_VEC elements */
    size_t local, global; /* the grid-stride loop's work-group and grid */
    char defines[256];
} glu_plan;

/* ---- validate --------------------------------------------------------------------------- */

static mcl_status validate_dtype(mcl_dtype dtype, const char *op)
{
    if (mcl_dtype_size(dtype) == 0)
        return mcl_fail(MCL_ERR_UNSUPPORTED_DTYPE, "%s: dtype %d is not f32, bf16 or f16", op, (int)dtype);
    return MCL_OK;
}

static mcl_tensor_check flat(const char *name, const mcl_tensor *t, const mcl_gating_desc *d, int required,
                             int is_output)
{
    return (mcl_tensor_check){name, t, required, is_output, mcl_dtype_size(d->dtype),
                              mcl_dtype_name(d->dtype), {d->count}, 1, NULL};
}

static mcl_status validate_gating(mcl_context *ctx, const mcl_gating_desc *d, const void *t, const char *op)
{
    if (!ctx || !d || !t) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL context, desc or tensors", op);
    if (d->count == 0) return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: count must be positive", op);
    return validate_dtype(d->dtype, op);
}

static mcl_status validate_gating_forward(mcl_context *ctx, const mcl_gating_desc *d,
                                          const mcl_gating_fwd_tensors *t)
{
    const char *op = "gating_forward";
    MCL_TRY(validate_gating(ctx, d, t, op));
    mcl_tensor_check checks[] = {flat("x", &t->x, d, 1, 0), flat("g", &t->g, d, 1, 0), flat("y", &t->y, d, 1, 1)};
    checks[2].may_alias = "x";
    return mcl_check_tensors(ctx, op, checks, sizeof checks / sizeof checks[0]);
}

static mcl_status validate_gating_backward(mcl_context *ctx, const mcl_gating_desc *d,
                                           const mcl_gating_bwd_tensors *t)
{
    const char *op = "gating_backward";
    MCL_TRY(validate_gating(ctx, d, t, op));
    if (!mcl_has(&t->dx) && !mcl_has(&t->dg))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: no output requested (dx, dg)", op);
    mcl_tensor_check checks[] = {flat("x", &t->x, d, 1, 0), flat("g", &t->g, d, 1, 0),
                                 flat("dy", &t->dy, d, 1, 0), flat("dx", &t->dx, d, 0, 1),
                                 flat("dg", &t->dg, d, 0, 1)};
    checks[3].may_alias = "dy";
    return mcl_check_tensors(ctx, op, checks, sizeof checks / sizeof checks[0]);
}

static mcl_tensor_check rows_of(const char *name, const mcl_tensor *t, const mcl_swiglu_desc *d, size_t width,
                                int is_output)
{
    return (mcl_tensor_check){name, t, 1, is_output, mcl_dtype_size(d->dtype),
                              mcl_dtype_name(d->dtype), {d->rows, width}, 2, NULL};
}

static mcl_status validate_swiglu(mcl_context *ctx, const mcl_swiglu_desc *d, const void *t, const char *op)
{
    if (!ctx || !d || !t) return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL context, desc or tensors", op);
    if (d->rows == 0 || d->features == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: rows (%zu) and features (%zu) must be positive", op,
                        d->rows, d->features);
    if (d->features > UINT32_MAX / 2)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: 2 x features (%zu) exceeds 2^32 - 1", op, d->features);
    if (d->silu_half != MCL_SWIGLU_SILU_FIRST && d->silu_half != MCL_SWIGLU_SILU_SECOND)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "%s: silu_half %d is not MCL_SWIGLU_SILU_FIRST or _SECOND",
                        op, (int)d->silu_half);
    return validate_dtype(d->dtype, op);
}

static mcl_status validate_swiglu_forward(mcl_context *ctx, const mcl_swiglu_desc *d,
                                          const mcl_swiglu_fwd_tensors *t)
{
    const char *op = "swiglu_forward";
    MCL_TRY(validate_swiglu(ctx, d, t, op));
    mcl_tensor_check checks[] = {rows_of("x", &t->x, d, 2 * d->features, 0),
                                 rows_of("y", &t->y, d, d->features, 1)};
    return mcl_check_tensors(ctx, op, checks, sizeof checks / sizeof checks[0]);
}

static mcl_status validate_swiglu_backward(mcl_context *ctx, const mcl_swiglu_desc *d,
                                           const mcl_swiglu_bwd_tensors *t)
{
    const char *op = "swiglu_backward";
    MCL_TRY(validate_swiglu(ctx, d, t, op));
    mcl_tensor_check checks[] = {rows_of("x", &t->x, d, 2 * d->features, 0),
                                 rows_of("dy", &t->dy, d, d->features, 0),
                                 rows_of("dx", &t->dx, d, 2 * d->features, 1)};
    return mcl_check_tensors(ctx, op, checks, sizeof checks / sizeof checks[0]);
}

/* ---- choose parameters ------------------------------------------------------------------ */

/* `elements` work units split into vectors of VEC elements, VEC shrunk until it divides
 * `divisor` (the count, or SwiGLU's features) and every tensor's offset. */
static mcl_status choose_plan(mcl_context *ctx, mcl_dtype dtype, size_t elements, size_t divisor,
                              const mcl_tensor *const *tensors, size_t count, glu_plan *plan)
{
    mcl_params params;
    MCL_TRY(mcl_params_lookup(ctx, &mcl_family_glu, dtype, &elements, &params));
    int *v = params.values;
    unsigned vec = mcl_offset_vec_limit(mcl_dtype_size(dtype), tensors, count);
    if ((unsigned)v[GLU_VEC] < vec) vec = (unsigned)v[GLU_VEC];
    while (divisor % vec != 0) vec /= 2;
    v[GLU_VEC] = (int)vec;
    plan->vectors = elements / vec;
    plan->local = (size_t)v[GLU_WG];
    size_t groups = (plan->vectors + plan->local - 1) / plan->local;
    size_t max_groups = (size_t)ctx->device.info.compute_units * (size_t)v[GLU_GROUPS_PER_CU];
    plan->global = (groups < max_groups ? groups : max_groups) * plan->local;
    char defines[200];
    mcl_params_defines(&params, defines, sizeof defines);
    snprintf(plan->defines, sizeof plan->defines, "-DMCL_DTYPE=%d %s", (int)dtype, defines);
    return MCL_OK;
}

/* ---- enqueue ---------------------------------------------------------------------------- */

static mcl_status run(mcl_context *ctx, const glu_plan *plan, const char *name, const mcl_arg *args,
                      size_t nargs, cl_event *event)
{
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, "glu", plan->defines, name, &kernel));
    MCL_TRY(mcl_set_args(kernel, args, nargs, name));
    MCL_TRY(mcl_enqueue(ctx, kernel, 1, &plan->global, &plan->local, name));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

/* ---- public entry points ---------------------------------------------------------------- */

mcl_status mcl_gating_forward(mcl_context *ctx, const mcl_gating_desc *desc, const mcl_gating_fwd_tensors *t,
                              cl_event *event)
{
    MCL_TRY(validate_gating_forward(ctx, desc, t));
    glu_plan plan;
    const mcl_tensor *vectorised[] = {&t->x, &t->g, &t->y};
    MCL_TRY(choose_plan(ctx, desc->dtype, desc->count, desc->count, vectorised, 3, &plan));
    size_t es = mcl_dtype_size(desc->dtype);
    cl_ulong x_off = mcl_elem_offset(&t->x, es), g_off = mcl_elem_offset(&t->g, es),
             y_off = mcl_elem_offset(&t->y, es), nvec = plan.vectors;
    mcl_arg args[] = {MCL_ARG(t->x.mem), MCL_ARG(x_off), MCL_ARG(t->g.mem), MCL_ARG(g_off),
                      MCL_ARG(t->y.mem), MCL_ARG(y_off), MCL_ARG(nvec)};
    return run(ctx, &plan, "gating_forward", args, sizeof args / sizeof args[0], event);
}

mcl_status mcl_gating_backward(mcl_context *ctx, const mcl_gating_desc *desc, const mcl_gating_bwd_tensors *t,
                               cl_event *event)
{
    MCL_TRY(validate_gating_backward(ctx, desc, t));
    glu_plan plan;
    const mcl_tensor *vectorised[] = {&t->x, &t->g, &t->dy, &t->dx, &t->dg};
    MCL_TRY(choose_plan(ctx, desc->dtype, desc->count, desc->count, vectorised, 5, &plan));
    size_t es = mcl_dtype_size(desc->dtype);
    cl_ulong x_off = mcl_elem_offset(&t->x, es), g_off = mcl_elem_offset(&t->g, es),
             dy_off = mcl_elem_offset(&t->dy, es), dx_off = mcl_elem_offset(&t->dx, es),
             dg_off = mcl_elem_offset(&t->dg, es), nvec = plan.vectors;
    cl_uint flags = (mcl_has(&t->dx) ? FLAG_DX : 0) | (mcl_has(&t->dg) ? FLAG_DG : 0);
    mcl_arg args[] = {MCL_ARG(t->x.mem),  MCL_ARG(x_off),  MCL_ARG(t->g.mem),  MCL_ARG(g_off),
                      MCL_ARG(t->dy.mem), MCL_ARG(dy_off), MCL_ARG(t->dx.mem), MCL_ARG(dx_off),
                      MCL_ARG(t->dg.mem), MCL_ARG(dg_off), MCL_ARG(nvec),      MCL_ARG(flags)};
    return run(ctx, &plan, "gating_backward", args, sizeof args / sizeof args[0], event);
}

mcl_status mcl_swiglu_forward(mcl_context *ctx, const mcl_swiglu_desc *desc, const mcl_swiglu_fwd_tensors *t,
                              cl_event *event)
{
    MCL_TRY(validate_swiglu_forward(ctx, desc, t));
    glu_plan plan;
    const mcl_tensor *vectorised[] = {&t->x, &t->y};
    MCL_TRY(choose_plan(ctx, desc->dtype, desc->rows * desc->features, desc->features, vectorised, 2, &plan));
    size_t es = mcl_dtype_size(desc->dtype);
    cl_ulong x_off = mcl_elem_offset(&t->x, es), y_off = mcl_elem_offset(&t->y, es), nvec = plan.vectors;
    cl_uint features = (cl_uint)desc->features, silu_second = desc->silu_half == MCL_SWIGLU_SILU_SECOND;
    mcl_arg args[] = {MCL_ARG(t->x.mem), MCL_ARG(x_off),    MCL_ARG(t->y.mem),    MCL_ARG(y_off),
                      MCL_ARG(nvec),     MCL_ARG(features), MCL_ARG(silu_second)};
    return run(ctx, &plan, "swiglu_forward", args, sizeof args / sizeof args[0], event);
}

mcl_status mcl_swiglu_backward(mcl_context *ctx, const mcl_swiglu_desc *desc, const mcl_swiglu_bwd_tensors *t,
                               cl_event *event)
{
    MCL_TRY(validate_swiglu_backward(ctx, desc, t));
    glu_plan plan;
    const mcl_tensor *vectorised[] = {&t->x, &t->dy, &t->dx};
    MCL_TRY(choose_plan(ctx, desc->dtype, desc->rows * desc->features, desc->features, vectorised, 3, &plan));
    size_t es = mcl_dtype_size(desc->dtype);
    cl_ulong x_off = mcl_elem_offset(&t->x, es), dy_off = mcl_elem_offset(&t->dy, es),
             dx_off = mcl_elem_offset(&t->dx, es), nvec = plan.vectors;
    cl_uint features = (cl_uint)desc->features, silu_second = desc->silu_half == MCL_SWIGLU_SILU_SECOND;
    mcl_arg args[] = {MCL_ARG(t->x.mem),  MCL_ARG(x_off),  MCL_ARG(t->dy.mem), MCL_ARG(dy_off),
                      MCL_ARG(t->dx.mem), MCL_ARG(dx_off), MCL_ARG(nvec),      MCL_ARG(features),
                      MCL_ARG(silu_second)};
    return run(ctx, &plan, "swiglu_backward", args, sizeof args / sizeof args[0], event);
}
