/* Double-precision FLuRKA, Linformer and Performer reference (include/megacl.h, "FLuRKA"), and
 * full softmax attention (softmax without a projection). Inputs are floats already quantized to
 * the storage dtype; results are doubles.
 *   q, k, v, dout, out, dq, dk, dv [B, H, N, D]   e, f, de, df [P, k, N] (P = H per head, else 1)
 *   w [m, D]   den [B, H, N]   lse [B, H, N] (softmax only) */
#ifndef MCL_TESTS_FLURKA_REF_H
#define MCL_TESTS_FLURKA_REF_H

#include <stddef.h>

typedef struct ref_flurka_problem {
    size_t batch, heads, seq, dim, rank, features;
    int map;        /* mcl_flurka_map */
    int projection; /* mcl_flurka_projection */
    const float *q, *k, *v, *e, *f, *w;
    const float *dout; /* backward only */
} ref_flurka_problem;

/* out, and the stabilised denominator den as the kernels form it (any may be NULL); lse, the
 * natural log-sum-exp of the scaled scores, for softmax. 0, or -1 without memory. */
int ref_flurka_forward(const ref_flurka_problem *p, double *out, double *den, double *lse);

/* The gradients of sum(dout . out); any output may be NULL. 0, or -1 without memory. */
int ref_flurka_backward(const ref_flurka_problem *p, double *dq, double *dk, double *dv, double *de, double *df);

/* ReLU's kink: the smallest |w_r . x| over every query and every key (projected where the
 * problem projects) whose features the map takes; INFINITY for other maps, -1 without memory.
 * Near 0, fp32 and double may take opposite sides, and a gradient there is no derivative. */
double ref_flurka_nearest_relu_kink(const ref_flurka_problem *p);

#endif
