/* EvoAttention's unfused path, the benchmarks' naive baseline: scores and probabilities of every
 * slice are materialised in scratch, one work-item per output element. */

/* scratch[bnh][i][j] = s_ij in natural units, or -inf for a removed key. Grid (S, S, B*N*H). */
__kernel void evoattn_ref_scores(EV_ARGS)
{
    EV_OFFSETS;
    uint j = get_global_id(0), i = get_global_id(1), bnh = get_global_id(2);
    if (j >= S || i >= S) return;
    uint h = bnh % H, n = (bnh / H) % N, b = bnh / (H * N);
    ulong base = slice_base(b, n, h, N, S, H);
    bool removed;
    float mb = mask_bias(mask, ((ulong)b * N + n) * S, j, S, flags, &removed);
    float dot = 0.0f;
    for (uint d = 0; d < EV_D; d++) dot = fma(load_elem(q, AT(base, i, d)), load_elem(k, AT(base, j, d)), dot);
    float pb = (flags & EV_HAS_PAIR) ? load_elem(pair, (((ulong)b * H + h) * S + i) * S + j) : 0.0f;
    scratch[((ulong)bnh * S + i) * S + j] = removed ? -INFINITY : dot * scale + mb + pb;
}

/* Scores to probabilities in place, one work-item per row; the forward also writes lse, the
 * backward (EV_WANT_LSE clear) uses the saved lse instead. Grid (S, B*N*H). */
__kernel void evoattn_ref_softmax(EV_ARGS)
{
    EV_OFFSETS;
    uint i = get_global_id(0), bnh = get_global_id(1);
    if (i >= S) return;
    uint h = bnh % H, n = (bnh / H) % N, b = bnh / (H * N);
    __global float *row = scratch + ((ulong)bnh * S + i) * S;
    ulong at = stat_index(b, n, h, i, N, S, H);
    float m = -INFINITY, sum = 0.0f;
    if (flags & EV_WANT_LSE) {
        for (uint j = 0; j < S; j++) m = fmax(m, row[j]);
        for (uint j = 0; m != -INFINITY && j < S; j++) sum += exp(row[j] - m);
        lse[at] = m == -INFINITY ? -INFINITY : m + log(sum);
    }
    float l = lse[at];
    for (uint j = 0; j < S; j++) row[j] = l == -INFINITY ? 0.0f : exp(row[j] - l);
}

/* O (and Y) = P V, one work-item per output element. Grid (D, S, B*N*H). */
__kernel void evoattn_ref_pv(EV_ARGS)
{
    EV_OFFSETS;
    uint d = get_global_id(0), i = get_global_id(1), bnh = get_global_id(2);
    if (d >= EV_D || i >= S) return;
    uint h = bnh % H, n = (bnh / H) % N, b = bnh / (H * N);
    ulong base = slice_base(b, n, h, N, S, H);
    __global const float *prow = scratch + ((ulong)bnh * S + i) * S;
    float sum = 0.0f;
    for (uint j = 0; j < S; j++) sum = fma(prow[j], load_elem(v, AT(base, j, d)), sum);
    store_elem(o, AT(base, i, d), sum);
    if (flags & EV_HAS_GATE) store_elem(y, AT(base, i, d), sum * mcl_sigmoid(load_elem(g, AT(base, i, d))));
}

/* dS = P (dP - delta) into the second half of scratch. Grid (S, S, B*N*H). */
__kernel void evoattn_ref_ds(EV_ARGS)
{
    EV_OFFSETS;
    uint j = get_global_id(0), i = get_global_id(1), bnh = get_global_id(2);
    if (j >= S || i >= S) return;
    uint h = bnh % H, n = (bnh / H) % N, b = bnh / (H * N);
    ulong base = slice_base(b, n, h, N, S, H), at = ((ulong)bnh * S + i) * S + j;
    float dp = 0.0f;
    for (uint d = 0; d < EV_D; d++) dp = fma(load_do(dout, g, AT(base, i, d), flags), load_elem(v, AT(base, j, d)), dp);
    ulong total = (ulong)B * N * H * S * S;
    scratch[total + at] = scratch[at] * (dp - delta[stat_index(b, n, h, i, N, S, H)]);
}

/* dQ, dK, dV: one work-item per output element of all three. Grid (D, S, B*N*H). */
__kernel void evoattn_ref_dqkv(EV_ARGS)
{
    EV_OFFSETS;
    uint d = get_global_id(0), t = get_global_id(1), bnh = get_global_id(2);
    if (d >= EV_D || t >= S) return;
    uint h = bnh % H, n = (bnh / H) % N, b = bnh / (H * N);
    ulong base = slice_base(b, n, h, N, S, H), total = (ulong)B * N * H * S * S;
    __global const float *p = scratch + (ulong)bnh * S * S, *ds = p + total;
    float sq = 0.0f, sk = 0.0f, sv = 0.0f;
    for (uint u = 0; u < S; u++) {
        sq = fma(ds[(ulong)t * S + u], load_elem(k, AT(base, u, d)), sq);
        sk = fma(ds[(ulong)u * S + t], load_elem(q, AT(base, u, d)), sk);
        sv = fma(p[(ulong)u * S + t], load_do(dout, g, AT(base, u, d), flags), sv);
    }
    if (flags & EV_WANT_DQ) store_elem(dq, AT(base, t, d), sq * scale);
    if (flags & EV_WANT_DK) store_elem(dk, AT(base, t, d), sk * scale);
    if (flags & EV_WANT_DV) store_elem(dv, AT(base, t, d), sv);
}

/* Bias gradients from the materialised dS: d(pair bias)[b,h,i,j] = sum over n, and per-head
 * column sums into mask_part (summed over heads by evoattn_sum_partials). Grid (S, S, B*H). */
__kernel void evoattn_ref_dbias(EV_ARGS)
{
    EV_OFFSETS;
    uint j = get_global_id(0), i = get_global_id(1), bh = get_global_id(2);
    if (j >= S || i >= S) return;
    uint h = bh % H, b = bh / H;
    ulong total = (ulong)B * N * H * S * S;
    __global const float *ds = scratch + total;
    if (flags & EV_WANT_DPAIR) {
        float sum = 0.0f;
        for (uint n = 0; n < N; n++) sum += ds[((((ulong)b * N + n) * H + h) * S + i) * S + j];
        pair_part[((ulong)bh * S + i) * S + j] = sum;
    }
    if ((flags & EV_WANT_DMASK) && i == 0)
        for (uint n = 0; n < N; n++) {
            ulong bnh = ((ulong)b * N + n) * H + h;
            float sum = 0.0f;
            for (uint r = 0; r < S; r++) sum += ds[(bnh * S + r) * S + j];
            mask_part[bnh * S + j] = sum;
        }
}
