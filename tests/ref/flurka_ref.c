/* Double-precision FLuRKA reference (see flurka_ref.h), one head at a time. */
#include "flurka_ref.h"

#include "megacl.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RELU_EPS 1e-3

/* One head's keys and what the query rows read. */
typedef struct head {
    size_t nk, len;        /* keys, features */
    double *kt, *vt;       /* [nk, D] */
    double *phik;          /* [nk, len] (kernel maps) */
    double *s, *z;         /* [len, D], [len] (kernel maps) */
} head;

static double a_scale(const ref_flurka_problem *p)
{
    return p->map == MCL_FLURKA_FAVOR ? pow((double)p->dim, -0.25) : p->map == MCL_FLURKA_SOFTMAX ? 1.0 / sqrt((double)p->dim) : 1.0;
}

static size_t feature_length(const ref_flurka_problem *p)
{
    if (p->map == MCL_FLURKA_SOFTMAX) return p->projection == MCL_FLURKA_NO_PROJECTION ? p->seq : p->rank;
    return p->map == MCL_FLURKA_ELU ? p->dim : p->features;
}

static size_t projection_of(const ref_flurka_problem *p, size_t bh)
{
    return p->projection == MCL_FLURKA_PER_HEAD ? bh % p->heads : 0;
}

/* The exponent of FAVOR+'s features of x (a_scale x = x'): w_r . x' - |x'|^2 / 2, or the ReLU or
 * elu + 1 feature itself. */
static void features_of(const ref_flurka_problem *p, const double *x, double *out)
{
    size_t D = p->dim, L = feature_length(p);
    double a = a_scale(p), square = 0.0;
    for (size_t d = 0; d < D; d++) square += x[d] * x[d];
    for (size_t r = 0; r < L; r++) {
        if (p->map == MCL_FLURKA_ELU) {
            out[r] = x[r] > 0 ? x[r] + 1.0 : exp(x[r]);
            continue;
        }
        double dot = 0.0;
        for (size_t d = 0; d < D; d++) dot += (double)p->w[r * D + d] * x[d];
        out[r] = p->map == MCL_FLURKA_RELU ? fmax(dot, 0.0) + RELU_EPS : a * dot - 0.5 * a * a * square;
    }
}

/* FAVOR+: exp(exponent - the largest of `count`) / sqrt(m) */
static void exponentiate(double *u, size_t count, size_t m)
{
    double c = -INFINITY;
    for (size_t i = 0; i < count; i++) c = fmax(c, u[i]);
    for (size_t i = 0; i < count; i++) u[i] = exp(u[i] - c) / sqrt((double)m);
}

static void head_free(head *h)
{
    free(h->kt), free(h->vt), free(h->phik), free(h->s), free(h->z);
}

static int head_of(const ref_flurka_problem *p, size_t bh, head *h)
{
    size_t N = p->seq, D = p->dim, proj = p->projection != MCL_FLURKA_NO_PROJECTION;
    memset(h, 0, sizeof *h);
    h->nk = proj ? p->rank : N;
    h->len = feature_length(p);
    h->kt = calloc(h->nk * D, sizeof(double)), h->vt = calloc(h->nk * D, sizeof(double));
    int kernel = p->map != MCL_FLURKA_SOFTMAX;
    if (kernel) {
        h->phik = calloc(h->nk * h->len, sizeof(double));
        h->s = calloc(h->len * D, sizeof(double)), h->z = calloc(h->len, sizeof(double));
    }
    if (!h->kt || !h->vt || (kernel && (!h->phik || !h->s || !h->z))) return head_free(h), -1;
    const float *k = p->k + bh * N * D, *v = p->v + bh * N * D;
    for (size_t i = 0; i < h->nk; i++)
        for (size_t n = proj ? 0 : i; n < (proj ? N : i + 1); n++) {
            double ce = proj ? p->e[(projection_of(p, bh) * p->rank + i) * N + n] : 1.0;
            double cf = proj ? p->f[(projection_of(p, bh) * p->rank + i) * N + n] : 1.0;
            for (size_t d = 0; d < D; d++) h->kt[i * D + d] += ce * k[n * D + d], h->vt[i * D + d] += cf * v[n * D + d];
        }
    if (!kernel) return 0;
    for (size_t i = 0; i < h->nk; i++) features_of(p, h->kt + i * D, h->phik + i * h->len);
    if (p->map == MCL_FLURKA_FAVOR) exponentiate(h->phik, h->nk * h->len, p->features);
    for (size_t i = 0; i < h->nk; i++)
        for (size_t r = 0; r < h->len; r++) {
            double phi = h->phik[i * h->len + r];
            h->z[r] += phi;
            for (size_t d = 0; d < D; d++) h->s[r * D + d] += phi * h->vt[i * D + d];
        }
    return 0;
}

/* One query row: its features phi [len] (softmax: the probabilities' numerators), out [D], and
 * the denominator; lse for softmax. */
static double query_row(const ref_flurka_problem *p, const head *h, const double *q, double *phi, double *out,
                        double *lse)
{
    size_t D = p->dim, L = h->len;
    double den = 0.0;
    if (p->map == MCL_FLURKA_SOFTMAX) {
        double a = a_scale(p), c = -INFINITY;
        for (size_t j = 0; j < L; j++) {
            double s = 0.0;
            for (size_t d = 0; d < D; d++) s += q[d] * h->kt[j * D + d];
            phi[j] = a * s, c = fmax(c, phi[j]);
        }
        for (size_t j = 0; j < L; j++) phi[j] = exp(phi[j] - c), den += phi[j];
        for (size_t d = 0; d < D; d++) {
            double s = 0.0;
            for (size_t j = 0; j < L; j++) s += phi[j] * h->vt[j * D + d];
            out[d] = s / den;
        }
        if (lse) *lse = c + log(den);
        return den;
    }
    features_of(p, q, phi);
    if (p->map == MCL_FLURKA_FAVOR) exponentiate(phi, L, p->features);
    for (size_t r = 0; r < L; r++) den += phi[r] * h->z[r];
    for (size_t d = 0; d < D; d++) {
        double s = 0.0;
        for (size_t r = 0; r < L; r++) s += phi[r] * h->s[r * D + d];
        out[d] = s / fmax(den, FLT_MIN);
    }
    return fmax(den, FLT_MIN);
}

/* |w_r . x| for the rows x of one head: queries [n, D] floats or keys [n, D] doubles */
static double nearest_zero_dot(const ref_flurka_problem *p, const float *qf, const double *kd, size_t n)
{
    size_t D = p->dim;
    double nearest = INFINITY;
    for (size_t i = 0; i < n; i++)
        for (size_t r = 0; r < p->features; r++) {
            double dot = 0.0;
            for (size_t d = 0; d < D; d++) dot += (double)p->w[r * D + d] * (qf ? qf[i * D + d] : kd[i * D + d]);
            nearest = fmin(nearest, fabs(dot));
        }
    return nearest;
}

double ref_flurka_nearest_relu_kink(const ref_flurka_problem *p)
{
    double nearest = INFINITY;
    if (p->map != MCL_FLURKA_RELU) return nearest;
    for (size_t bh = 0; bh < p->batch * p->heads; bh++) {
        head h;
        if (head_of(p, bh, &h) != 0) return -1.0;
        nearest = fmin(nearest, nearest_zero_dot(p, p->q + bh * p->seq * p->dim, NULL, p->seq));
        nearest = fmin(nearest, nearest_zero_dot(p, NULL, h.kt, h.nk));
        head_free(&h);
    }
    return nearest;
}

static void to_double(const float *x, size_t n, double *out)
{
    for (size_t i = 0; i < n; i++) out[i] = x[i];
}

int ref_flurka_forward(const ref_flurka_problem *p, double *out, double *den, double *lse)
{
    size_t N = p->seq, D = p->dim, BH = p->batch * p->heads;
    double q[256], o[256], l;
    double *phi = malloc((feature_length(p) + 1) * sizeof(double));
    if (!phi || D > 256) return free(phi), -1;
    for (size_t bh = 0; bh < BH; bh++) {
        head h;
        if (head_of(p, bh, &h) != 0) return free(phi), -1;
        for (size_t i = 0; i < N; i++) {
            to_double(p->q + (bh * N + i) * D, D, q);
            double dn = query_row(p, &h, q, phi, o, &l);
            if (out) memcpy(out + (bh * N + i) * D, o, D * sizeof(double));
            if (den) den[bh * N + i] = dn;
            if (lse) lse[bh * N + i] = l;
        }
        head_free(&h);
    }
    free(phi);
    return 0;
}

/* ---- backward ---------------------------------------------------------------------------- */

/* The gradient through the map: dx += sum_r dphi_r d phi_r / dx at x, phi its features. */
static void map_backward(const ref_flurka_problem *p, const double *x, const double *phi, const double *dphi, size_t L,
                         double *dx)
{
    size_t D = p->dim;
    double a = a_scale(p);
    for (size_t r = 0; r < L; r++) {
        if (p->map == MCL_FLURKA_ELU) {
            dx[r] += dphi[r] * (x[r] > 0 ? 1.0 : phi[r]);
            continue;
        }
        double dot = 0.0;
        for (size_t d = 0; d < D; d++) dot += (double)p->w[r * D + d] * x[d];
        for (size_t d = 0; d < D; d++) {
            double w = p->w[r * D + d];
            if (p->map == MCL_FLURKA_RELU) dx[d] += dot > 0 ? dphi[r] * w : 0.0;
            else dx[d] += dphi[r] * phi[r] * a * (w - a * x[d]); /* FAVOR+ */
        }
    }
}

/* One query row's backward: dq, and its parts of dK~ and dV~ (softmax) or of dS and dz. */
static void row_backward(const ref_flurka_problem *p, const head *h, const double *q, const double *g, double *phi,
                         double *dphi, double *dq, double *dkt, double *dvt, double *ds, double *dz)
{
    size_t D = p->dim, L = h->len;
    double o[256], den = query_row(p, h, q, phi, o, NULL), g_o = 0.0;
    for (size_t d = 0; d < D; d++) g_o += g[d] * o[d];
    memset(dq, 0, D * sizeof(double));
    if (p->map == MCL_FLURKA_SOFTMAX) { /* ds_j = P_j (g . v~_j - g . O) */
        double a = a_scale(p);
        for (size_t j = 0; j < L; j++) {
            double pj = phi[j] / den, g_v = 0.0;
            for (size_t d = 0; d < D; d++) g_v += g[d] * h->vt[j * D + d], dvt[j * D + d] += pj * g[d];
            double sj = pj * (g_v - g_o);
            for (size_t d = 0; d < D; d++) dq[d] += a * sj * h->kt[j * D + d], dkt[j * D + d] += a * sj * q[d];
        }
        return;
    }
    double dden = -g_o / den;
    for (size_t r = 0; r < L; r++) {
        dphi[r] = h->z[r] * dden;
        for (size_t d = 0; d < D; d++) dphi[r] += h->s[r * D + d] * g[d] / den, ds[r * D + d] += phi[r] * g[d] / den;
        dz[r] += phi[r] * dden;
    }
    map_backward(p, q, phi, dphi, L, dq);
}

/* The kernel maps' dK~ and dV~ from dS and dz. */
static void keys_backward(const ref_flurka_problem *p, const head *h, const double *ds, const double *dz, double *dphi,
                          double *dkt, double *dvt)
{
    size_t D = p->dim, L = h->len;
    for (size_t i = 0; i < h->nk; i++) {
        const double *phi = h->phik + i * L;
        for (size_t r = 0; r < L; r++) {
            dphi[r] = dz[r];
            for (size_t d = 0; d < D; d++) dphi[r] += h->vt[i * D + d] * ds[r * D + d], dvt[i * D + d] += phi[r] * ds[r * D + d];
        }
        map_backward(p, h->kt + i * D, phi, dphi, L, dkt + i * D);
    }
}

/* dX = P^T dX~ (or dX~ itself) into head bh of dx, and dP += dX~ X^T, for X = K, P = E or X = V,
 * P = F (pm; NULL without a projection) */
static void projection_backward(const ref_flurka_problem *p, size_t bh, const double *dxt, const float *x,
                                const float *pm, size_t nk, double *dx, double *dp)
{
    size_t N = p->seq, D = p->dim;
    if (pm) pm += projection_of(p, bh) * p->rank * N;
    for (size_t n = 0; n < N && dx; n++)
        for (size_t d = 0; d < D; d++) {
            double s = pm ? 0.0 : dxt[n * D + d];
            for (size_t i = 0; i < nk && pm; i++) s += (double)pm[i * N + n] * dxt[i * D + d];
            dx[(bh * N + n) * D + d] = s;
        }
    for (size_t i = 0; i < nk && dp && pm; i++)
        for (size_t n = 0; n < N; n++) {
            double s = 0.0;
            for (size_t d = 0; d < D; d++) s += dxt[i * D + d] * x[(bh * N + n) * D + d];
            dp[(projection_of(p, bh) * p->rank + i) * N + n] += s;
        }
}

int ref_flurka_backward(const ref_flurka_problem *p, double *dq, double *dk, double *dv, double *de, double *df)
{
    size_t N = p->seq, D = p->dim, BH = p->batch * p->heads, L = feature_length(p);
    size_t projections = p->projection == MCL_FLURKA_PER_HEAD ? p->heads : 1;
    if (de) memset(de, 0, projections * p->rank * N * sizeof *de);
    if (df) memset(df, 0, projections * p->rank * N * sizeof *df);
    size_t scratch = (L > N ? L : N) + 1;
    double *phi = malloc(scratch * sizeof(double)), *dphi = malloc(scratch * sizeof(double));
    double *ds = calloc(L * D, sizeof(double)), *dz = calloc(L, sizeof(double));
    double *dkt = malloc(N * D * sizeof(double)), *dvt = malloc(N * D * sizeof(double)), q[256], g[256], dqr[256];
    int ok = phi && dphi && ds && dz && dkt && dvt && D <= 256;
    for (size_t bh = 0; bh < BH && ok; bh++) {
        head h;
        if (head_of(p, bh, &h) != 0) {
            ok = 0;
            break;
        }
        memset(ds, 0, L * D * sizeof(double)), memset(dz, 0, L * sizeof(double));
        memset(dkt, 0, h.nk * D * sizeof(double)), memset(dvt, 0, h.nk * D * sizeof(double));
        for (size_t i = 0; i < N; i++) {
            to_double(p->q + (bh * N + i) * D, D, q), to_double(p->dout + (bh * N + i) * D, D, g);
            row_backward(p, &h, q, g, phi, dphi, dqr, dkt, dvt, ds, dz);
            if (dq) memcpy(dq + (bh * N + i) * D, dqr, D * sizeof(double));
        }
        if (p->map != MCL_FLURKA_SOFTMAX) keys_backward(p, &h, ds, dz, dphi, dkt, dvt);
        int proj = p->projection != MCL_FLURKA_NO_PROJECTION;
        projection_backward(p, bh, dkt, p->k, proj ? p->e : NULL, h.nk, dk, de);
        projection_backward(p, bh, dvt, p->v, proj ? p->f : NULL, h.nk, dv, df);
        head_free(&h);
    }
    free(phi), free(dphi), free(ds), free(dz), free(dkt), free(dvt);
    return ok ? 0 : -1;
}
