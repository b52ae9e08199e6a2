/* Dense GEMM for the fused operators: C = op(A) op(B) (+ bias) per batch entry, where A can be
 * formed as it is loaded and C's tile can be transformed as it is stored, so intermediates
 * never reach memory.
 *
 * A is M x K, B is K x N, C is M x N, all row-major with leading dimensions; GEMM_TRANS_A
 * reads A(m, k) from the stored element (k, m), GEMM_TRANS_B likewise. GEMM_A_OP forms A from
 * its stored matrix X (M x K, or K x M when transposed; r and col are X's own coordinates):
 *   0: X itself;
 *   1: LayerNorm, (x[r, col] - mean[r]) * rstd[r] * gamma[col] + beta[col];
 *   2: SwiGLU, silu(x[r, col + silu_shift]) * x[r, col + gate_shift] (X is the 2F-wide
 *      pre-activation, A its F-wide output).
 * GEMM_C_OP transforms what is stored: 0: C (+ bias); 1: SwiGLU's backward, C being dS:
 * c[m, f + silu_shift] = dS b s (1 + a (1 - s)) and c[m, f + gate_shift] = dS a s, with
 * a = h[m, f + silu_shift], b = h[m, f + gate_shift], s = sigmoid(a).
 *
 * A work-group computes a BM x BN tile of C in steps of BK along K through local memory, where
 * both operand tiles are stored k-major as float4s of 4 consecutive rows (A) or columns (B). A
 * work-item owns TM x TN outputs. With TM >= 4 they are TM / 4 groups of 4 consecutive rows
 * spaced BM / (TM / 4) apart, read as float4s; with TM < 4 (the thin tiles of a skinny output,
 * which keep the work-group's work-items that way) single rows spaced BM / TM apart, read one
 * float at a time. Columns likewise. Reads of A broadcast along a row of work-items, reads of B
 * are consecutive. With GEMM_PREFETCH the next
 * step's operands are loaded into registers while the current step computes. The K
 * range may be split (grid dimension 2 = batch x splits): split s writes fp32 partials to slot
 * slot_base + s of `slots`, and gemm_sum_splits adds the slots in order (deterministic; a
 * caller running K in chunks either gives each chunk its own slots or adds each chunk to the
 * same slots, GEMM_ACCUMULATE, in chunk order). */
#ifndef GEMM_BM
#define GEMM_BM 128
#endif
#ifndef GEMM_BN
#define GEMM_BN 128
#endif
#ifndef GEMM_BK
#define GEMM_BK 16
#endif
#ifndef GEMM_TM
#define GEMM_TM 8
#endif
#ifndef GEMM_TN
#define GEMM_TN 8
#endif
#ifndef GEMM_PREFETCH
#define GEMM_PREFETCH 1
#endif
#ifndef GEMM_TRANS_A
#define GEMM_TRANS_A 0
#endif
#ifndef GEMM_TRANS_B
#define GEMM_TRANS_B 0
#endif
#ifndef GEMM_A_OP
#define GEMM_A_OP 0
#endif
#ifndef GEMM_C_OP
#define GEMM_C_OP 0
#endif

#define GX (GEMM_BN / GEMM_TN) /* work-items along N */
#define GY (GEMM_BM / GEMM_TM) /* work-items along M */
#define ITEMS (GX * GY)
#define A_UNITS (GEMM_BM / 4 * GEMM_BK) /* float4s of an A tile */
#define B_UNITS (GEMM_BN / 4 * GEMM_BK)
#define A_PER ((A_UNITS + ITEMS - 1) / ITEMS) /* per work-item */
#define B_PER ((B_UNITS + ITEMS - 1) / ITEMS)
#define A_ROW (GEMM_BM / 4 + 1) /* float4s per k of the local tiles; the one extra spreads */
#define B_ROW (GEMM_BN / 4 + 1) /* the k-strided stores over all banks */

/* The tile row of a work-item's output row i, and the tile column of its output column j. */
#if GEMM_TM >= 4
#define ROW_OF(i) (4 * (ty + (i) / 4 * GY) + (i) % 4)
#else
#define ROW_OF(i) (ty + (i) * GY)
#endif
#if GEMM_TN >= 4
#define COL_OF(j) (4 * (tx + (j) / 4 * GX) + (j) % 4)
#else
#define COL_OF(j) (tx + (j) * GX)
#endif

#define GEMM_HAS_GAMMA 1u
#define GEMM_HAS_BETA 2u
#define GEMM_HAS_BIAS 4u
#define GEMM_PARTIAL 8u /* write fp32 partials of this split instead of C */
#define GEMM_ACCUMULATE 16u /* with GEMM_PARTIAL: add to the slot's partials */

inline float gemm_sigmoid(float x) { return 1.0f / (1.0f + exp(-x)); }

/* A(m, k) of this batch entry, formed by GEMM_A_OP; 0 outside the matrix. */
inline float load_a(__global const store_t *a, ulong lda, ulong m, ulong k, ulong M, ulong k_end,
                    __global const float *mean, __global const float *rstd, __global const store_t *gamma,
                    __global const store_t *beta, ulong silu_shift, ulong gate_shift, uint flags)
{
    if (m >= M || k >= k_end) return 0.0f;
#if GEMM_TRANS_A
    ulong r = k, col = m;
#else
    ulong r = m, col = k;
#endif
#if GEMM_A_OP == 2
    float u = load_elem(a, r * lda + col + silu_shift);
    return u * gemm_sigmoid(u) * load_elem(a, r * lda + col + gate_shift);
#else
    float x = load_elem(a, r * lda + col);
#if GEMM_A_OP == 1
    x = (x - mean[r]) * rstd[r];
    if (flags & GEMM_HAS_GAMMA) x *= load_elem(gamma, col);
    if (flags & GEMM_HAS_BETA) x += load_elem(beta, col);
#endif
    return x;
#endif
}

/* Stores output (m, n) of value v as GEMM_C_OP says. */
inline void store_c(__global store_t *c, ulong ldc, ulong m, ulong n, float v, __global const store_t *bias,
                    __global const store_t *h, ulong ldh, ulong silu_shift, ulong gate_shift, uint flags)
{
#if GEMM_C_OP == 1
    float x = load_elem(h, m * ldh + n + silu_shift), g = load_elem(h, m * ldh + n + gate_shift);
    float s = gemm_sigmoid(x);
    store_elem(c, m * ldc + n + silu_shift, v * g * s * (1.0f + x * (1.0f - s)));
    store_elem(c, m * ldc + n + gate_shift, v * x * s);
#else
    store_elem(c, m * ldc + n, v + ((flags & GEMM_HAS_BIAS) ? load_elem(bias, n) : 0.0f));
#endif
}

inline float load_b(__global const store_t *b, ulong ldb, ulong k, ulong n, ulong k_end, ulong N)
{
    if (k >= k_end || n >= N) return 0.0f;
#if GEMM_TRANS_B
    return load_elem(b, n * ldb + k);
#else
    return load_elem(b, k * ldb + n);
#endif
}

/* The operands of one step, in registers between the global loads and the local stores. */
typedef struct gemm_stage {
    float4 a[A_PER], b[B_PER];
} gemm_stage;

/* Unit u of the A tile: 4 consecutive rows (m) at one k, (mm, kk) in the tile; consecutive work-
 * items take consecutive addresses of the stored matrix (along k, or along m transposed). */
inline uint2 a_unit(uint u)
{
#if GEMM_TRANS_A
    return (uint2)(u % (GEMM_BM / 4) * 4, u / (GEMM_BM / 4));
#else
    return (uint2)(u / GEMM_BK * 4, u % GEMM_BK);
#endif
}

/* Unit u of the B tile: 4 consecutive columns (n) at one k, (nn, kk) in the tile. */
inline uint2 b_unit(uint u)
{
#if GEMM_TRANS_B
    return (uint2)(u / GEMM_BK * 4, u % GEMM_BK);
#else
    return (uint2)(u % (GEMM_BN / 4) * 4, u / (GEMM_BN / 4));
#endif
}

__kernel __attribute__((reqd_work_group_size(GX, GY, 1)))
void gemm(__global const store_t *a, ulong a_off, ulong lda, ulong a_batch,
          __global const store_t *b, ulong b_off, ulong ldb, ulong b_batch,
          __global const float *mean, ulong mean_off, __global const float *rstd, ulong rstd_off,
          ulong stat_batch,
          __global const store_t *gamma, ulong gamma_off, __global const store_t *beta, ulong beta_off,
          ulong silu_shift, ulong gate_shift, __global const store_t *h, ulong h_off, ulong ldh,
          __global const store_t *bias, ulong bias_off, __global store_t *c, ulong c_off, ulong ldc,
          ulong c_batch, __global float *partial, ulong partial_off, uint slot_base, uint slots, ulong M,
          ulong N, ulong K, ulong k_chunk, uint splits, uint flags)
{
    __local float4 a_l[GEMM_BK][A_ROW], b_l[GEMM_BK][B_ROW];
    const uint tx = get_local_id(0), ty = get_local_id(1), lid = ty * GX + tx;
    const ulong n0 = get_group_id(0) * (ulong)GEMM_BN, m0 = get_group_id(1) * (ulong)GEMM_BM;
    const uint split = get_group_id(2) % splits;
    const ulong batch = get_group_id(2) / splits;
    a += a_off + batch * a_batch;
    b += b_off + batch * b_batch;
    mean += mean_off + batch * stat_batch;
    rstd += rstd_off + batch * stat_batch;
    gamma += gamma_off;
    beta += beta_off;
    const ulong k_begin = split * k_chunk, k_end = min(K, k_begin + k_chunk);

    float acc[GEMM_TM][GEMM_TN]; /* row group i / 4 at ty + (i / 4) GY (in float4s), likewise columns */
    for (uint i = 0; i < GEMM_TM; i++)
        for (uint j = 0; j < GEMM_TN; j++) acc[i][j] = 0.0f;

    gemm_stage st;
#define GEMM_LOAD(k0)                                                                          \
    for (uint t = 0; t < A_PER; t++) {                                                         \
        uint2 p = a_unit(lid + t * ITEMS);                                                     \
        float v[4];                                                                            \
        for (uint r = 0; r < 4; r++)                                                           \
            v[r] = load_a(a, lda, m0 + p.x + r, (k0) + p.y, M, k_end, mean, rstd, gamma, beta,  \
                          silu_shift, gate_shift, flags);                                      \
        st.a[t] = (float4)(v[0], v[1], v[2], v[3]);                                            \
    }                                                                                          \
    for (uint t = 0; t < B_PER; t++) {                                                         \
        uint2 p = b_unit(lid + t * ITEMS);                                                     \
        float v[4];                                                                            \
        for (uint r = 0; r < 4; r++) v[r] = load_b(b, ldb, (k0) + p.y, n0 + p.x + r, k_end, N); \
        st.b[t] = (float4)(v[0], v[1], v[2], v[3]);                                            \
    }

#if GEMM_PREFETCH
    GEMM_LOAD(k_begin)
#endif
    for (ulong k0 = k_begin; k0 < k_end; k0 += GEMM_BK) {
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous step's readers are done */
#if !GEMM_PREFETCH
        GEMM_LOAD(k0)
#endif
        for (uint t = 0; t < A_PER; t++) {
            uint u = lid + t * ITEMS;
            uint2 p = a_unit(u);
            if (A_UNITS % ITEMS == 0 || u < A_UNITS) a_l[p.y][p.x / 4] = st.a[t];
        }
        for (uint t = 0; t < B_PER; t++) {
            uint u = lid + t * ITEMS;
            uint2 p = b_unit(u);
            if (B_UNITS % ITEMS == 0 || u < B_UNITS) b_l[p.y][p.x / 4] = st.b[t];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
#if GEMM_PREFETCH
        if (k0 + GEMM_BK < k_end) { GEMM_LOAD(k0 + GEMM_BK) } /* in flight while this step computes */
#endif
        for (uint kk = 0; kk < GEMM_BK; kk++) {
            float av[GEMM_TM], bv[GEMM_TN];
#if GEMM_TM >= 4
#pragma unroll
            for (uint g = 0; g < GEMM_TM / 4; g++) {
                float4 v = a_l[kk][ty + g * GY];
                av[4 * g] = v.x, av[4 * g + 1] = v.y, av[4 * g + 2] = v.z, av[4 * g + 3] = v.w;
            }
#else
            for (uint i = 0; i < GEMM_TM; i++) av[i] = ((__local const float *)a_l[kk])[ROW_OF(i)];
#endif
#if GEMM_TN >= 4
#pragma unroll
            for (uint g = 0; g < GEMM_TN / 4; g++) {
                float4 v = b_l[kk][tx + g * GX];
                bv[4 * g] = v.x, bv[4 * g + 1] = v.y, bv[4 * g + 2] = v.z, bv[4 * g + 3] = v.w;
            }
#else
            for (uint j = 0; j < GEMM_TN; j++) bv[j] = ((__local const float *)b_l[kk])[COL_OF(j)];
#endif
#pragma unroll
            for (uint i = 0; i < GEMM_TM; i++)
#pragma unroll
                for (uint j = 0; j < GEMM_TN; j++) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
        }
    }
#undef GEMM_LOAD

    bias += bias_off;
    h += h_off + batch * c_batch;
    c += c_off + batch * c_batch;
    partial += partial_off + (batch * slots + slot_base + split) * M * N;
    for (uint i = 0; i < GEMM_TM; i++) {
        ulong m = m0 + ROW_OF(i);
        for (uint j = 0; j < GEMM_TN; j++) {
            ulong n = n0 + COL_OF(j);
            if (m >= M || n >= N) continue;
            if (flags & GEMM_PARTIAL)
                partial[m * N + n] = (flags & GEMM_ACCUMULATE) ? partial[m * N + n] + acc[i][j] : acc[i][j];
            else
                store_c(c, ldc, m, n, acc[i][j], bias, h, ldh, silu_shift, gate_shift, flags);
        }
    }
}

/* C[batch][m][n] = sum over s < slots of partial[batch][s][m][n], in slot order (+ bias).
 * Grid (N, M, batches). */
__kernel void gemm_sum_splits(__global const float *partial, ulong partial_off, __global const store_t *bias,
                              ulong bias_off, __global store_t *c, ulong c_off, ulong ldc, ulong c_batch,
                              ulong M, ulong N, uint slots, uint flags)
{
    ulong n = get_global_id(0), m = get_global_id(1), batch = get_global_id(2);
    if (n >= N || m >= M) return;
    partial += partial_off + batch * slots * M * N;
    float sum = 0.0f;
    for (uint s = 0; s < slots; s++) sum += partial[(s * M + m) * N + n];
    if (flags & GEMM_HAS_BIAS) sum += load_elem(bias + bias_off, n);
    store_elem(c + c_off + batch * c_batch, m * ldc + n, sum);
}

/* partial[s][n] = sum over the rows of split s (rows_per_split of them) of x[m][n], in row
 * order; gemm_sum_splits then adds the splits (a bias gradient). Grid (N, splits). */
__kernel void column_sums(__global const store_t *x, ulong x_off, __global float *partial, ulong partial_off,
                          ulong M, ulong N, ulong rows_per_split)
{
    ulong n = get_global_id(0), s = get_global_id(1);
    if (n >= N) return;
    x += x_off;
    ulong end = min(M, (s + 1) * rows_per_split);
    float sum = 0.0f;
    for (ulong m = s * rows_per_split; m < end; m++) sum += load_elem(x, m * N + n);
    partial[partial_off + s * N + n] = sum;
}
