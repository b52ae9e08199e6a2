/* Transpose: validate -> choose parameters -> enqueue. Kernel: cl/layout/transpose.cl. */
#include "layout.h"

#include "ops/common/check.h"
#include "runtime/error.h"
#include "runtime/params.h"
#include "runtime/program.h"

#define TRANSPOSE_SOURCE "layout/transpose"

typedef struct transpose_plan {
    layout_params params; /* effective: vec shrunk to divide the width and the offsets */
    size_t units;         /* work-items: vectors of vec values */
} transpose_plan;

/* ---- validate --------------------------------------------------------------------------- */

static mcl_status validate_desc(const mcl_transpose_desc *d, const char *op)
{
    if (!d->batch || !d->rows || !d->cols || !d->width)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "%s: batch (%zu), rows (%zu), cols (%zu) and width (%zu) must be positive",
                        op, d->batch, d->rows, d->cols, d->width);
    return mcl_check_dtype(d->dtype, op);
}

/* x's layout [batch, rows, cols, width], and y's [batch, cols, rows, width] */
#define ROWS_FIRST(name, t, role) MCL_TENSOR(name, t, d->dtype, role, d->batch, d->rows, d->cols, d->width)
#define COLS_FIRST(name, t, role) MCL_TENSOR(name, t, d->dtype, role, d->batch, d->cols, d->rows, d->width)

/* ---- choose parameters ------------------------------------------------------------------ */

static mcl_status choose_plan(mcl_context *ctx, const mcl_transpose_desc *d, const mcl_tensor *src,
                              const mcl_tensor *dst, transpose_plan *plan)
{
    const size_t shape[3] = {d->rows, d->cols, d->width};
    layout_params *p = &plan->params;
    MCL_TRY(mcl_params_lookup(ctx, &mcl_family_layout, d->dtype, shape, p, NULL));
    const mcl_tensor *vectorised[] = {src, dst};
    unsigned vec = mcl_offset_vec_limit(mcl_dtype_size(d->dtype), vectorised, 2);
    if ((unsigned)p->vec < vec) vec = (unsigned)p->vec;
    while (d->width % vec != 0) vec /= 2;
    p->vec = (int)vec;
    plan->units = d->batch * d->rows * d->cols * (d->width / vec); /* the tensor checks bounded the count */
    return MCL_OK;
}

/* ---- enqueue ---------------------------------------------------------------------------- */

/* dst = src transposed, src with `rows` rows of `cols` (the forward's, or swapped back). */
static mcl_status run(mcl_context *ctx, const mcl_transpose_desc *d, size_t rows, size_t cols, const mcl_tensor *src,
                      const mcl_tensor *dst, cl_event *event)
{
    transpose_plan plan;
    MCL_TRY(choose_plan(ctx, d, src, dst, &plan));
    mcl_defines defines = {0};
    mcl_define(&defines, "MCL_DTYPE", d->dtype);
    mcl_define_params(&defines, &mcl_family_layout, &plan.params, TRANSPOSE_SOURCE);
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(ctx, &mcl_family_layout, TRANSPOSE_SOURCE, &defines, "transpose", &kernel));
    size_t es = mcl_dtype_size(d->dtype);
    cl_ulong src_off = mcl_elem_offset(src, es), dst_off = mcl_elem_offset(dst, es), rows_l = rows, cols_l = cols,
             width = d->width, units = plan.units;
    mcl_arg args[] = {MCL_ARG(src->mem), MCL_ARG(src_off), MCL_ARG(dst->mem), MCL_ARG(dst_off),
                      MCL_ARG(rows_l),   MCL_ARG(cols_l),  MCL_ARG(width),    MCL_ARG(units)};
    MCL_TRY(mcl_set_args(kernel, args, MCL_COUNT(args), "transpose"));
    size_t local = (size_t)plan.params.wg, global = mcl_round_up(plan.units, local);
    MCL_TRY(mcl_enqueue(ctx, kernel, 1, &global, &local, "transpose"));
    mcl_hand_event(ctx, event);
    return MCL_OK;
}

/* ---- public entry points ---------------------------------------------------------------- */

MCL_ENTRY_POINT(transpose, forward, fwd)
{
    MCL_ENTER(transpose, forward, validate_desc, ROWS_FIRST("x", &t->x, MCL_REQUIRED_IN),
              COLS_FIRST("y", &t->y, MCL_REQUIRED_OUT));
    return run(ctx, d, d->rows, d->cols, &t->x, &t->y, event);
}

MCL_ENTRY_POINT(transpose, backward, bwd)
{
    MCL_ENTER(transpose, backward, validate_desc, COLS_FIRST("dy", &t->dy, MCL_REQUIRED_IN),
              ROWS_FIRST("dx", &t->dx, MCL_REQUIRED_OUT));
    return run(ctx, d, d->cols, d->rows, &t->dy, &t->dx, event);
}
