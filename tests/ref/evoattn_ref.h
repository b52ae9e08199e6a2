/* Double-precision EvoAttention reference (include/megacl.h, "EvoAttention").
 *
 * Everything is built on one function that computes a single query row (b, n, h, i): its
 * probabilities, log-sum-exp and output, and for the backward dO, Delta, dP and dS. The full
 * forward and backward the tests use are loops over it, and so is the per-(b, n, h) slice that
 * `megacl bench` uses to verify shapes too large for a full reference on a sample.
 *
 * Inputs are floats already quantized to the storage dtype; results are doubles.
 *   q, k, v, gate, dout: [B, N, S, H, D], element (b, n, s, h, d) at (((b*N+n)*S+s)*H+h)*D+d
 *   mask: [B, N, S]     pair: [B, H, S, S] at ((b*H+h)*S+i)*S+j     lse: [B, N, H, S]
 * A key whose mask value is <= MCL_EVOATTN_MASKED is removed (probability exactly 0); a query
 * with every key removed has O = 0, lse = -INFINITY and zero gradients. */
#ifndef MCL_TESTS_EVOATTN_REF_H
#define MCL_TESTS_EVOATTN_REF_H

#include <stddef.h>

typedef struct ref_evoattn_problem {
    size_t batch, rows, seq, heads, head_dim; /* B, N, S, H, D */
    double scale;                             /* resolved: see ref_evoattn_scale() */
    const float *q, *k, *v;                   /* [B, N, S, H, D] */
    const float *mask;                        /* [B, N, S], or NULL */
    const float *pair;                        /* [B, H, S, S], or NULL */
    const float *gate;                        /* [B, N, S, H, D] gate logits, or NULL */
    const float *dout;                        /* dY when gated, else dO; NULL: forward only */
} ref_evoattn_problem;

/* The scale the op applies: desc_scale, or 1/sqrt(head_dim) when desc_scale == 0. */
double ref_evoattn_scale(size_t head_dim, float desc_scale);

/* One query row. The arrays are the caller's (ref_evoattn_row_alloc makes them): p, dp, ds have
 * S entries; o, y, d_o, dg have D. */
typedef struct ref_evoattn_row {
    double *p;     /* probabilities over keys j; 0 for removed keys */
    double *o;     /* O_i = sum_j P_ij v_j */
    double *y;     /* sigmoid(G_i) * O_i when gated, else a copy of O_i */
    double lse;    /* natural-log log-sum-exp of s_i over the remaining keys; -INFINITY if none */
    int all_masked;/* every key of this row was removed */
    /* backward (only when the problem has dout): */
    double *d_o;   /* dO_i = dY_i * sigmoid(G_i) when gated, else dout_i */
    double *dg;    /* dG_i = dY_i * O_i * sigmoid(G_i) * (1 - sigmoid(G_i)); 0 without a gate */
    double delta;  /* Delta_i = dO_i . O_i */
    double *dp;    /* dP_ij = dO_i . v_j */
    double *ds;    /* dS_ij = P_ij (dP_ij - Delta_i) */
} ref_evoattn_row;

/* Allocates the row's arrays for seq S and head_dim D; returns 0, or -1 if out of memory (the
 * row is then freed). */
int ref_evoattn_row_alloc(ref_evoattn_row *row, size_t seq, size_t head_dim);
void ref_evoattn_row_free(ref_evoattn_row *row);

/* Computes query row i of slice (b, n, h): the forward fields always, the backward fields when
 * p->dout is given. */
void ref_evoattn_row_compute(const ref_evoattn_problem *p, size_t b, size_t n, size_t h, size_t i,
                             ref_evoattn_row *row);

/* Everything one slice (b, n, h) determines. [S, D] arrays hold row s at s*ld (ld >= D), so they
 * may point into full [B, N, S, H, D] arrays (ld = H*D) or be compact (ld = D). Every pointer is
 * optional. out, gated, lse, dq, dk, dv, dgate are overwritten; dmask ([S], the (b, n) row of
 * dmask) and dpair ([S, S], the (b, h) block of dpair) are ADDED to, since they sum over heads
 * and over rows n respectively. dq, dk, dv, dgate, dmask and dpair need p->dout. */
typedef struct ref_evoattn_slice_out {
    size_t ld;
    double *out, *gated, *lse;
    double *dq, *dk, *dv, *dgate;
    double *dmask, *dpair;
} ref_evoattn_slice_out;

/* Returns 0, or -1 if out of memory (outputs then undefined). */
int ref_evoattn_slice(const ref_evoattn_problem *p, size_t b, size_t n, size_t h,
                      const ref_evoattn_slice_out *out);

/* Full forward: out (O), gated (Y; O itself without a gate) [B, N, S, H, D], lse [B, N, H, S];
 * each may be NULL. Returns 0, or -1 if out of memory. */
int ref_evoattn_forward(const ref_evoattn_problem *p, double *out, double *gated, double *lse);

/* Full backward from p->dout (required): dq, dk, dv, dgate [B, N, S, H, D], dmask [B, N, S],
 * dpair [B, H, S, S]; each may be NULL (dgate is 0 without a gate). Returns 0, or -1 if out of
 * memory or without dout. */
int ref_evoattn_backward(const ref_evoattn_problem *p, double *dq, double *dk, double *dv,
                         double *dgate, double *dmask, double *dpair);

#endif
