/* Triangle multiplicative update: the elementwise steps around its GEMMs (lib/ops/trimul/trimul.c).
 * The k-sum is a batched GEMM over channels, T_ch = A_ch B_ch^T, on channel-first operands
 * [h][N][N] that these kernels prepare: for the outgoing update A_ch[i][k] = a[i, k] and
 * B_ch[j][k] = b[j, k]; for the incoming one both are transposed (A_ch[i][k] = a[k, i]), so
 * one GEMM shape serves both. The host runs the core a chunk of channels at a time: there p is
 * the chunk's projections [N*N, 4 chunk] and h the chunk's channels. */
#define TM_HAS_MASK 1u
#define TM_INCOMING 2u

/* The layout changes between channels-last [pairs, h] and channel-first [h, pairs] go through a
 * tile of TILE positions x TILE channels in local memory: read with channels along x, written with
 * positions along x, so that both sides move whole runs of memory. Work-groups are
 * (TILE, TILE_ROWS); group (x, y) holds positions TILE x on and channels TILE y on. */
#define TILE 32
#define TILE_ROWS 8

/* The pair ij = i * N + j whose channels lie at position d of a channel-first operand plane:
 * ij itself for the outgoing update, d = j * N + i for the incoming one. */
inline ulong source_pair(ulong d, uint n, uint flags)
{
    return (flags & TM_INCOMING) ? (d % n) * n + d / n : d;
}

inline float pair_mask(__global const store_t *mask, ulong ij, uint flags)
{
    return (flags & TM_HAS_MASK) ? load_elem(mask, ij) : 1.0f;
}

/* A and B from p: a = sigmoid(a_gate) * a_proj * mask, likewise b. */
__kernel __attribute__((reqd_work_group_size(TILE, TILE_ROWS, 1)))
void trimul_gates(__global const store_t *p, ulong p_off, __global const store_t *mask, ulong mask_off,
                  __global store_t *a, ulong a_off, __global store_t *b, ulong b_off, uint n, uint h, uint width,
                  uint flags)
{
    __local float a_t[TILE][TILE + 1], b_t[TILE][TILE + 1]; /* [position][channel] */
    const uint tx = get_local_id(0), ty = get_local_id(1), c0 = get_group_id(1) * TILE;
    const ulong pairs = (ulong)n * n, d0 = get_group_id(0) * (ulong)TILE;
    p += p_off;
    mask += mask_off;
    for (uint r = ty; r < TILE; r += TILE_ROWS) {
        ulong d = d0 + r, ch = c0 + tx;
        if (d >= pairs || ch >= h) continue;
        ulong ij = source_pair(d, n, flags), row = ij * width;
        float m = pair_mask(mask, ij, flags);
        a_t[r][tx] = mcl_sigmoid(load_elem(p, row + h + ch)) * load_elem(p, row + ch) * m;
        b_t[r][tx] = mcl_sigmoid(load_elem(p, row + 3 * h + ch)) * load_elem(p, row + 2 * h + ch) * m;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint r = ty; r < TILE; r += TILE_ROWS) {
        ulong d = d0 + tx, ch = c0 + r;
        if (d >= pairs || ch >= h) continue;
        store_elem(a, a_off + ch * pairs + d, a_t[tx][r]);
        store_elem(b, b_off + ch * pairs + d, b_t[tx][r]);
    }
}

/* The projections' gradient dp from dA and dB (the gradients of the prepared operands); dp may
 * be p itself: each work-item reads its elements of p before it writes them. */
__kernel __attribute__((reqd_work_group_size(TILE, TILE_ROWS, 1)))
void trimul_gates_backward(__global const store_t *p, ulong p_off, __global const store_t *mask, ulong mask_off,
                           __global const store_t *da, ulong da_off, __global const store_t *db, ulong db_off,
                           __global store_t *dp, ulong dp_off, uint n, uint h, uint width, uint flags)
{
    __local float da_t[TILE][TILE + 1], db_t[TILE][TILE + 1]; /* [position][channel] */
    const uint tx = get_local_id(0), ty = get_local_id(1), c0 = get_group_id(1) * TILE;
    const ulong pairs = (ulong)n * n, d0 = get_group_id(0) * (ulong)TILE;
    for (uint r = ty; r < TILE; r += TILE_ROWS) {
        ulong d = d0 + tx, ch = c0 + r;
        if (d >= pairs || ch >= h) continue;
        da_t[tx][r] = load_elem(da, da_off + ch * pairs + d);
        db_t[tx][r] = load_elem(db, db_off + ch * pairs + d);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    p += p_off;
    mask += mask_off;
    dp += dp_off;
    for (uint r = ty; r < TILE; r += TILE_ROWS) {
        ulong d = d0 + r, ch = c0 + tx;
        if (d >= pairs || ch >= h) continue;
        ulong ij = source_pair(d, n, flags), row = ij * width;
        float m = pair_mask(mask, ij, flags);
        for (uint side = 0; side < 2; side++) { /* a, then b */
            ulong proj = row + 2 * side * h + ch, gate = proj + h;
            float g = (side ? db_t[r][tx] : da_t[r][tx]) * m, x = load_elem(p, proj), s = mcl_sigmoid(load_elem(p, gate));
            store_elem(dp, proj, g * s);
            store_elem(dp, gate, g * x * s * (1.0f - s));
        }
    }
}

/* wc [c, 4 chunk]: W_in's columns of channels first .. first + chunk - 1 of each of its four
 * h-wide blocks (a_proj, a_gate, b_proj, b_gate), side by side. */
__kernel void trimul_gather_weights(__global const store_t *w, ulong w_off, __global store_t *wc, ulong wc_off,
                                    uint c, uint h, uint width, uint first, uint chunk)
{
    uint e = get_global_id(0), cols = 4 * chunk;
    if (e >= c * cols) return;
    uint r = e / cols, col = e % cols, block = col / chunk;
    store_elem(wc, wc_off + e, load_elem(w, w_off + (ulong)r * width + block * h + first + col % chunk));
}

/* dst [cols, rows] = src [rows, cols]^T: between the channels-last [pairs, h] and channel-first
 * [h, pairs] layouts, either way. */
__kernel __attribute__((reqd_work_group_size(TILE, TILE_ROWS, 1)))
void trimul_permute(__global const store_t *src, ulong src_off, __global store_t *dst, ulong dst_off, ulong rows,
                    ulong cols)
{
    __local float tile[TILE][TILE + 1];
    const uint tx = get_local_id(0), ty = get_local_id(1);
    const ulong c0 = get_group_id(0) * (ulong)TILE, r0 = get_group_id(1) * (ulong)TILE;
    for (uint r = ty; r < TILE; r += TILE_ROWS)
        if (r0 + r < rows && c0 + tx < cols) tile[r][tx] = load_elem(src, src_off + (r0 + r) * cols + c0 + tx);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint r = ty; r < TILE; r += TILE_ROWS)
        if (c0 + r < cols && r0 + tx < rows) store_elem(dst, dst_off + (c0 + r) * rows + r0 + tx, tile[tx][r]);
}

/* out = o * sigmoid(g) with g [pairs, c]. */
__kernel void trimul_out_gate(__global const store_t *o, ulong o_off, __global const store_t *g, ulong g_off,
                              __global store_t *out, ulong out_off, ulong pairs, uint c)
{
    ulong e = get_global_id(0);
    if (e >= pairs * c) return;
    store_elem(out, out_off + e, load_elem(o, o_off + e) * mcl_sigmoid(load_elem(g, g_off + e)));
}

/* do = dout * sigmoid(g) in place of o, and (with want_dg) dg = dout * o * s (1 - s) in place of
 * g. */
__kernel void trimul_out_gate_backward(__global store_t *o, ulong o_off, __global store_t *g, ulong g_off,
                                       __global const store_t *dout, ulong dout_off, ulong pairs, uint c,
                                       uint want_dg)
{
    ulong e = get_global_id(0);
    if (e >= pairs * c) return;
    float s = mcl_sigmoid(load_elem(g, g_off + e)), d = load_elem(dout, dout_off + e), ov = load_elem(o, o_off + e);
    if (want_dg) store_elem(g, g_off + e, d * ov * s * (1.0f - s));
    store_elem(o, o_off + e, d * s);
}
