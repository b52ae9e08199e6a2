/* Tensor-core primitives, a helper of the families with tensor-core variants (gemm, evoattn):
 * present where the host sets MCL_MMA, 1 to issue mma.sync by inline PTX (only on devices whose
 * probe ran it correctly), 2 to emulate the instruction through local memory on any device,
 * slowly, so that the kernels and their fragment layouts are tested everywhere.
 *
 * One instruction multiplies a 16 x K fragment of A by a K x 8 fragment of B into a 16 x 8
 * fragment of fp32 accumulators: m16n8k16 on bf16 or f16 values (MCL_DTYPE 1, 2), m16n8k8 on
 * tf32 values for f32 calls (MCL_DTYPE 0). Every work-item of a warp (32 consecutive ones) holds
 * the fragments in the PTX ISA's layout: lane = 4 g + t; A rows g and g + 8, B column g, C rows
 * g and g + 8 and columns 2t, 2t + 1; along k, A and B take the pairs 2t and 2t + 8 (16-bit) or
 * the values t and t + 4 (tf32). A 32-bit fragment register holds one tf32 value or two 16-bit
 * values, the lower k in the lower half.
 *
 * Every loop over a work-item's fragments or accumulators is unrolled (#pragma unroll), so that
 * they stay in registers: left to its heuristics, a compiler keeps such arrays in stack memory
 * behind loops it does not unroll. Helpers whose loop counts come from their callers do so
 * through MMA_UNROLL, with the instruction only: the emulation's barriers keep a compiler from
 * unrolling their out-of-line copies, where the counts are unknown, and it would say so. */
#if defined(MCL_MMA) && MCL_MMA
#if MCL_DTYPE == 0
typedef uint mma_t; /* tf32: an fp32 bit pattern, its low 13 bits 0 */
#define MMA_K 8     /* k of one instruction */
#define MMA_VALS 1  /* values of a 32-bit fragment register */
#else
typedef ushort mma_t;
#define MMA_K 16
#define MMA_VALS 2
#endif
#define MMA_HALF (MMA_K / 2) /* the k offset of a fragment's second register along k */

/* x as the instruction takes it: tf32 rounded to nearest (ties away, as cvt.rna); 16-bit
 * rounded to nearest even (a stored value is unchanged; a formed one is rounded as the storage
 * type rounds) */
inline mma_t mma_value(float x)
{
#if MCL_DTYPE == 0
    uint u = as_uint(x);
    return isfinite(x) ? (u + 0x1000u) & 0xffffe000u : u;
#elif MCL_DTYPE == 1
    uint u = as_uint(x);
    return (ushort)((isnan(x) ? 0x7fc00000u : u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
#else
    ushort h;
    vstore_half_rte(x, 0, (__private half *)&h);
    return h;
#endif
}

inline void mma_put(__local mma_t *tile, uint i, float x) { tile[i] = mma_value(x); }

/* How the attention kernels stage a tile (their staging functions' `how`): MMA_TRANSPOSED, row r
 * becoming column r; MMA_RESIDUE (tf32), what each value loses to mma_value, itself rounded, so
 * that with the tile of rounded values the operand goes in to about 22 bits (two parts). */
#define MMA_TRANSPOSED 1u
#define MMA_RESIDUE 2u
inline mma_t mma_staged(float x, uint how)
{
#if MCL_DTYPE == 0
    if (how & MMA_RESIDUE) x -= as_float(mma_value(x));
#endif
    return mma_value(x);
}

/* The parts dO goes in as to dP = dO V^T. The backward's dS = P (dP - delta), delta = rowsum(dO
 * O) in fp32 from dO as stored, vanishes on a row of one key only if dP sees that dO too, and
 * keeps its precision where dP is close to delta only so: 16-bit dO is its stored value, tf32
 * takes it as its rounding plus its residue. */
#define MMA_DO_PARTS (MCL_DTYPE == 0 ? 2 : 1)

/* a fragment register from element i on: one tf32 value, or two consecutive 16-bit values */
inline uint mma_reg(__local const mma_t *tile, uint i) { return *(__local const uint *)(tile + i); }

#if MCL_MMA == 1
#define MMA_UNROLL MCL_PRAGMA(unroll)
#if MCL_DTYPE == 0
#define MMA_SHAPE "m16n8k8.row.col.f32.tf32.tf32.f32"
#elif MCL_DTYPE == 1
#define MMA_SHAPE "m16n8k16.row.col.f32.bf16.bf16.f32"
#else
#define MMA_SHAPE "m16n8k16.row.col.f32.f16.f16.f32"
#endif
/* c += a b for one product of the warp (scratch and lid serve the emulation only) */
inline void mma(float *c, const uint *a, const uint *b, __local float *scratch, uint lid)
{
    float d0, d1, d2, d3;
    asm volatile("mma.sync.aligned." MMA_SHAPE " "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
                 : "=f"(d0), "=f"(d1), "=f"(d2), "=f"(d3)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
                   "f"(c[2]), "f"(c[3]));
    c[0] = d0, c[1] = d1, c[2] = d2, c[3] = d3;
}
/* floats of local scratch the emulation needs for a work-group of `items` */
#define MMA_SCRATCH(items) 1
#else
#define MMA_UNROLL
#define MMA_LANE_VALS (6 * MMA_VALS) /* a work-item's fragment values: 4 registers of A, 2 of B */
#define MMA_SCRATCH(items) ((items) * MMA_LANE_VALS)

/* value v (0 the lower) of a fragment register as a float */
inline float mma_unpack(uint reg, uint v)
{
#if MCL_DTYPE == 0
    return as_float(reg);
#elif MCL_DTYPE == 1
    return as_float(v ? reg & 0xffff0000u : reg << 16);
#else
    ushort h = (ushort)(v ? reg >> 16 : reg & 0xffffu);
    return vload_half(0, (const __private half *)&h);
#endif
}

/* The same product emulated: every work-item puts its fragments' values in scratch, then
 * computes its 4 outputs from its warp's, in fp32 (the products of the operands' values are
 * exact there). Every work-item of the group calls it (barriers). */
inline void mma(float *c, const uint *a, const uint *b, __local float *scratch, uint lid)
{
    __local float *mine = scratch + lid * MMA_LANE_VALS;
#pragma unroll
    for (uint r = 0; r < 4; r++)
#pragma unroll
        for (uint v = 0; v < MMA_VALS; v++) mine[r * MMA_VALS + v] = mma_unpack(a[r], v);
#pragma unroll
    for (uint r = 0; r < 2; r++)
#pragma unroll
        for (uint v = 0; v < MMA_VALS; v++) mine[(4 + r) * MMA_VALS + v] = mma_unpack(b[r], v);
    barrier(CLK_LOCAL_MEM_FENCE);
    __local const float *warp = scratch + (lid & ~31u) * MMA_LANE_VALS;
    uint g = (lid & 31) >> 2, t = lid & 3;
#pragma unroll
    for (uint e = 0; e < 4; e++) {
        uint row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
        float s = c[e];
#pragma unroll
        for (uint k = 0; k < MMA_K; k++) {
            uint lane_k = (k % MMA_HALF) / MMA_VALS, v = k % MMA_VALS, high = k >= MMA_HALF;
            uint a_at = ((row & 7) * 4 + lane_k) * MMA_LANE_VALS + ((row >= 8) + 2 * high) * MMA_VALS + v;
            uint b_at = (col * 4 + lane_k) * MMA_LANE_VALS + (4 + high) * MMA_VALS + v;
            s = fma(warp[a_at], warp[b_at], s);
        }
        c[e] = s;
    }
    barrier(CLK_LOCAL_MEM_FENCE); /* scratch is free again */
}
#endif

/* ---- Fragments of warps that own 16 rows ----------------------------------------------------
 * Lane = 4 quad + t holds rows quad and quad + 8 of its warp's 16. Tiles sit in local memory as
 * the instruction's values in rows of `pad` values: a tile whose rows run along k serves as A
 * (a row per output row) or as B (a row per output column). Along k a lane's A and B registers
 * take the values from k0 + 2 t on: the pairs 2 t and 2 t + 8 in 16 bits (the instruction's
 * layout), the single values 2 t and 2 t + 1 in tf32, whose instruction wants t and t + 4. That
 * reorders the sum over k in A and B alike, so the product is the same, and it makes a 16 x 8
 * accumulator block the A fragment of one tf32 step without shuffles, as two blocks are one
 * 16-bit step. */
#define MMA_NEXT (MMA_VALS == 2 ? 8 : 1) /* the k offset of a lane's second register along k */
#define MMA_KB (MMA_K / 8)               /* 16 x 8 accumulator blocks an A fragment takes */

/* The A fragment of rows row, row + 8 and k = k0 .. k0 + MMA_K - 1 of a row-major tile */
inline void mma_a(uint *a, __local const mma_t *tile, uint pad, uint row, uint k0, uint t)
{
    uint at = row * pad + k0 + 2 * t;
    a[0] = mma_reg(tile, at), a[1] = mma_reg(tile, at + 8 * pad);
    a[2] = mma_reg(tile, at + MMA_NEXT), a[3] = mma_reg(tile, at + 8 * pad + MMA_NEXT);
}

/* The B fragment of column n and k = k0 .. k0 + MMA_K - 1: row n of a tile whose rows run along k */
inline void mma_b(uint *b, __local const mma_t *tile, uint pad, uint n, uint k0, uint t)
{
    uint at = n * pad + k0 + 2 * t;
    b[0] = mma_reg(tile, at), b[1] = mma_reg(tile, at + MMA_NEXT);
}

#if MMA_VALS == 2
/* a 16-bit fragment register of two values, lo at the lower k */
inline uint mma_pack(float lo, float hi) { return (uint)mma_value(lo) | (uint)mma_value(hi) << 16; }
#endif

/* MMA_KB 16 x 8 accumulator blocks x[0 ..] (columns 0-7, 8-15) as one A fragment: the
 * accumulators' layout is the A operand's, so a product's result feeds the next product from
 * registers. */
inline void mma_a_of(uint *a, const float (*x)[4])
{
#if MMA_VALS == 2
    a[0] = mma_pack(x[0][0], x[0][1]), a[1] = mma_pack(x[0][2], x[0][3]);
    a[2] = mma_pack(x[1][0], x[1][1]), a[3] = mma_pack(x[1][2], x[1][3]);
#else
    a[0] = mma_value(x[0][0]), a[1] = mma_value(x[0][2]), a[2] = mma_value(x[0][1]), a[3] = mma_value(x[0][3]);
#endif
}

/* c (a 16 x 8 block) += A B over k = 0 .. MMA_K ksteps: A the warp's fragments a[ksteps], B
 * column n of a tile whose rows run along k (every work-item calls it: the emulation has
 * barriers) */
inline void mma_block(float *c, const uint (*a)[4], uint ksteps, __local const mma_t *tile, uint pad, uint n,
                      uint t, __local float *scratch, uint lid)
{
MMA_UNROLL
    for (uint kk = 0; kk < ksteps; kk++) {
        uint b[2];
        mma_b(b, tile, pad, n, MMA_K * kk, t);
        mma(c, a[kk], b, scratch, lid);
    }
}

/* acc[out_blocks] += X Y: X the lane's 16 x 8 accumulator blocks x[0 .. MMA_KB ksteps] as A
 * fragments, Y the rows of a tile that run along k, one per output column (every work-item
 * calls it) */
inline void mma_blocks_times(float (*acc)[4], uint out_blocks, const float (*x)[4], uint ksteps,
                             __local const mma_t *tile, uint pad, uint quad, uint t, __local float *scratch,
                             uint lid)
{
MMA_UNROLL
    for (uint kk = 0; kk < ksteps; kk++) {
        uint a[4];
        mma_a_of(a, x + MMA_KB * kk);
MMA_UNROLL
        for (uint ob = 0; ob < out_blocks; ob++) {
            uint b[2];
            mma_b(b, tile, pad, 8 * ob + quad, MMA_K * kk, t);
            mma(acc[ob], a, b, scratch, lid);
        }
    }
}

/* x and y become the maximum (sum) of the values of the four lanes of their row, in one fixed
 * order on every lane: with the instruction by butterfly shuffles within the warp, emulated
 * through red (two floats a work-item; every work-item calls it). */
#if MCL_MMA == 1
inline float quad_shuffle(float x, uint lanes)
{
    uint y;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=r"(y) : "r"(as_uint(x)), "r"(lanes));
    return as_float(y);
}
#define MMA_QUAD(op, x, y, red, lid)                                                            \
    do {                                                                                       \
        x = op(x, quad_shuffle(x, 1)), y = op(y, quad_shuffle(y, 1));                          \
        x = op(x, quad_shuffle(x, 2)), y = op(y, quad_shuffle(y, 2));                          \
    } while (0)
#else
#define MMA_QUAD(op, x, y, red, lid)                                                            \
    do {                                                                                       \
        red[2 * (lid)] = x, red[2 * (lid) + 1] = y;                                            \
        barrier(CLK_LOCAL_MEM_FENCE);                                                          \
        __local const float *q_ = red + 2 * ((lid) & ~3u);                                     \
        x = op(op(q_[0], q_[2]), op(q_[4], q_[6])), y = op(op(q_[1], q_[3]), op(q_[5], q_[7])); \
        barrier(CLK_LOCAL_MEM_FENCE);                                                          \
    } while (0)
#endif
#define MMA_ADD(a, b) ((a) + (b))


/* One key tile of an online softmax over a warp's 16 rows: s[nblocks] the tile's scores in log2
 * units (-inf where a key is absent), m[2] the rows' running maxima, l[2] the lane's partial
 * row sums and acc[out_blocks] its accumulators, rescaled to the new maxima; s becomes P. A row
 * with no key yet keeps every p at 0. Every work-item calls it. */
inline void mma_online_softmax(float (*s)[4], uint nblocks, float *m, float *l, float (*acc)[4], uint out_blocks,
                               __local float *red, uint lid)
{
    float top[2] = {-INFINITY, -INFINITY}, alpha[2], m_use[2];
MMA_UNROLL
    for (uint nb = 0; nb < nblocks; nb++)
#pragma unroll
        for (uint e = 0; e < 4; e++) top[e / 2] = fmax(top[e / 2], s[nb][e]);
    MMA_QUAD(fmax, top[0], top[1], red, lid);
#pragma unroll
    for (uint r = 0; r < 2; r++) {
        float m_new = fmax(m[r], top[r]);
        m_use[r] = m_new == -INFINITY ? 0.0f : m_new;
        alpha[r] = exp2(m[r] - m_use[r]);
        m[r] = m_new;
        l[r] *= alpha[r];
    }
MMA_UNROLL
    for (uint ob = 0; ob < out_blocks; ob++)
#pragma unroll
        for (uint e = 0; e < 4; e++) acc[ob][e] *= alpha[e / 2];
MMA_UNROLL
    for (uint nb = 0; nb < nblocks; nb++)
#pragma unroll
        for (uint e = 0; e < 4; e++) {
            s[nb][e] = exp2(s[nb][e] - m_use[e / 2]);
            l[e / 2] += s[nb][e];
        }
}
#endif
