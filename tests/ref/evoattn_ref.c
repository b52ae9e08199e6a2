/* Double-precision EvoAttention reference (see evoattn_ref.h). */
#include "evoattn_ref.h"

#include "megacl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double ref_evoattn_scale(size_t head_dim, float desc_scale)
{
    return desc_scale == 0.0f ? 1.0 / sqrt((double)head_dim) : (double)desc_scale;
}

int ref_evoattn_row_alloc(ref_evoattn_row *row, size_t seq, size_t head_dim)
{
    memset(row, 0, sizeof *row);
    size_t s = seq ? seq : 1, d = head_dim ? head_dim : 1;
    row->p = malloc(s * sizeof *row->p);
    row->dp = malloc(s * sizeof *row->dp);
    row->ds = malloc(s * sizeof *row->ds);
    row->o = malloc(d * sizeof *row->o);
    row->y = malloc(d * sizeof *row->y);
    row->d_o = malloc(d * sizeof *row->d_o);
    row->dg = malloc(d * sizeof *row->dg);
    if (row->p && row->dp && row->ds && row->o && row->y && row->d_o && row->dg) return 0;
    ref_evoattn_row_free(row);
    return -1;
}

void ref_evoattn_row_free(ref_evoattn_row *row)
{
    free(row->p), free(row->dp), free(row->ds), free(row->o), free(row->y), free(row->d_o),
        free(row->dg);
    memset(row, 0, sizeof *row);
}

static int key_removed(const float *mask_row, size_t j)
{
    return mask_row && mask_row[j] <= MCL_EVOATTN_MASKED;
}

static double sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

void ref_evoattn_row_compute(const ref_evoattn_problem *p, size_t b, size_t n, size_t h, size_t i,
                             ref_evoattn_row *row)
{
    const size_t N = p->rows, S = p->seq, H = p->heads, D = p->head_dim;
    const size_t row_base = (b * N + n) * S;                   /* (b, n, s=0) in [B, N, S] */
    const size_t qi = ((row_base + i) * H + h) * D;            /* (b, n, i, h, 0) */
    const float *mask_row = p->mask ? p->mask + row_base : NULL;
    const float *pair_row = p->pair ? p->pair + ((b * H + h) * S + i) * S : NULL;

    /* scores into p[], the maximum over the remaining keys */
    double mx = -INFINITY;
    int any = 0;
    for (size_t j = 0; j < S; j++) {
        if (key_removed(mask_row, j)) {
            row->p[j] = 0.0;
            continue;
        }
        const size_t kj = ((row_base + j) * H + h) * D;
        double dot = 0.0;
        for (size_t d = 0; d < D; d++) dot += (double)p->q[qi + d] * (double)p->k[kj + d];
        double s = p->scale * dot;
        if (mask_row) s += mask_row[j];
        if (pair_row) s += pair_row[j];
        row->p[j] = s;
        if (!any || s > mx) mx = s;
        any = 1;
    }
    row->all_masked = !any;
    if (any) {
        double sum = 0.0;
        for (size_t j = 0; j < S; j++)
            if (!key_removed(mask_row, j)) sum += exp(row->p[j] - mx);
        row->lse = mx + log(sum);
        for (size_t j = 0; j < S; j++)
            if (!key_removed(mask_row, j)) row->p[j] = exp(row->p[j] - mx) / sum;
    } else {
        row->lse = -INFINITY;
    }

    /* O_i and Y_i */
    for (size_t d = 0; d < D; d++) row->o[d] = 0.0;
    for (size_t j = 0; j < S; j++) {
        if (row->p[j] == 0.0) continue;
        const float *vj = p->v + ((row_base + j) * H + h) * D;
        for (size_t d = 0; d < D; d++) row->o[d] += row->p[j] * (double)vj[d];
    }
    for (size_t d = 0; d < D; d++)
        row->y[d] = p->gate ? sigmoid((double)p->gate[qi + d]) * row->o[d] : row->o[d];
    if (!p->dout) return;

    /* dO_i, dG_i, Delta_i */
    row->delta = 0.0;
    for (size_t d = 0; d < D; d++) {
        double dy = p->dout[qi + d];
        if (p->gate) {
            double sg = sigmoid((double)p->gate[qi + d]);
            row->d_o[d] = dy * sg;
            row->dg[d] = dy * row->o[d] * sg * (1.0 - sg);
        } else {
            row->d_o[d] = dy;
            row->dg[d] = 0.0;
        }
        row->delta += row->d_o[d] * row->o[d];
    }
    /* dP_ij and dS_ij; removed keys have P = 0, hence dS = 0 exactly */
    for (size_t j = 0; j < S; j++) {
        const float *vj = p->v + ((row_base + j) * H + h) * D;
        double dp = 0.0;
        for (size_t d = 0; d < D; d++) dp += row->d_o[d] * (double)vj[d];
        row->dp[j] = dp;
        row->ds[j] = row->p[j] == 0.0 ? 0.0 : row->p[j] * (dp - row->delta);
    }
}

int ref_evoattn_slice(const ref_evoattn_problem *p, size_t b, size_t n, size_t h,
                      const ref_evoattn_slice_out *out)
{
    const size_t N = p->rows, S = p->seq, H = p->heads, D = p->head_dim, ld = out->ld;
    const size_t row_base = (b * N + n) * S;
    const int backward = p->dout != NULL;
    ref_evoattn_row row;
    if (ref_evoattn_row_alloc(&row, S, D) != 0) return -1;
    for (size_t s = 0; backward && s < S; s++)
        for (size_t d = 0; d < D; d++) {
            if (out->dk) out->dk[s * ld + d] = 0.0;
            if (out->dv) out->dv[s * ld + d] = 0.0;
        }
    for (size_t i = 0; i < S; i++) {
        ref_evoattn_row_compute(p, b, n, h, i, &row);
        for (size_t d = 0; d < D; d++) {
            if (out->out) out->out[i * ld + d] = row.o[d];
            if (out->gated) out->gated[i * ld + d] = row.y[d];
        }
        if (out->lse) out->lse[i] = row.lse;
        if (!backward) continue;
        const float *qi = p->q + ((row_base + i) * H + h) * D;
        if (out->dgate)
            for (size_t d = 0; d < D; d++) out->dgate[i * ld + d] = row.dg[d];
        if (out->dq)
            for (size_t d = 0; d < D; d++) out->dq[i * ld + d] = 0.0;
        for (size_t j = 0; j < S; j++) {
            const double ds = row.ds[j], pj = row.p[j];
            const size_t kj = ((row_base + j) * H + h) * D;
            if (out->dmask) out->dmask[j] += ds;
            if (out->dpair) out->dpair[i * S + j] += ds;
            if (pj == 0.0) continue; /* removed key (or an exact underflow): no contribution */
            for (size_t d = 0; d < D; d++) {
                if (out->dq) out->dq[i * ld + d] += p->scale * ds * (double)p->k[kj + d];
                if (out->dk) out->dk[j * ld + d] += p->scale * ds * (double)qi[d];
                if (out->dv) out->dv[j * ld + d] += pj * row.d_o[d];
            }
        }
    }
    ref_evoattn_row_free(&row);
    return 0;
}

/* v + offset, or NULL for an output not asked for */
static double *part_of(double *v, size_t offset) { return v ? v + offset : NULL; }

/* ref_evoattn_slice over every slice, `whole` holding full tensors (out, gated, dq, dk, dv, dgate
 * [B, N, S, H, D], lse [B, N, H, S], dmask [B, N, S], dpair [B, H, S, S], each optional). */
static int every_slice(const ref_evoattn_problem *p, const ref_evoattn_slice_out *whole)
{
    const size_t N = p->rows, S = p->seq, H = p->heads, D = p->head_dim;
    for (size_t b = 0; b < p->batch; b++)
        for (size_t n = 0; n < N; n++)
            for (size_t h = 0; h < H; h++) {
                size_t base = ((b * N + n) * S * H + h) * D;
                ref_evoattn_slice_out o = {
                    .ld = H * D,
                    .out = part_of(whole->out, base),
                    .gated = part_of(whole->gated, base),
                    .lse = part_of(whole->lse, ((b * N + n) * H + h) * S),
                    .dq = part_of(whole->dq, base),
                    .dk = part_of(whole->dk, base),
                    .dv = part_of(whole->dv, base),
                    .dgate = part_of(whole->dgate, base),
                    .dmask = part_of(whole->dmask, (b * N + n) * S),
                    .dpair = part_of(whole->dpair, (b * H + h) * S * S),
                };
                if (ref_evoattn_slice(p, b, n, h, &o) != 0) return -1;
            }
    return 0;
}

int ref_evoattn_forward(const ref_evoattn_problem *p, double *out, double *gated, double *lse)
{
    ref_evoattn_problem fp = *p;
    fp.dout = NULL;
    return every_slice(&fp, &(ref_evoattn_slice_out){.out = out, .gated = gated, .lse = lse});
}

int ref_evoattn_backward(const ref_evoattn_problem *p, double *dq, double *dk, double *dv,
                         double *dgate, double *dmask, double *dpair)
{
    if (!p->dout) return -1;
    const size_t B = p->batch, N = p->rows, S = p->seq, H = p->heads;
    if (dmask) memset(dmask, 0, B * N * S * sizeof *dmask);
    if (dpair) memset(dpair, 0, B * H * S * S * sizeof *dpair);
    return every_slice(p, &(ref_evoattn_slice_out){.dq = dq, .dk = dk, .dv = dv, .dgate = dgate, .dmask = dmask,
                                                  .dpair = dpair});
}
