/* What FLuRKA's steps share: parts, launches, chunks of rows and sums over them (steps.h). */
#include "steps.h"

#include "ops/common/check.h"
#include "runtime/program.h"

#include <stdio.h>

fl_buf fl_part(mcl_walk *w, int part, size_t floats)
{
    mcl_tensor t = mcl_walk_part(w, part, floats * sizeof(float));
    return (fl_buf){t.mem, t.offset / sizeof(float)};
}

fl_buf fl_tensor(const mcl_tensor *t, mcl_dtype dtype) { return (fl_buf){t->mem, mcl_elem_offset(t, mcl_dtype_size(dtype))}; }

mcl_status fl_launch(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const char *source, const char *name,
                     cl_uint dims, const size_t *global, const size_t *local, const mcl_arg *args, size_t nargs)
{
    char path[32];
    snprintf(path, sizeof path, "flurka/%s", source);
    mcl_defines defines = {0};
    mcl_define(&defines, "MCL_DTYPE", d->dtype);
    mcl_define_params(&defines, &mcl_family_flurka, &plan->params, path);
    mcl_define(&defines, "FL_MAP", d->map);
    mcl_define(&defines, "FL_D", (long long)d->head_dim);
    mcl_define(&defines, "FL_L", (long long)plan->len);
    mcl_define(&defines, "FL_GROUP", plan->params.row_wg);
    cl_kernel kernel;
    MCL_TRY(mcl_kernel_get(w->ctx, &mcl_family_flurka, path, &defines, name, &kernel));
    MCL_TRY(mcl_set_args(kernel, args, nargs, name));
    size_t rounded[3];
    for (cl_uint i = 0; i < dims; i++) rounded[i] = mcl_round_up(global[i], local[i]);
    return mcl_enqueue(w->ctx, kernel, dims, rounded, local, name);
}

fl_chunk fl_chunk_of(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, size_t capacity, int gradients)
{
    size_t rows = plan->bh * capacity;
    return (fl_chunk){0, 0, capacity, fl_part(w, FL_PART_F, rows * plan->len),
                      fl_part(w, FL_PART_G, gradients ? rows * plan->len : 0),
                      fl_part(w, FL_PART_NUMZ, rows * (d->head_dim + 1))};
}

int fl_chunk_next(fl_chunk *c, size_t total)
{
    c->first += c->count;
    c->count = c->first >= total ? 0 : total - c->first < c->capacity ? total - c->first : c->capacity;
    return c->count > 0;
}

gemm_matrix fl_chunk_operand(const fl_chunk *c, fl_buf b, size_t ld, int trans)
{
    return (gemm_matrix){b.mem, (size_t)b.off, ld, c->capacity * ld, trans, 1};
}

gemm_matrix fl_heads_operand(const mcl_flurka_desc *d, const mcl_tensor *t, size_t first, int trans)
{
    gemm_matrix m = gemm_operand(t, d->dtype, first, d->head_dim, trans);
    m.batch_stride = d->seq * d->head_dim;
    return m;
}

gemm_matrix fl_fp32_rows(fl_buf b, size_t rows, size_t ld, size_t first)
{
    return (gemm_matrix){b.mem, (size_t)b.off + first * ld, ld, rows * ld, 0, 1};
}

mcl_status fl_chunk_launch(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_chunk *c,
                           const char *source, const char *name, size_t width, size_t local, const mcl_arg *args,
                           size_t nargs)
{
    const size_t global[3] = {width, c->count, plan->bh}, locals[3] = {local, 1, 1};
    return fl_launch(w, d, plan, source, name, 3, global, locals, args, nargs);
}

gemm_matrix fl_amat(const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys, const mcl_tensor *w, int trans)
{
    size_t D = d->head_dim;
    if (d->map == MCL_FLURKA_SOFTMAX) return (gemm_matrix){keys->kt.mem, (size_t)keys->kt.off, D, plan->keys * D, trans, 1};
    return (gemm_matrix){w->mem, (size_t)mcl_elem_offset(w, sizeof(float)), D, 0, trans, 1};
}

mcl_status fl_sum_begin(mcl_walk *w, const char *step, int part, fl_sum *sum)
{
    MCL_TRY(mcl_walk_step(w, step, mcl_gemm_plan(w->ctx, &sum->call, &sum->plan)));
    const gemm_call *g = &sum->call;
    sum->slots = mcl_walk_part(w, part, sum->plan.splits * g->batch * g->m * g->n * sizeof(float));
    return MCL_OK;
}

mcl_status fl_sum_add(mcl_walk *w, const char *step, const fl_sum *sum, const fl_chunk *c)
{
    gemm_call piece = sum->call;
    piece.k = c->count;
    piece.b.off += c->first * sum->b_row;
    return mcl_gemm_piece_step(w, step, &piece, &sum->plan, sum->slots, 0, sum->plan.splits, c->first > 0);
}

mcl_status fl_sum_end(mcl_walk *w, const char *step, const fl_sum *sum)
{
    return mcl_gemm_sum_step(w, step, &sum->call, sum->slots, sum->plan.splits);
}
