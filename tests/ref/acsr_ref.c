/* Double-precision reference of ACSR sparse attention (acsr_ref.h). */
#include "acsr_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t distance(size_t i, size_t j) { return i > j ? i - j : j - i; }

static int pattern_has(const mcl_acsr_pattern *p, size_t i, size_t j)
{
    switch (p->kind) {
    case MCL_ACSR_WINDOW: return distance(i, j) <= p->width;
    case MCL_ACSR_CAUSAL_WINDOW: return j <= i && i - j <= p->width;
    case MCL_ACSR_DILATED: return distance(i, j) <= p->width && distance(i, j) % p->step == 0;
    case MCL_ACSR_STRIDED: return distance(i, j) % p->step == 0;
    case MCL_ACSR_BLOCKED: return distance(i / p->block, j / p->block) <= p->width;
    case MCL_ACSR_BLOCK_DIAGONAL: return i / p->block == j / p->block;
    case MCL_ACSR_GLOBAL: return i < p->count || j < p->count;
    }
    return 0;
}

int ref_acsr_has(const ref_acsr_mask *m, size_t i, size_t j)
{
    if (!m->patterns) return m->dense[i * m->n + j] != 0;
    for (size_t p = 0; p < m->count; p++)
        if (pattern_has(&m->patterns[p], i, j)) return 1;
    return 0;
}

static double dot(const float *a, const float *b, size_t d)
{
    double s = 0.0;
    for (size_t e = 0; e < d; e++) s += (double)a[e] * b[e];
    return s;
}

/* Row i of head h: its probabilities over every key (0 off the mask) and its log-sum-exp
 * (-inf for a row without keys). */
static double row_probabilities(const ref_acsr_problem *p, size_t h, size_t i, double *prob)
{
    size_t n = p->seq, d = p->head_dim;
    const float *qi = p->q + (h * n + i) * d, *k = p->k + h * n * d;
    double m = -INFINITY;
    for (size_t j = 0; j < n; j++) {
        prob[j] = ref_acsr_has(p->mask, i, j) ? p->scale * dot(qi, k + j * d, d) : -INFINITY;
        if (prob[j] > m) m = prob[j];
    }
    if (m == -INFINITY) {
        memset(prob, 0, n * sizeof *prob);
        return -INFINITY;
    }
    double l = 0.0;
    for (size_t j = 0; j < n; j++) l += prob[j] = exp(prob[j] - m);
    for (size_t j = 0; j < n; j++) prob[j] /= l;
    return m + log(l);
}

void ref_acsr_forward_rows(const ref_acsr_problem *p, const size_t *rows, size_t row_count, double *out, double *lse)
{
    size_t n = p->seq, d = p->head_dim, count = rows ? row_count : n;
    double *prob = malloc(n * sizeof *prob);
    for (size_t h = 0; h < p->batch * p->heads; h++)
        for (size_t r = 0; r < count; r++) {
            size_t i = rows ? rows[r] : r;
            double l = row_probabilities(p, h, i, prob);
            if (lse) lse[h * n + i] = l;
            if (!out) continue;
            for (size_t e = 0; e < d; e++) {
                double acc = 0.0;
                for (size_t j = 0; j < n; j++)
                    if (prob[j] != 0.0) acc += prob[j] * p->v[(h * n + j) * d + e];
                out[(h * n + i) * d + e] = acc;
            }
        }
    free(prob);
}

/* dS of row i over every key: P_ij (dO_i . v_j - delta_i), delta_i = sum_j P_ij dO_i . v_j. */
static void row_ds(const ref_acsr_problem *p, size_t h, size_t i, double *prob, double *ds)
{
    size_t n = p->seq, d = p->head_dim;
    const float *doi = p->dout + (h * n + i) * d, *v = p->v + h * n * d;
    row_probabilities(p, h, i, prob);
    double delta = 0.0;
    for (size_t j = 0; j < n; j++) {
        ds[j] = prob[j] != 0.0 ? dot(doi, v + j * d, d) : 0.0;
        delta += prob[j] * ds[j];
    }
    for (size_t j = 0; j < n; j++) ds[j] = prob[j] * (ds[j] - delta);
}

void ref_acsr_dq_rows(const ref_acsr_problem *p, const size_t *rows, size_t row_count, double *dq)
{
    size_t n = p->seq, d = p->head_dim, count = rows ? row_count : n;
    double *prob = malloc(n * sizeof *prob), *ds = malloc(n * sizeof *ds);
    for (size_t h = 0; h < p->batch * p->heads; h++)
        for (size_t r = 0; r < count; r++) {
            size_t i = rows ? rows[r] : r;
            row_ds(p, h, i, prob, ds);
            for (size_t e = 0; e < d; e++) {
                double acc = 0.0;
                for (size_t j = 0; j < n; j++)
                    if (ds[j] != 0.0) acc += ds[j] * p->k[(h * n + j) * d + e];
                dq[(h * n + i) * d + e] = p->scale * acc;
            }
        }
    free(prob);
    free(ds);
}

int ref_acsr_dkdv(const ref_acsr_problem *p, double *dk, double *dv)
{
    size_t n = p->seq, d = p->head_dim, total = p->batch * p->heads * n * d;
    double *prob = malloc(n * sizeof *prob), *ds = malloc(n * sizeof *ds);
    if (!prob || !ds) {
        free(prob);
        free(ds);
        return -1;
    }
    if (dk) memset(dk, 0, total * sizeof *dk);
    if (dv) memset(dv, 0, total * sizeof *dv);
    for (size_t h = 0; h < p->batch * p->heads; h++)
        for (size_t i = 0; i < n; i++) {
            row_ds(p, h, i, prob, ds);
            const float *qi = p->q + (h * n + i) * d, *doi = p->dout + (h * n + i) * d;
            for (size_t j = 0; j < n; j++) {
                if (prob[j] == 0.0 && ds[j] == 0.0) continue;
                for (size_t e = 0; e < d; e++) {
                    if (dk) dk[(h * n + j) * d + e] += p->scale * ds[j] * qi[e];
                    if (dv) dv[(h * n + j) * d + e] += prob[j] * doi[e];
                }
            }
        }
    free(prob);
    free(ds);
    return 0;
}
