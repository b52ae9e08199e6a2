/* Sigmoid gating, SwiGLU and the add: validate -> choose parameters -> enqueue. Kernels:
 * cl/glu/glu.cl. */
#include "glu.h"

#include "ops/common/check.h"
#include "runtime/error.h"
#include "runtime/params.h"
#include "runtime/program.h"

#define FLAG_DX 1u
#define FLAG_DG 2u
#define FLAG_DA 1u
#define FLAG_DB 2u

typedef struct glu_plan {
    glu_params params;    /* effective: vec shrunk to divide the elements and offsets */
    size_t vectors;       /* work units of vec elements */
    size_t local, global; /* the grid-stride loop's work-group and grid */
} glu_plan;

/* ---- validate --------------------------------------------------------------------------- */

/* The descriptor of an op over `count` elements. */
static mcl_status validate_count(size_t count, mcl_dtype dtype, const char *op)
{
    if (count == 0) return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: count must be positive", op);
    return mcl_check_dtype(dtype, op);
}

static mcl_status validate_gating_desc(const mcl_gating_desc *d, const char *op)
{
    return validate_count(d->count, d->dtype, op);
}

static mcl_status validate_add_desc(const mcl_add_desc *d, const char *op)
{
    return validate_count(d->count, d->dtype, op);
}

/* The tensors both gating passes read. */
#define GATING_INPUTS(t)                                                                         \
    MCL_TENSOR("x", &(t)->x, d->dtype, MCL_REQUIRED_IN, d->count),                               \
    MCL_TENSOR("g", &(t)->g, d->dtype, MCL_REQUIRED_IN, d->count)

static mcl_status validate_swiglu_desc(const mcl_swiglu_desc *d, const char *op)
{
    if (d->rows == 0 || d->features == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: rows (%zu) and features (%zu) must be positive", op,
                        d->rows, d->features);
    if (d->features > UINT32_MAX / 2)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: 2 x features (%zu) exceeds 2^32 - 1", op, d->features);
    MCL_TRY(mcl_check_either((int)d->silu_half, MCL_SWIGLU_SILU_FIRST, MCL_SWIGLU_SILU_SECOND, op, "silu_half",
                             "MCL_SWIGLU_SILU_FIRST or _SECOND"));
    return mcl_check_dtype(d->dtype, op);
}

/* ---- choose parameters ------------------------------------------------------------------ */

/* `elements` work units split into vectors of VEC elements, VEC shrunk until it divides
 * `divisor` (the count, or SwiGLU's features) and every tensor's offset. */
static mcl_status choose_plan(mcl_context *ctx, mcl_dtype dtype, size_t elements, size_t divisor,
                              const mcl_tensor *const *tensors, size_t count, glu_plan *plan)
{
    glu_params *p = &plan->params;
    MCL_TRY(mcl_params_lookup(ctx, &mcl_family_glu, dtype, &elements, p, NULL));
    unsigned vec = mcl_offset_vec_limit(mcl_dtype_size(dtype), tensors, count);
    if ((unsigned)p->vec < vec) vec = (unsigned)p->vec;
    while (divisor % vec != 0) vec /= 2;
    p->vec = (int)vec;
    plan->vectors = elements / vec;
    plan->local = (size_t)p->wg;
    size_t groups = mcl_ceil_div(plan->vectors, plan->local);
    size_t max_groups = (size_t)ctx->device.info.compute_units * (size_t)p->groups_per_cu;
    plan->global = (groups < max_groups ? groups : max_groups) * plan->local;
    return MCL_OK;
}

/* ---- enqueue ---------------------------------------------------------------------------- */

static mcl_status run(mcl_context *ctx, mcl_dtype dtype, const glu_plan *plan, const char *name,
                      const mcl_arg *args, size_t nargs, cl_event *event)
{
    mcl_defines defines = {0};
    mcl_define(&defines, "MCL_DTYPE", dtype);
    mcl_define_params(&defines, &mcl_family_glu, &plan->params, "glu/glu");
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, &mcl_family_glu, "glu/glu", &defines, name, &kernel));
    MCL_TRY(mcl_set_args(kernel, args, nargs, name));
    MCL_TRY(mcl_enqueue(ctx, kernel, 1, &plan->global, &plan->local, name));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

/* A kernel of two inputs and one output, count elements each (gating's forward, the add's): its
 * plan, arguments and launch. */
static mcl_status run_binary(mcl_context *ctx, mcl_dtype dtype, size_t count, const mcl_tensor *a,
                             const mcl_tensor *b, const mcl_tensor *y, const char *name, cl_event *event)
{
    glu_plan plan;
    const mcl_tensor *vectorised[] = {a, b, y};
    MCL_TRY(choose_plan(ctx, dtype, count, count, vectorised, 3, &plan));
    size_t es = mcl_dtype_size(dtype);
    cl_ulong a_off = mcl_elem_offset(a, es), b_off = mcl_elem_offset(b, es), y_off = mcl_elem_offset(y, es),
             nvec = plan.vectors;
    mcl_arg args[] = {MCL_ARG(a->mem), MCL_ARG(a_off), MCL_ARG(b->mem), MCL_ARG(b_off),
                      MCL_ARG(y->mem), MCL_ARG(y_off), MCL_ARG(nvec)};
    return run(ctx, dtype, &plan, name, args, MCL_COUNT(args), event);
}

/* ---- public entry points ---------------------------------------------------------------- */

MCL_ENTRY_POINT(gating, forward, fwd)
{
    MCL_ENTER(gating, forward, validate_gating_desc, GATING_INPUTS(t),
              mcl_in_place_of(MCL_TENSOR("y", &t->y, d->dtype, MCL_REQUIRED_OUT, d->count), "x"));
    return run_binary(ctx, d->dtype, d->count, &t->x, &t->g, &t->y, "gating_forward", event);
}

MCL_ENTRY_POINT(gating, backward, bwd)
{
    MCL_ENTER(gating, backward, validate_gating_desc, GATING_INPUTS(t),
              MCL_TENSOR("dy", &t->dy, d->dtype, MCL_REQUIRED_IN, d->count),
              mcl_in_place_of(MCL_TENSOR("dx", &t->dx, d->dtype, MCL_OPTIONAL_OUT, d->count), "dy"),
              MCL_TENSOR("dg", &t->dg, d->dtype, MCL_OPTIONAL_OUT, d->count));
    glu_plan plan;
    const mcl_tensor *vectorised[] = {&t->x, &t->g, &t->dy, &t->dx, &t->dg};
    MCL_TRY(choose_plan(ctx, d->dtype, d->count, d->count, vectorised, 5, &plan));
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong x_off = mcl_elem_offset(&t->x, es), g_off = mcl_elem_offset(&t->g, es),
             dy_off = mcl_elem_offset(&t->dy, es), dx_off = mcl_elem_offset(&t->dx, es),
             dg_off = mcl_elem_offset(&t->dg, es), nvec = plan.vectors;
    cl_uint flags = (mcl_has(&t->dx) ? FLAG_DX : 0) | (mcl_has(&t->dg) ? FLAG_DG : 0);
    mcl_arg args[] = {MCL_ARG(t->x.mem),  MCL_ARG(x_off),  MCL_ARG(t->g.mem),  MCL_ARG(g_off),
                      MCL_ARG(t->dy.mem), MCL_ARG(dy_off), MCL_ARG(t->dx.mem), MCL_ARG(dx_off),
                      MCL_ARG(t->dg.mem), MCL_ARG(dg_off), MCL_ARG(nvec),      MCL_ARG(flags)};
    return run(ctx, d->dtype, &plan, "gating_backward", args, MCL_COUNT(args), event);
}

MCL_ENTRY_POINT(swiglu, forward, fwd)
{
    MCL_ENTER(swiglu, forward, validate_swiglu_desc, MCL_TENSOR("x", &t->x, d->dtype, MCL_REQUIRED_IN, d->rows, 2 * d->features),
              MCL_TENSOR("y", &t->y, d->dtype, MCL_REQUIRED_OUT, d->rows, d->features));
    glu_plan plan;
    const mcl_tensor *vectorised[] = {&t->x, &t->y};
    MCL_TRY(choose_plan(ctx, d->dtype, d->rows * d->features, d->features, vectorised, 2, &plan));
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong x_off = mcl_elem_offset(&t->x, es), y_off = mcl_elem_offset(&t->y, es), nvec = plan.vectors;
    cl_uint features = (cl_uint)d->features, silu_second = d->silu_half == MCL_SWIGLU_SILU_SECOND;
    mcl_arg args[] = {MCL_ARG(t->x.mem), MCL_ARG(x_off),    MCL_ARG(t->y.mem),    MCL_ARG(y_off),
                      MCL_ARG(nvec),     MCL_ARG(features), MCL_ARG(silu_second)};
    return run(ctx, d->dtype, &plan, "swiglu_forward", args, MCL_COUNT(args), event);
}

MCL_ENTRY_POINT(swiglu, backward, bwd)
{
    MCL_ENTER(swiglu, backward, validate_swiglu_desc, MCL_TENSOR("x", &t->x, d->dtype, MCL_REQUIRED_IN, d->rows, 2 * d->features),
              MCL_TENSOR("dy", &t->dy, d->dtype, MCL_REQUIRED_IN, d->rows, d->features),
              MCL_TENSOR("dx", &t->dx, d->dtype, MCL_REQUIRED_OUT, d->rows, 2 * d->features));
    glu_plan plan;
    const mcl_tensor *vectorised[] = {&t->x, &t->dy, &t->dx};
    MCL_TRY(choose_plan(ctx, d->dtype, d->rows * d->features, d->features, vectorised, 3, &plan));
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong x_off = mcl_elem_offset(&t->x, es), dy_off = mcl_elem_offset(&t->dy, es),
             dx_off = mcl_elem_offset(&t->dx, es), nvec = plan.vectors;
    cl_uint features = (cl_uint)d->features, silu_second = d->silu_half == MCL_SWIGLU_SILU_SECOND;
    mcl_arg args[] = {MCL_ARG(t->x.mem),  MCL_ARG(x_off),  MCL_ARG(t->dy.mem), MCL_ARG(dy_off),
                      MCL_ARG(t->dx.mem), MCL_ARG(dx_off), MCL_ARG(nvec),      MCL_ARG(features),
                      MCL_ARG(silu_second)};
    return run(ctx, d->dtype, &plan, "swiglu_backward", args, MCL_COUNT(args), event);
}

MCL_ENTRY_POINT(add, forward, fwd)
{
    MCL_ENTER(add, forward, validate_add_desc, MCL_TENSOR("a", &t->a, d->dtype, MCL_REQUIRED_IN, d->count),
              MCL_TENSOR("b", &t->b, d->dtype, MCL_REQUIRED_IN, d->count),
              mcl_in_place_of(MCL_TENSOR("y", &t->y, d->dtype, MCL_REQUIRED_OUT, d->count), "a"));
    return run_binary(ctx, d->dtype, d->count, &t->a, &t->b, &t->y, "add_forward", event);
}

/* da = dy where da is not dy itself, db = dy. */
MCL_ENTRY_POINT(add, backward, bwd)
{
    MCL_ENTER(add, backward, validate_add_desc, MCL_TENSOR("dy", &t->dy, d->dtype, MCL_REQUIRED_IN, d->count),
              mcl_in_place_of(MCL_TENSOR("da", &t->da, d->dtype, MCL_OPTIONAL_OUT, d->count), "dy"),
              MCL_TENSOR("db", &t->db, d->dtype, MCL_OPTIONAL_OUT, d->count));
    glu_plan plan;
    const mcl_tensor *vectorised[] = {&t->dy, &t->da, &t->db};
    MCL_TRY(choose_plan(ctx, d->dtype, d->count, d->count, vectorised, 3, &plan));
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong dy_off = mcl_elem_offset(&t->dy, es), da_off = mcl_elem_offset(&t->da, es),
             db_off = mcl_elem_offset(&t->db, es), nvec = plan.vectors;
    int da_in_place = t->da.mem == t->dy.mem && t->da.offset == t->dy.offset;
    cl_uint flags = (mcl_has(&t->da) && !da_in_place ? FLAG_DA : 0) | (mcl_has(&t->db) ? FLAG_DB : 0);
    mcl_arg args[] = {MCL_ARG(t->dy.mem), MCL_ARG(dy_off), MCL_ARG(t->da.mem), MCL_ARG(da_off),
                      MCL_ARG(t->db.mem), MCL_ARG(db_off), MCL_ARG(nvec),      MCL_ARG(flags)};
    return run(ctx, d->dtype, &plan, "add_backward", args, MCL_COUNT(args), event);
}
