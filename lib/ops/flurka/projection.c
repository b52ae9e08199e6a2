/* FLuRKA's projections along the sequence and their gradients, as GEMMs (steps.h). E (or F) is
 * [k, N], shared by every head or one per head (h = bh mod H): the GEMMs run every head at once
 * where E is shared, the H heads of one batch entry at a time where it is per head. */
#include "steps.h"

#include "ops/common/check.h"

static int has_projection(const mcl_flurka_desc *d) { return d->projection != MCL_FLURKA_NO_PROJECTION; }

static size_t gemm_heads(const mcl_flurka_desc *d, const fl_plan *plan)
{
    return d->projection == MCL_FLURKA_PER_HEAD ? d->heads : plan->bh;
}

/* E (or F) as a GEMM operand: [k, N], the next head's k * N on where it is per head */
static gemm_matrix projection_operand(const mcl_flurka_desc *d, const mcl_tensor *p, int trans)
{
    gemm_matrix m = gemm_operand(p, d->dtype, 0, d->seq, trans);
    m.batch_stride = d->projection == MCL_FLURKA_PER_HEAD ? d->rank * d->seq : 0;
    return m;
}

/* Without a projection: x (or dx) moves between the storage type and fp32 rows ld apart. */
static mcl_status copy(mcl_walk *w, const char *step, const mcl_flurka_desc *d, const fl_plan *plan, const char *name,
                       fl_buf from, fl_buf to, size_t ld)
{
    if (!w->enqueue) return MCL_OK;
    cl_ulong rows = plan->bh * d->seq, ld_l = ld;
    const mcl_arg args[] = {MCL_ARG(from.mem), MCL_ARG(from.off), MCL_ARG(to.mem), MCL_ARG(to.off), MCL_ARG(rows),
                            MCL_ARG(ld_l)};
    const size_t global[1] = {rows * d->head_dim}, local[1] = {64};
    return mcl_walk_step(w, step, fl_launch(w, d, plan, "copy", name, 1, global, local, args, MCL_COUNT(args)));
}

mcl_status fl_project(mcl_walk *w, const char *step, const mcl_flurka_desc *d, const fl_plan *plan,
                      const mcl_tensor *x, const mcl_tensor *p, fl_buf xt, size_t ld)
{
    if (!has_projection(d)) return copy(w, step, d, plan, "flurka_copy_in", fl_tensor(x, d->dtype), xt, ld);
    size_t heads = gemm_heads(d, plan), k = plan->keys;
    for (size_t first = 0; first < plan->bh; first += heads) {
        gemm_call g = {.dtype = d->dtype, .m = k, .n = d->head_dim, .k = d->seq, .batch = heads,
                       .a = projection_operand(d, p, 0), .b = fl_heads_operand(d, x, first * d->seq * d->head_dim, 0),
                       .c = fl_fp32_rows(xt, k, ld, first * k)};
        MCL_TRY(mcl_gemm_step(w, step, &g, FL_PART_GEMM_SPLITS));
    }
    return MCL_OK;
}

mcl_status fl_project_back(mcl_walk *w, const char *step, const mcl_flurka_desc *d, const fl_plan *plan, fl_buf dxt,
                           size_t ldx, const mcl_tensor *p, const mcl_tensor *dx)
{
    if (!has_projection(d)) return copy(w, step, d, plan, "flurka_copy_out", dxt, fl_tensor(dx, d->dtype), ldx);
    size_t heads = gemm_heads(d, plan), k = plan->keys;
    for (size_t first = 0; first < plan->bh; first += heads) {
        gemm_call g = {.dtype = d->dtype, .m = d->seq, .n = d->head_dim, .k = k, .batch = heads,
                       .a = projection_operand(d, p, 1), .b = fl_fp32_rows(dxt, k, ldx, first * k),
                       .c = fl_heads_operand(d, dx, first * d->seq * d->head_dim, 0)};
        MCL_TRY(mcl_gemm_step(w, step, &g, FL_PART_GEMM_SPLITS));
    }
    return MCL_OK;
}

/* One GEMM of D-long products per batch entry (E per head, its H heads batched) or per head (E
 * shared); where several share p, each adds its products to fp32 sums in head order. */
mcl_status fl_project_grad(mcl_walk *w, const char *step, const mcl_flurka_desc *d, const fl_plan *plan, fl_buf dxt,
                           size_t ldx, const mcl_tensor *x, const mcl_tensor *dp)
{
    size_t heads = d->projection == MCL_FLURKA_PER_HEAD ? d->heads : 1, sharing = plan->bh / heads;
    size_t N = d->seq, D = d->head_dim, k = plan->keys;
    gemm_matrix out = gemm_operand(dp, d->dtype, 0, N, 0);
    out.batch_stride = k * N;
    gemm_call g = {.dtype = d->dtype, .m = k, .n = N, .k = D, .batch = heads,
                   .a = fl_fp32_rows(dxt, k, ldx, 0), .b = fl_heads_operand(d, x, 0, 1), .c = out};
    if (sharing == 1) return mcl_gemm_step(w, step, &g, FL_PART_GEMM_SPLITS);
    gemm_plan gp;
    MCL_TRY(mcl_walk_step(w, step, mcl_gemm_plan(w->ctx, &g, &gp)));
    mcl_tensor sums = mcl_walk_part(w, FL_PART_SUMS, gp.splits * heads * k * N * sizeof(float));
    for (size_t s = 0; s < sharing; s++) {
        gemm_call piece = g;
        piece.a.off += s * heads * k * ldx, piece.b.off += s * heads * N * D;
        MCL_TRY(mcl_gemm_piece_step(w, step, &piece, &gp, sums, 0, gp.splits, s > 0));
    }
    return mcl_gemm_sum_step(w, step, &g, sums, gp.splits);
}
