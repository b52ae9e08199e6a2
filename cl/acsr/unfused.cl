/* SPLAT's unfused pipeline, kept as a mode and as the baseline SPLAT published: scores of every
 * row's columns into workspace (R-SDDMM), their softmax in place, then P V (R-SpMM). A
 * work-group of WG work-items per (head, row); a row's scores sit at its offset among the
 * mask's nonzeros. */
#ifndef ACSR_WG
#define ACSR_WG 64
#endif

/* Column t of `row`: its progressions in order, then its CSR columns. */
inline uint column_of(__global const uint *rows, __global const uint *csr, uint row, ulong t)
{
    __global const uint *r = rows + (ulong)row * ACSR_ROW_WORDS;
    for (uint c = 0; c < ACSR_RUNS; c++) {
        if (t < r[3 * c + 2]) return r[3 * c] + r[3 * c + 1] * (uint)t;
        t -= r[3 * c + 2];
    }
    return csr[r[3 * ACSR_RUNS] + t];
}

/* The work-group's row and head, its scores and their count. */
typedef struct row_place {
    uint row, bh;
    ulong count;
    __global float *scores;
} row_place;

inline row_place row_of(__global const ulong *row_offsets, __global float *scores, ulong nonzeros, uint N)
{
    size_t group = get_group_id(0);
    row_place p;
    p.row = (uint)(group % N);
    p.bh = (uint)(group / N);
    p.count = row_offsets[p.row + 1] - row_offsets[p.row];
    p.scores = scores + (ulong)p.bh * nonzeros + row_offsets[p.row];
    return p;
}

__kernel __attribute__((reqd_work_group_size(ACSR_WG, 1, 1)))
void acsr_scores(ACSR_ARGS)
{
    ACSR_OFFSETS;
    __local float q_l[ACSR_D];
    const uint lid = get_local_id(0);
    const row_place p = row_of(row_offsets, scores, nonzeros, N);
    for (uint d = lid; d < ACSR_D; d += ACSR_WG) q_l[d] = load_elem(q, at(p.bh, p.row, d, N)) * scale;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (ulong t = lid; t < p.count; t += ACSR_WG) {
        uint j = column_of(rows, csr, p.row, t);
        float s = 0.0f;
        for (uint d = 0; d < ACSR_D; d++) s = fma(q_l[d], load_elem(k, at(p.bh, j, d, N)), s);
        p.scores[t] = s;
    }
}

__kernel __attribute__((reqd_work_group_size(ACSR_WG, 1, 1)))
void acsr_softmax(ACSR_ARGS)
{
    ACSR_OFFSETS;
    __local float scratch[ACSR_WG];
    const uint lid = get_local_id(0);
    const row_place p = row_of(row_offsets, scores, nonzeros, N);
    float m = -INFINITY;
    for (ulong t = lid; t < p.count; t += ACSR_WG) m = fmax(m, p.scores[t]);
    m = group_max(m, scratch, lid, ACSR_WG);
    float l = 0.0f;
    for (ulong t = lid; t < p.count; t += ACSR_WG) l += exp(p.scores[t] - m);
    l = group_sum(l, scratch, lid, ACSR_WG);
    for (ulong t = lid; t < p.count; t += ACSR_WG) p.scores[t] = exp(p.scores[t] - m) / l;
    if ((flags & ACSR_WANT_LSE) && lid == 0) lse[(ulong)p.bh * N + p.row] = p.count ? m + log(l) : -INFINITY;
}

__kernel __attribute__((reqd_work_group_size(ACSR_WG, 1, 1)))
void acsr_spmm(ACSR_ARGS)
{
    ACSR_OFFSETS;
    const uint lid = get_local_id(0);
    const row_place p = row_of(row_offsets, scores, nonzeros, N);
    for (uint d = lid; d < ACSR_D; d += ACSR_WG) {
        float acc = 0.0f;
        for (ulong t = 0; t < p.count; t++)
            acc = fma(p.scores[t], load_elem(v, at(p.bh, column_of(rows, csr, p.row, t), d, N)), acc);
        store_elem(o, at(p.bh, p.row, d, N), acc);
    }
}
