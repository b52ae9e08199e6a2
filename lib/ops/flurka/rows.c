/* FLuRKA's query rows (steps.h), a chunk of rows of every head at a time: f = phi(q) through the
 * GEMM q . A and the map, [num | den] = f [S | z], then the output; backward also
 * [dnum | dden], g = ([dnum | dden] [S | z]^T) through the map's slope, dq = g A, and the rows'
 * sums [dS | dz] = f^T [dnum | dden] and, for softmax, dK~ = g^T q. */
#include "steps.h"

#include "ops/common/check.h"

#define FLAG_SAVE_DEN 1u /* cl/flurka/rows.cl */

/* a [B * H, N, D] tensor from the chunk's first row on, as a GEMM operand */
static gemm_matrix rows_operand(const mcl_flurka_desc *d, const fl_chunk *c, const mcl_tensor *t)
{
    return fl_heads_operand(d, t, c->first * d->head_dim, 0);
}

/* f = phi(q) of the chunk's rows, then numz = f [S | z] */
static mcl_status chunk_values(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                               const mcl_tensor *q, const mcl_tensor *wt, const fl_chunk *c)
{
    size_t L = plan->len, dv = d->head_dim + 1;
    if (d->map != MCL_FLURKA_ELU) {
        gemm_call dots = {.dtype = d->dtype, .m = c->count, .n = L, .k = d->head_dim, .batch = plan->bh,
                          .a = rows_operand(d, c, q), .b = fl_amat(d, plan, keys, wt, 1),
                          .c = fl_chunk_operand(c, c->f, L, 0)};
        MCL_TRY(mcl_gemm_step(w, "q . A", &dots, FL_PART_GEMM_SPLITS));
    }
    if (w->enqueue) {
        fl_buf qb = fl_tensor(q, d->dtype);
        cl_ulong q_off = qb.off + c->first * d->head_dim, head = c->capacity * L, n = d->seq;
        float a_scale = plan->a_scale;
        const mcl_arg args[] = {MCL_ARG(c->f.mem), MCL_ARG(c->f.off), MCL_ARG(head), MCL_ARG(qb.mem),
                                MCL_ARG(q_off),    MCL_ARG(n),        MCL_ARG(a_scale)};
        size_t wg = (size_t)plan->params.row_wg;
        MCL_TRY(mcl_walk_step(w, "features", fl_chunk_launch(w, d, plan, c, "rows", "flurka_row_features", wg, wg, args,
                                                             MCL_COUNT(args))));
    }
    gemm_call values = {.dtype = d->dtype, .m = c->count, .n = dv, .k = L, .batch = plan->bh,
                        .a = fl_chunk_operand(c, c->f, L, 0), .b = fl_fp32_rows(keys->svz, L, dv, 0),
                        .c = fl_chunk_operand(c, c->numz, dv, 0)};
    return mcl_gemm_step(w, "phi(q) [S | z]", &values, FL_PART_GEMM_SPLITS);
}

static mcl_status chunk_output(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan,
                               const mcl_flurka_fwd_tensors *t, const fl_chunk *c)
{
    fl_buf out = fl_tensor(&t->out, d->dtype), den = fl_tensor(&t->normalizer, MCL_F32);
    cl_ulong out_off = out.off + c->first * d->head_dim, den_off = den.off + c->first, n = d->seq,
             head = c->capacity * (d->head_dim + 1);
    cl_uint flags = mcl_has(&t->normalizer) ? FLAG_SAVE_DEN : 0;
    const mcl_arg args[] = {MCL_ARG(c->numz.mem), MCL_ARG(c->numz.off), MCL_ARG(head),   MCL_ARG(out.mem),
                            MCL_ARG(out_off),     MCL_ARG(den.mem),     MCL_ARG(den_off), MCL_ARG(n),
                            MCL_ARG(flags)};
    return fl_chunk_launch(w, d, plan, c, "rows", "flurka_row_output", d->head_dim, 64, args, MCL_COUNT(args));
}

mcl_status fl_rows_forward(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                           const mcl_flurka_fwd_tensors *t)
{
    fl_chunk c = fl_chunk_of(w, d, plan, plan->row_chunk, 0);
    while (fl_chunk_next(&c, d->seq)) {
        MCL_TRY(chunk_values(w, d, plan, keys, &t->q, &t->w, &c));
        if (w->enqueue) MCL_TRY(mcl_walk_step(w, "output", chunk_output(w, d, plan, t, &c)));
    }
    return MCL_OK;
}

/* [dnum | dden] in place of numz */
static mcl_status chunk_dz(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const mcl_tensor *dout,
                           const fl_chunk *c)
{
    if (!w->enqueue) return MCL_OK;
    fl_buf g = fl_tensor(dout, d->dtype);
    cl_ulong n = d->seq, dout_off = g.off + c->first * d->head_dim, head = c->capacity * (d->head_dim + 1);
    const mcl_arg args[] = {MCL_ARG(c->numz.mem), MCL_ARG(c->numz.off), MCL_ARG(head),
                            MCL_ARG(g.mem),       MCL_ARG(dout_off),    MCL_ARG(n)};
    size_t wg = (size_t)plan->params.row_wg;
    return mcl_walk_step(w, "dnum and dden",
                         fl_chunk_launch(w, d, plan, c, "rows", "flurka_row_dz", wg, wg, args, MCL_COUNT(args)));
}

static mcl_status chunk_slopes(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const mcl_tensor *q,
                               const fl_chunk *c)
{
    if (!w->enqueue) return MCL_OK;
    fl_buf qb = fl_tensor(q, d->dtype);
    cl_ulong n = d->seq, q_off = qb.off + c->first * d->head_dim, head = c->capacity * plan->len;
    float a_scale = plan->a_scale;
    const mcl_arg args[] = {MCL_ARG(c->g.mem), MCL_ARG(c->g.off), MCL_ARG(c->f.mem), MCL_ARG(c->f.off),
                            MCL_ARG(head),     MCL_ARG(qb.mem),   MCL_ARG(q_off),    MCL_ARG(n),
                            MCL_ARG(a_scale)};
    return mcl_walk_step(w, "slopes", fl_chunk_launch(w, d, plan, c, "rows", "flurka_row_slopes", plan->len, 64, args,
                                                      MCL_COUNT(args)));
}

/* dq = g A, or g itself for elu + 1 */
static mcl_status chunk_dq(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                           const mcl_flurka_bwd_tensors *t, const fl_chunk *c)
{
    size_t L = plan->len;
    if (d->map != MCL_FLURKA_ELU) {
        gemm_call dq = {.dtype = d->dtype, .m = c->count, .n = d->head_dim, .k = L, .batch = plan->bh,
                        .a = fl_chunk_operand(c, c->g, L, 0), .b = fl_amat(d, plan, keys, &t->w, 0),
                        .c = rows_operand(d, c, &t->dq)};
        return mcl_gemm_step(w, "dq = g A", &dq, FL_PART_GEMM_SPLITS);
    }
    if (!w->enqueue) return MCL_OK;
    fl_buf dq = fl_tensor(&t->dq, d->dtype);
    cl_ulong n = d->seq, dq_off = dq.off + c->first * d->head_dim, head = c->capacity * L;
    const mcl_arg args[] = {MCL_ARG(c->g.mem), MCL_ARG(c->g.off), MCL_ARG(head), MCL_ARG(dq.mem), MCL_ARG(dq_off),
                            MCL_ARG(n)};
    return mcl_walk_step(w, "dq", fl_chunk_launch(w, d, plan, c, "rows", "flurka_row_dq", d->head_dim, 64, args,
                                                  MCL_COUNT(args)));
}

mcl_status fl_rows_backward(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                            const mcl_flurka_bwd_tensors *t, int want_dq, fl_buf dsvz, fl_buf da)
{
    size_t L = plan->len, D = d->head_dim, dv = D + 1, softmax = d->map == MCL_FLURKA_SOFTMAX;
    fl_chunk c = fl_chunk_of(w, d, plan, plan->row_chunk, 1);
    fl_sum dsvz_sum = {.call = {.dtype = d->dtype, .m = L, .n = dv, .k = c.capacity, .batch = plan->bh,
                                .a = fl_chunk_operand(&c, c.f, L, 1), .b = fl_chunk_operand(&c, c.numz, dv, 0),
                                .c = fl_fp32_rows(dsvz, L, dv, 0)}};
    fl_sum da_sum = {.call = {.dtype = d->dtype, .m = L, .n = D, .k = c.capacity, .batch = plan->bh,
                              .a = fl_chunk_operand(&c, c.g, L, 1), .b = fl_heads_operand(d, &t->q, 0, 0), .c = fl_fp32_rows(da, L, D, 0)},
                     .b_row = D};
    MCL_TRY(fl_sum_begin(w, "sum of dS and dz", FL_PART_SUMS, &dsvz_sum));
    if (softmax) MCL_TRY(fl_sum_begin(w, "sum of dK~", FL_PART_SUMS_A, &da_sum));
    gemm_matrix svz_t = {keys->svz.mem, (size_t)keys->svz.off, dv, L * dv, 1, 1};
    while (fl_chunk_next(&c, d->seq)) {
        MCL_TRY(chunk_values(w, d, plan, keys, &t->q, &t->w, &c));
        MCL_TRY(chunk_dz(w, d, plan, &t->dout, &c));
        gemm_call dphi = {.dtype = d->dtype, .m = c.count, .n = L, .k = dv, .batch = plan->bh,
                          .a = fl_chunk_operand(&c, c.numz, dv, 0), .b = svz_t, .c = fl_chunk_operand(&c, c.g, L, 0)};
        MCL_TRY(mcl_gemm_step(w, "dphi", &dphi, FL_PART_GEMM_SPLITS));
        MCL_TRY(chunk_slopes(w, d, plan, &t->q, &c));
        if (want_dq) MCL_TRY(chunk_dq(w, d, plan, keys, t, &c));
        MCL_TRY(fl_sum_add(w, "sum of dS and dz", &dsvz_sum, &c));
        if (softmax) MCL_TRY(fl_sum_add(w, "sum of dK~", &da_sum, &c));
    }
    MCL_TRY(fl_sum_end(w, "sum of dS and dz", &dsvz_sum));
    return softmax ? fl_sum_end(w, "sum of dK~", &da_sum) : MCL_OK;
}
