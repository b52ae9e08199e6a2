/* Double-precision reference of ACSR sparse attention (include/megacl.h, "ACSR sparse
 * attention"): dense masked softmax attention, the mask given by a predicate evaluated from the
 * patterns' definitions (independent of the library's split of rows into progressions). */
#ifndef MCL_TESTS_ACSR_REF_H
#define MCL_TESTS_ACSR_REF_H

#define MCL_EXPERIMENTAL
#include "megacl.h"

#include <stddef.h>

/* A mask as a predicate: the union of `count` patterns, or a dense [n, n] byte mask. */
typedef struct ref_acsr_mask {
    size_t n;
    const mcl_acsr_pattern *patterns;
    size_t count;
    const unsigned char *dense; /* used when patterns is NULL */
} ref_acsr_mask;

/* Whether query i sees key j. */
int ref_acsr_has(const ref_acsr_mask *m, size_t i, size_t j);

typedef struct ref_acsr_problem {
    size_t batch, heads, seq, head_dim;
    double scale;
    const ref_acsr_mask *mask;
    const float *q, *k, *v, *dout; /* [B, H, N, D]; dout may be NULL without a backward */
} ref_acsr_problem;

/* O and lse (either may be NULL) of the rows in rows[0 .. row_count) of every head (rows NULL:
 * every row); outputs are full-size arrays, other rows untouched. */
void ref_acsr_forward_rows(const ref_acsr_problem *p, const size_t *rows, size_t row_count, double *out,
                           double *lse);

/* dQ of the rows in rows[0 .. row_count) (rows NULL: every row), likewise. */
void ref_acsr_dq_rows(const ref_acsr_problem *p, const size_t *rows, size_t row_count, double *dq);

/* dK and dV (either may be NULL) of every key. 0 on success, -1 without memory. */
int ref_acsr_dkdv(const ref_acsr_problem *p, double *dk, double *dv);

#endif
