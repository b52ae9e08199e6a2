/* Dense GEMM for the fused operators: C = op(A) op(B) (+ bias) per batch entry, where A can be
 * formed as it is loaded and C's tile can be transformed as it is stored, so intermediates
 * never reach memory.
 *
 * A is M x K, B is K x N, C is M x N, all row-major with leading dimensions, each of the
 * storage type or fp32 (cl/gemm/operands.cl); GEMM_TRANS_A
 * reads A(m, k) from the stored element (k, m), GEMM_TRANS_B likewise. GEMM_A_OP forms A from
 * its stored matrix X (M x K, or K x M when transposed; r and col are X's own coordinates):
 *   0: X itself;
 *   1: LayerNorm, (x[r, col] - mean[r]) * rstd[r] * gamma[col] + beta[col];
 *   2: SwiGLU, silu(x[r, col + silu_shift]) * x[r, col + gate_shift] (X is the 2F-wide
 *      pre-activation, A its F-wide output).
 * GEMM_C_OP transforms what is stored: 0: C (+ bias, + a residual R laid out as C, which may be C
 * itself: each element is read before it is written, by the same work-item); 1: SwiGLU's
 * backward, C being dS:
 * c[m, f + silu_shift] = dS b s (1 + a (1 - s)) and c[m, f + gate_shift] = dS a s, with
 * a = h[m, f + silu_shift], b = h[m, f + gate_shift], s = sigmoid(a).
 *
 * A work-group computes a BM x BN tile of C in steps of BK along K through local memory, where
 * both operand tiles are stored k-major as float4s of 4 consecutive rows (A) or columns (B). A
 * work-item owns TM x TN outputs. With TM >= 4 they are TM / 4 groups of 4 consecutive rows
 * spaced BM / (TM / 4) apart, read as float4s; with TM < 4 (the thin tiles of a skinny output,
 * which keep the work-group's work-items that way) single rows spaced BM / TM apart, read one
 * float at a time. Columns likewise. Reads of A broadcast along a row of work-items, reads of B
 * are consecutive. With GEMM_PREFETCH the next step's operands are loaded into registers while
 * the current step computes, and stored to a second local buffer after it. Tiles inside the
 * matrices take a fast path where the storage is aligned (GEMM_ALIGN_*): vector loads and
 * stores without bounds checks, LayerNorm statistics read once; tiles on the edges check every
 * element. The K range may be split (grid dimension 2 = batch x splits): split s writes fp32
 * partials to slot slot_base + s of `slots`, and gemm_sum_splits (sums.cl) adds the slots in
 * order (deterministic; a caller running K in chunks either gives each chunk its own slots or
 * adds each chunk to the same slots, GEMM_ACCUMULATE, in chunk order). */
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
#ifndef GEMM_UNROLL
#define GEMM_UNROLL 2
#endif
#ifndef GEMM_MMA
#define GEMM_MMA 0
#endif
/* with GEMM_MMA: the warps along M of a work-group's tile (the host's choice for the tile) */
#ifndef GEMM_WARPS_M
#define GEMM_WARPS_M 1
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
/* The largest power of two up to 8 dividing every offset, leading dimension and shift of A's
 * stored matrix (and its LayerNorm weights), in elements; likewise B. Set by the host per call. */
#ifndef GEMM_ALIGN_A
#define GEMM_ALIGN_A 1
#endif
#ifndef GEMM_ALIGN_B
#define GEMM_ALIGN_B 1
#endif
/* Likewise for what the epilogue writes and reads: C (or the partials), bias, h. */
#ifndef GEMM_ALIGN_C
#define GEMM_ALIGN_C 1
#endif

#define GX (GEMM_BN / GEMM_TN) /* work-items along N */
#define GY (GEMM_BM / GEMM_TM) /* work-items along M */
#define ITEMS (GX * GY)
#define A_UNITS (GEMM_BM / 4 * GEMM_BK) /* float4s of an A tile */
#define B_UNITS (GEMM_BN / 4 * GEMM_BK)
#define A_PER ((A_UNITS + ITEMS - 1) / ITEMS) /* per work-item */
#define B_PER ((B_UNITS + ITEMS - 1) / ITEMS)
/* An operand takes the fast path (vector loads, no bounds checks) on the steps its tile lies
 * inside the matrix when its units divide evenly among the work-items and its storage is
 * aligned to the vector width: a unit's 4 elements transposed, else a run of A_PER (B_PER) k. */
#if GEMM_TRANS_A
#define A_VEC 4
#else
#define A_VEC A_PER
#endif
#if GEMM_TRANS_B
#define B_VEC B_PER
#else
#define B_VEC 4
#endif
#define A_FAST (A_UNITS % ITEMS == 0 && A_PER <= GEMM_BK && GEMM_ALIGN_A % A_VEC == 0)
#define B_FAST (B_UNITS % ITEMS == 0 && B_PER <= GEMM_BK && GEMM_ALIGN_B % B_VEC == 0)
#define STAGES (GEMM_PREFETCH ? 2 : 1) /* local buffers of the operand tiles */
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

/* A(m, k) of this batch entry, formed by GEMM_A_OP; 0 outside the matrix. */
inline float load_a(__global const a_t *a, ulong lda, ulong m, ulong k, ulong M, ulong k_end,
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
    float u = LOAD_A_ELEM(a, r * lda + col + silu_shift);
    return u * mcl_sigmoid(u) * LOAD_A_ELEM(a, r * lda + col + gate_shift);
#else
    float x = LOAD_A_ELEM(a, r * lda + col);
#if GEMM_A_OP == 1
    x = (x - mean[r]) * rstd[r];
    if (flags & GEMM_HAS_GAMMA) x *= load_elem(gamma, col);
    if (flags & GEMM_HAS_BETA) x += load_elem(beta, col);
#endif
    return x;
#endif
}

/* Stores output (m, n) of value v as GEMM_C_OP says. */
inline void store_c(__global c_t *c, ulong ldc, ulong m, ulong n, float v, __global const store_t *bias,
                    __global const c_t *residual, __global const store_t *h, ulong ldh, ulong silu_shift,
                    ulong gate_shift, uint flags)
{
#if GEMM_C_OP == 1
    float x = load_elem(h, m * ldh + n + silu_shift), g = load_elem(h, m * ldh + n + gate_shift);
    float s = mcl_sigmoid(x);
    STORE_C_ELEM(c, m * ldc + n + silu_shift, v * g * s * (1.0f + x * (1.0f - s)));
    STORE_C_ELEM(c, m * ldc + n + gate_shift, v * x * s);
#else
    v += (flags & GEMM_HAS_BIAS) ? load_elem(bias, n) : 0.0f;
    v += (flags & GEMM_HAS_RESIDUAL) ? LOAD_C_ELEM(residual, m * ldc + n) : 0.0f;
    STORE_C_ELEM(c, m * ldc + n, v);
#endif
}

#if GEMM_TN >= 4 && GEMM_ALIGN_C % 4 == 0
/* store_c for the 4 consecutive outputs (m, n .. n + 3), by vector accesses */
inline void store_c4(__global c_t *c, ulong ldc, ulong m, ulong n, float *v, __global const store_t *bias,
                     __global const c_t *residual, __global const store_t *h, ulong ldh, ulong silu_shift,
                     ulong gate_shift, uint flags)
{
#if GEMM_C_OP == 1
    float x[4], g[4], ds[4], dg[4];
    load_vec4(h, m * ldh + n + silu_shift, x);
    load_vec4(h, m * ldh + n + gate_shift, g);
    for (uint i = 0; i < 4; i++) {
        float s = mcl_sigmoid(x[i]);
        ds[i] = v[i] * g[i] * s * (1.0f + x[i] * (1.0f - s));
        dg[i] = v[i] * x[i] * s;
    }
    MCL_CAT(STORE_C_VEC, 4)(c, m * ldc + n + silu_shift, ds);
    MCL_CAT(STORE_C_VEC, 4)(c, m * ldc + n + gate_shift, dg);
#else
    if (flags & GEMM_HAS_BIAS) {
        float b[4];
        load_vec4(bias, n, b);
        for (uint i = 0; i < 4; i++) v[i] += b[i];
    }
    if (flags & GEMM_HAS_RESIDUAL) {
        float r[4];
        MCL_CAT(LOAD_C_VEC, 4)(residual, m * ldc + n, r);
        for (uint i = 0; i < 4; i++) v[i] += r[i];
    }
    MCL_CAT(STORE_C_VEC, 4)(c, m * ldc + n, v);
#endif
}
#endif

inline float load_b(__global const b_t *b, ulong ldb, ulong k, ulong n, ulong k_end, ulong N)
{
    if (k >= k_end || n >= N) return 0.0f;
#if GEMM_TRANS_B
    return LOAD_B_ELEM(b, n * ldb + k);
#else
    return LOAD_B_ELEM(b, k * ldb + n);
#endif
}

/* The fast path loads A as stored and forms it (SwiGLU; LayerNorm when A is not transposed)
 * only as it goes to local memory (form_a), after the step that the loads overlap: formed at
 * the load, the work-item would wait for its loads before that step. */
#define DEFER_A (A_FAST && (GEMM_A_OP == 2 || (GEMM_A_OP == 1 && !GEMM_TRANS_A)))

/* The operands of one step, in registers between the global loads and the local stores. */
typedef struct gemm_stage {
    float4 a[A_PER], b[B_PER];
#if DEFER_A
    uint raw; /* a holds A as loaded: SwiGLU's silu half, or X before its LayerNorm */
#if GEMM_A_OP == 2
    float4 gate[A_PER]; /* SwiGLU's gate half */
#else
    float w[A_PER], c[A_PER]; /* LayerNorm's weight and bias at each unit's k */
#endif
#endif
} gemm_stage;

/* The operand tiles' units a work-item loads in a step: unit t of work-item lid is 4 consecutive
 * rows (A) or columns (B) at one k, (mm or nn, kk) in the tile. An operand stored along k (A
 * as stored, B transposed) that takes the fast path has each work-item load 4 rows (columns)
 * x a run of A_PER (B_PER) consecutive k, vector loads along the rows; otherwise consecutive
 * work-items take consecutive addresses of the stored matrix. */
inline uint2 a_unit(uint lid, uint t)
{
#if !GEMM_TRANS_A && A_FAST
    return (uint2)(lid / (GEMM_BK / A_PER) * 4, lid % (GEMM_BK / A_PER) * A_PER + t);
#else
    uint u = lid + t * ITEMS;
#if GEMM_TRANS_A
    return (uint2)(u % (GEMM_BM / 4) * 4, u / (GEMM_BM / 4));
#else
    return (uint2)(u / GEMM_BK * 4, u % GEMM_BK);
#endif
#endif
}

inline uint2 b_unit(uint lid, uint t)
{
#if GEMM_TRANS_B && B_FAST
    return (uint2)(lid / (GEMM_BK / B_PER) * 4, lid % (GEMM_BK / B_PER) * B_PER + t);
#else
    uint u = lid + t * ITEMS;
#if GEMM_TRANS_B
    return (uint2)(u / GEMM_BK * 4, u % GEMM_BK);
#else
    return (uint2)(u % (GEMM_BN / 4) * 4, u / (GEMM_BN / 4));
#endif
#endif
}

/* n (1, 2, 4 or 8, a constant) consecutive elements from element i into dst, by the loads
 * named vec1 .. vec8 (load_vec or an operand's LOAD_X_VEC) */
#define LOAD_RUN(vec, n, p, i, dst)                                                            \
    do {                                                                                       \
        if ((n) == 8) MCL_CAT(vec, 8)((p), (i), (dst));                                        \
        else if ((n) == 4) MCL_CAT(vec, 4)((p), (i), (dst));                                   \
        else if ((n) == 2) MCL_CAT(vec, 2)((p), (i), (dst));                                   \
        else MCL_CAT(vec, 1)((p), (i), (dst));                                                 \
    } while (0)

/* The LayerNorm and SwiGLU arguments of load_a, passed along unchanged */
#define A_OP_PARAMS                                                                            \
    __global const float *mean, __global const float *rstd, __global const store_t *gamma,     \
        __global const store_t *beta, ulong silu_shift, ulong gate_shift, uint flags
#define A_OP_ARGS mean, rstd, gamma, beta, silu_shift, gate_shift, flags

/* A's share of a step, checked element by element (tiles on the matrix's edges, unaligned A) */
inline void load_a_checked(gemm_stage *st, uint lid, __global const a_t *a, ulong lda, ulong m0, ulong k0,
                           ulong M, ulong k_end, A_OP_PARAMS)
{
    for (uint t = 0; t < A_PER; t++) {
        uint2 p = a_unit(lid, t);
        float v[4];
        for (uint r = 0; r < 4; r++)
            v[r] = load_a(a, lda, m0 + p.x + r, k0 + p.y, M, k_end, A_OP_ARGS);
        st->a[t] = vload4(0, v);
    }
#if DEFER_A
    st->raw = 0;
#endif
}

inline void load_b_checked(gemm_stage *st, uint lid, __global const b_t *b, ulong ldb, ulong n0, ulong k0,
                           ulong N, ulong k_end)
{
    for (uint t = 0; t < B_PER; t++) {
        uint2 p = b_unit(lid, t);
        float v[4];
        for (uint r = 0; r < 4; r++) v[r] = load_b(b, ldb, k0 + p.y, n0 + p.x + r, k_end, N);
        st->b[t] = vload4(0, v);
    }
}

#if A_FAST
/* A's share of a step inside the matrix, by vector loads; formed here only where transposed
 * LayerNorm (DEFER_A clear), else by form_a. */
inline void load_a_fast(gemm_stage *st, uint lid, __global const a_t *a, ulong lda, ulong m0, ulong k0,
                        A_OP_PARAMS)
{
#if GEMM_TRANS_A
#pragma unroll
    for (uint t = 0; t < A_PER; t++) {
        uint2 p = a_unit(lid, t);
        ulong k = k0 + p.y, m = m0 + p.x, at = k * lda + m; /* stored row k, columns m .. m + 3 */
        float v[4];
#if GEMM_A_OP == 2
        float g[4];
        MCL_CAT(LOAD_A_VEC, 4)(a, at + silu_shift, v);
        MCL_CAT(LOAD_A_VEC, 4)(a, at + gate_shift, g);
        st->gate[t] = vload4(0, g);
#else
        MCL_CAT(LOAD_A_VEC, 4)(a, at, v);
#if GEMM_A_OP == 1
        float mu = mean[k], rs = rstd[k], w[4] = {1.0f, 1.0f, 1.0f, 1.0f}, c[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (flags & GEMM_HAS_GAMMA) load_vec4(gamma, m, w);
        if (flags & GEMM_HAS_BETA) load_vec4(beta, m, c);
        for (uint i = 0; i < 4; i++) v[i] = (v[i] - mu) * rs * w[i] + c[i];
#endif
#endif
        st->a[t] = vload4(0, v);
    }
#else
    uint2 p = a_unit(lid, 0);
    ulong k = k0 + p.y;
    float v[4][A_PER];
#if GEMM_A_OP == 1
    for (uint j = 0; j < A_PER; j++) st->w[j] = 1.0f, st->c[j] = 0.0f;
    if (flags & GEMM_HAS_GAMMA) LOAD_RUN(load_vec, A_PER, gamma, k, st->w);
    if (flags & GEMM_HAS_BETA) LOAD_RUN(load_vec, A_PER, beta, k, st->c);
#elif GEMM_A_OP == 2
    float g[4][A_PER];
#endif
#pragma unroll
    for (uint r = 0; r < 4; r++) {
        ulong at = (m0 + p.x + r) * lda + k;
#if GEMM_A_OP == 2
        LOAD_RUN(LOAD_A_VEC, A_PER, a, at + silu_shift, v[r]);
        LOAD_RUN(LOAD_A_VEC, A_PER, a, at + gate_shift, g[r]);
#else
        LOAD_RUN(LOAD_A_VEC, A_PER, a, at, v[r]);
#endif
    }
#pragma unroll
    for (uint t = 0; t < A_PER; t++) {
        st->a[t] = (float4)(v[0][t], v[1][t], v[2][t], v[3][t]);
#if GEMM_A_OP == 2
        st->gate[t] = (float4)(g[0][t], g[1][t], g[2][t], g[3][t]);
#endif
    }
#endif
#if DEFER_A
    st->raw = 1;
#endif
}
#endif

#if DEFER_A
/* A as loaded by the fast path, formed: silu(a) * gate, or the LayerNorm of the work-item's 4
 * rows (their statistics in row_mean and row_rstd) */
inline void form_a(gemm_stage *st, const float *row_mean, const float *row_rstd)
{
    if (!st->raw) return;
#if GEMM_A_OP == 2
#pragma unroll
    for (uint t = 0; t < A_PER; t++) st->a[t] = st->a[t] * mcl_sigmoid4(st->a[t]) * st->gate[t];
#else
    float4 mu = vload4(0, row_mean), rs = vload4(0, row_rstd);
#pragma unroll
    for (uint t = 0; t < A_PER; t++) st->a[t] = (st->a[t] - mu) * rs * st->w[t] + st->c[t];
#endif
}
#define FORM_A form_a(&st, row_mean, row_rstd);
#else
#define FORM_A
#endif

#if B_FAST
/* B's share of a step inside the matrix, by vector loads */
inline void load_b_fast(gemm_stage *st, uint lid, __global const b_t *b, ulong ldb, ulong n0, ulong k0)
{
#if GEMM_TRANS_B
    uint2 p = b_unit(lid, 0);
    float v[4][B_PER];
#pragma unroll
    for (uint c = 0; c < 4; c++) LOAD_RUN(LOAD_B_VEC, B_PER, b, (n0 + p.x + c) * ldb + k0 + p.y, v[c]);
#pragma unroll
    for (uint t = 0; t < B_PER; t++) st->b[t] = (float4)(v[0][t], v[1][t], v[2][t], v[3][t]);
#else
#pragma unroll
    for (uint t = 0; t < B_PER; t++) {
        uint2 p = b_unit(lid, t);
        float v[4];
        MCL_CAT(LOAD_B_VEC, 4)(b, (k0 + p.y) * ldb + n0 + p.x, v);
        st->b[t] = vload4(0, v);
    }
#endif
}
#endif

/* One step's products: acc += the A tile's rows x the B tile's columns of this work-item, over
 * the BK values of k in local memory. */
inline void gemm_step(__local const float4 (*a_l)[A_ROW], __local const float4 (*b_l)[B_ROW], uint tx, uint ty,
                      float acc[GEMM_TM][GEMM_TN])
{
    MCL_PRAGMA(unroll GEMM_UNROLL)
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

#if GEMM_MMA
/* ---- tensor cores ---------------------------------------------------------------------------
 * With GEMM_MMA each warp owns a WM x WN part of the tile and multiplies with the instruction of
 * cl/mma.cl (1: mma.sync, 2: its emulation). The operand tiles go to local memory as the
 * instruction's values (16-bit, or fp32 rounded to tf32), rows of A and columns of B each KPAD
 * long along k. The host takes this path for calls whose A and B are of the storage type: the
 * products of 16-bit stored values are exact, so only the order of the fp32 sums differs from
 * the FMA path; an A formed as it loads (LayerNorm, SwiGLU) is rounded to the storage type
 * first, as a 16-bit model's activations are; tf32 rounds both operands to 10-bit mantissas. */
#define WARPS (ITEMS / 32)
#define WARPS_N (WARPS / GEMM_WARPS_M)
#define WM (GEMM_BM / GEMM_WARPS_M) /* a warp's part of the tile */
#define WN (GEMM_BN / WARPS_N)
#define MI (WM / 16) /* its m16n8 products */
#define NJ (WN / 8)
#if MCL_DTYPE == 0
#define KPAD (GEMM_BK + 4)
#else
#define KPAD (GEMM_BK + 8) /* values a local row holds: the extra spread the rows over the banks */
#endif
#define MMA_SCRATCH_FLOATS MMA_SCRATCH(ITEMS)

/* One step's products of this work-item's warp over the BK values of k in local memory. */
inline void mma_step(__local const mma_t *a_tile, __local const mma_t *b_tile, uint lid, float acc[MI][NJ][4],
                     __local float *scratch)
{
    uint warp = lid / 32, g = (lid & 31) >> 2, t = lid & 3;
    uint wm0 = warp / WARPS_N * WM, wn0 = warp % WARPS_N * WN;
    for (uint kk = 0; kk < GEMM_BK; kk += MMA_K) {
        uint a[MI][4], b[NJ][2];
        for (uint i = 0; i < MI; i++) {
            uint at = (wm0 + 16 * i + g) * KPAD + kk + MMA_VALS * t;
            a[i][0] = mma_reg(a_tile, at), a[i][1] = mma_reg(a_tile, at + 8 * KPAD);
            a[i][2] = mma_reg(a_tile, at + MMA_HALF), a[i][3] = mma_reg(a_tile, at + 8 * KPAD + MMA_HALF);
        }
        for (uint j = 0; j < NJ; j++) {
            uint at = (wn0 + 8 * j + g) * KPAD + kk + MMA_VALS * t;
            b[j][0] = mma_reg(b_tile, at), b[j][1] = mma_reg(b_tile, at + MMA_HALF);
        }
        for (uint i = 0; i < MI; i++)
            for (uint j = 0; j < NJ; j++) mma(acc[i][j], a[i], b[j], scratch, lid);
    }
}
#endif

__kernel __attribute__((reqd_work_group_size(GX, GY, 1)))
void gemm(__global const a_t *a, ulong a_off, ulong lda, ulong a_batch,
          __global const b_t *b, ulong b_off, ulong ldb, ulong b_batch,
          __global const float *mean, ulong mean_off, __global const float *rstd, ulong rstd_off,
          ulong stat_batch,
          __global const store_t *gamma, ulong gamma_off, __global const store_t *beta, ulong beta_off,
          ulong silu_shift, ulong gate_shift, __global const store_t *h, ulong h_off, ulong ldh,
          __global const store_t *bias, ulong bias_off, __global const c_t *residual, ulong residual_off,
          __global c_t *c, ulong c_off, ulong ldc,
          ulong c_batch, __global float *partial, ulong partial_off, uint slot_base, uint slots, ulong M,
          ulong N, ulong K, ulong k_chunk, uint splits, uint flags)
{
#if GEMM_MMA
    /* 16-byte aligned: the fragments are read as 32-bit registers */
    __local mma_t a_l[STAGES][GEMM_BM * KPAD] __attribute__((aligned(16)));
    __local mma_t b_l[STAGES][GEMM_BN * KPAD] __attribute__((aligned(16)));
    __local float scratch[MMA_SCRATCH_FLOATS];
#else
    __local float4 a_l[STAGES][GEMM_BK][A_ROW], b_l[STAGES][GEMM_BK][B_ROW];
#endif
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

#if GEMM_MMA
    float acc[MI][NJ][4]; /* the fragments of the warp's products */
    for (uint i = 0; i < MI; i++)
        for (uint j = 0; j < NJ; j++)
            for (uint e = 0; e < 4; e++) acc[i][j][e] = 0.0f;
#define GEMM_COMPUTE(buf) mma_step(a_l[buf], b_l[buf], lid, acc, scratch);
#else
    float acc[GEMM_TM][GEMM_TN]; /* row group i / 4 at ty + (i / 4) GY (in float4s), likewise columns */
#pragma unroll
    for (uint i = 0; i < GEMM_TM; i++)
#pragma unroll
        for (uint j = 0; j < GEMM_TN; j++) acc[i][j] = 0.0f;
#define GEMM_COMPUTE(buf) gemm_step(a_l[buf], b_l[buf], tx, ty, acc);
#endif

    /* the fast paths need the whole tile inside the matrix along m (A) or n (B) */
    const bool a_inside = m0 + GEMM_BM <= M, b_inside = n0 + GEMM_BN <= N;
    float row_mean[4] = {0.0f, 0.0f, 0.0f, 0.0f}, row_rstd[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#if A_FAST && !GEMM_TRANS_A && GEMM_A_OP == 1
    if (a_inside) {
        uint2 p = a_unit(lid, 0);
        for (uint r = 0; r < 4; r++) row_mean[r] = mean[m0 + p.x + r], row_rstd[r] = rstd[m0 + p.x + r];
    }
#endif

    gemm_stage st;
#if A_FAST
#define LOAD_A(k0)                                                                             \
    if (a_inside && (k0) + GEMM_BK <= k_end)                                                   \
        load_a_fast(&st, lid, a, lda, m0, (k0), A_OP_ARGS);                                    \
    else                                                                                       \
        load_a_checked(&st, lid, a, lda, m0, (k0), M, k_end, A_OP_ARGS);
#else
#define LOAD_A(k0) load_a_checked(&st, lid, a, lda, m0, (k0), M, k_end, A_OP_ARGS);
#endif
#if B_FAST
#define LOAD_B(k0)                                                                             \
    if (b_inside && (k0) + GEMM_BK <= k_end)                                                   \
        load_b_fast(&st, lid, b, ldb, n0, (k0));                                               \
    else                                                                                       \
        load_b_checked(&st, lid, b, ldb, n0, (k0), N, k_end);
#else
#define LOAD_B(k0) load_b_checked(&st, lid, b, ldb, n0, (k0), N, k_end);
#endif
#define GEMM_LOAD(k0) LOAD_A(k0) LOAD_B(k0)

    /* the staged operands into local buffer `buf` (for the tensor cores: rows of A and columns
     * of B along k, 16-bit) */
#if GEMM_MMA
#define PUT_UNIT(tile, p, v)                                                                   \
    mma_put(tile, p.x * KPAD + p.y, (v).x);                                                    \
    mma_put(tile, (p.x + 1) * KPAD + p.y, (v).y);                                              \
    mma_put(tile, (p.x + 2) * KPAD + p.y, (v).z);                                              \
    mma_put(tile, (p.x + 3) * KPAD + p.y, (v).w);
#else
#define PUT_UNIT(tile, p, v) tile[p.y][p.x / 4] = (v);
#endif
#define GEMM_STORE(buf)                                                                        \
    FORM_A                                                                                     \
    for (uint t = 0; t < A_PER; t++) {                                                         \
        uint2 p = a_unit(lid, t);                                                              \
        if (A_UNITS % ITEMS == 0 || lid + t * ITEMS < A_UNITS) { PUT_UNIT(a_l[buf], p, st.a[t]) } \
    }                                                                                          \
    for (uint t = 0; t < B_PER; t++) {                                                         \
        uint2 p = b_unit(lid, t);                                                              \
        if (B_UNITS % ITEMS == 0 || lid + t * ITEMS < B_UNITS) { PUT_UNIT(b_l[buf], p, st.b[t]) } \
    }

#if GEMM_PREFETCH
    /* Step s computes from local buffer s % 2 while the next step's operands, loaded into
     * registers before it began, wait to go to the other buffer: one barrier a step. */
    GEMM_LOAD(k_begin)
    GEMM_STORE(0)
    barrier(CLK_LOCAL_MEM_FENCE);
    uint buf = 0;
    for (ulong k0 = k_begin; k0 < k_end; k0 += GEMM_BK, buf ^= 1) {
        const bool more = k0 + GEMM_BK < k_end;
        if (more) { GEMM_LOAD(k0 + GEMM_BK) } /* in flight while this step computes */
        GEMM_COMPUTE(buf)
        if (more) { GEMM_STORE(buf ^ 1) }
        barrier(CLK_LOCAL_MEM_FENCE); /* the next buffer is full, this one free again */
    }
#else
    for (ulong k0 = k_begin; k0 < k_end; k0 += GEMM_BK) {
        GEMM_LOAD(k0)
        GEMM_STORE(0)
        barrier(CLK_LOCAL_MEM_FENCE);
        GEMM_COMPUTE(0)
        barrier(CLK_LOCAL_MEM_FENCE); /* the readers are done before the next step's stores */
    }
#endif
#undef GEMM_LOAD
#undef GEMM_STORE
#undef PUT_UNIT
#undef GEMM_COMPUTE
#undef LOAD_A
#undef LOAD_B

    bias += bias_off;
    residual += residual_off + batch * c_batch;
    h += h_off + batch * c_batch;
    c += c_off + batch * c_batch;
    partial += partial_off + (batch * slots + slot_base + split) * M * N;
#if GEMM_MMA
    uint warp = lid / 32, g = (lid & 31) >> 2, t = lid & 3;
    ulong wm0 = m0 + warp / WARPS_N * WM, wn0 = n0 + warp % WARPS_N * WN;
    for (uint i = 0; i < MI; i++)
        for (uint j = 0; j < NJ; j++)
            for (uint e = 0; e < 4; e++) {
                ulong m = wm0 + 16 * i + g + (e >= 2 ? 8 : 0), n = wn0 + 8 * j + 2 * t + (e & 1);
                if (m >= M || n >= N) continue;
                if (flags & GEMM_PARTIAL)
                    partial[m * N + n] = (flags & GEMM_ACCUMULATE) ? partial[m * N + n] + acc[i][j][e] : acc[i][j][e];
                else
                    store_c(c, ldc, m, n, acc[i][j][e], bias, residual, h, ldh, silu_shift, gate_shift, flags);
            }
#else
#if GEMM_TN >= 4 && GEMM_ALIGN_C % 4 == 0
    if (a_inside && b_inside) { /* the whole tile, by vector accesses of a column group */
#pragma unroll
        for (uint i = 0; i < GEMM_TM; i++) {
            ulong m = m0 + ROW_OF(i);
#pragma unroll
            for (uint j = 0; j < GEMM_TN; j += 4) {
                ulong n = n0 + COL_OF(j);
                float v[4] = {acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3]};
                if (flags & GEMM_PARTIAL) {
                    __global float4 *out = (__global float4 *)(partial + m * N + n);
                    *out = (flags & GEMM_ACCUMULATE) ? *out + vload4(0, v) : vload4(0, v);
                } else {
                    store_c4(c, ldc, m, n, v, bias, residual, h, ldh, silu_shift, gate_shift, flags);
                }
            }
        }
        return;
    }
#endif
    for (uint i = 0; i < GEMM_TM; i++) {
        ulong m = m0 + ROW_OF(i);
        for (uint j = 0; j < GEMM_TN; j++) {
            ulong n = n0 + COL_OF(j);
            if (m >= M || n >= N) continue;
            if (flags & GEMM_PARTIAL)
                partial[m * N + n] = (flags & GEMM_ACCUMULATE) ? partial[m * N + n] + acc[i][j] : acc[i][j];
            else
                store_c(c, ldc, m, n, acc[i][j], bias, residual, h, ldh, silu_shift, gate_shift, flags);
        }
    }
#endif
}
