/* LayerNorm over the last dimension of a contiguous [rows, cols] tensor.
 *
 * Two variants share the host's arguments:
 *  - reference: one work-item per row (and per column for the parameter gradients); simple,
 *    correct everywhere, and the unfused baseline of `megacl bench`;
 *  - tiled: LN_TPR work-items per row, LN_WG / LN_TPR rows per work-group; each work-item keeps
 *    LN_ITEMS groups of LN_VEC adjacent columns in registers, so x is read once. The
 *    backward also accumulates dweight/dbias partials per work-group over a fixed chunk of rows;
 *    layernorm_reduce_partials then sums the chunks in a fixed order (no float atomics).
 *
 * Flags: see the LN_* bits below. */
#ifndef LN_TPR
#define LN_TPR 32
#endif
#ifndef LN_WG
#define LN_WG 128
#endif
#ifndef LN_VEC
#define LN_VEC 4
#endif
#ifndef LN_ITEMS
#define LN_ITEMS 4
#endif
#ifndef LN_REDUCE_SPLIT
#define LN_REDUCE_SPLIT 8
#endif

#define LN_ROWS (LN_WG / LN_TPR)

#define LN_HAS_WEIGHT 1u
#define LN_HAS_BIAS 2u
#define LN_SAVE_STATS 4u /* forward: write mean and rstd */
#define LN_STATS_ONLY 8u /* forward: no y (LayerNorm + Linear normalises on its GEMM's load) */
#define LN_WANT_DX 4u    /* backward: write dx */
#define LN_WANT_PARAMS 8u /* backward: write dweight/dbias partials */
#define LN_WANT_DWEIGHT 16u
#define LN_WANT_DBIAS 32u

/* Every kernel of a direction takes the same arguments, so the host sets them once for
 * whichever variant runs. Each tensor is a buffer and an element offset; optional tensors may be
 * NULL and are only touched when their flag is set. */
#define LN_FORWARD_ARGS                                                                        \
    __global const store_t *x, ulong x_off, __global const store_t *w, ulong w_off,             \
        __global const store_t *b, ulong b_off, __global store_t *y, ulong y_off,               \
        __global float *mean, ulong mean_off, __global float *rstd, ulong rstd_off, ulong rows, \
        uint cols, float eps, uint flags
#define LN_FORWARD_OFFSETS                                                                     \
    x += x_off; w += w_off; b += b_off; y += y_off; mean += mean_off; rstd += rstd_off

/* The backward's dy is of the storage type, or fp32 where an op keeps its gradient chain in fp32
 * (LN_DY_F32), so that dbias and dweight sum unrounded values. */
#ifndef LN_DY_F32
#define LN_DY_F32 0
#endif
#if LN_DY_F32
#define dy_t float
#define load_dy load_f32
#define load_dy_v MCL_CAT(load_f32_vec, LN_VEC)
#else
#define dy_t store_t
#define load_dy load_elem
#define load_dy_v MCL_CAT(load_vec, LN_VEC)
#endif

#define LN_BACKWARD_ARGS                                                                       \
    __global const store_t *x, ulong x_off, __global const store_t *w, ulong w_off,             \
        __global const float *mean, ulong mean_off, __global const float *rstd,                 \
        ulong rstd_off, __global const dy_t *dy, ulong dy_off, __global store_t *dx,            \
        ulong dx_off, __global float *partial, ulong partial_off, ulong rows, uint cols,         \
        ulong rows_per_group, uint flags
#define LN_BACKWARD_OFFSETS                                                                    \
    x += x_off; w += w_off; mean += mean_off; rstd += rstd_off; dy += dy_off; dx += dx_off;     \
    partial += partial_off

/* ---- reference variant ------------------------------------------------------------------ */

__kernel void layernorm_forward_ref(LN_FORWARD_ARGS)
{
    LN_FORWARD_OFFSETS;
    ulong row = get_global_id(0);
    if (row >= rows) return;
    __global const store_t *xr = x + row * cols;
    float sum = 0.0f;
    for (uint c = 0; c < cols; c++) sum += load_elem(xr, c);
    float mu = sum / cols;
    float sq = 0.0f;
    for (uint c = 0; c < cols; c++) {
        float d = load_elem(xr, c) - mu;
        sq += d * d;
    }
    float rs = 1.0f / sqrt(sq / cols + eps);
    for (uint c = 0; c < cols && !(flags & LN_STATS_ONLY); c++) {
        float v = (load_elem(xr, c) - mu) * rs;
        if (flags & LN_HAS_WEIGHT) v *= load_elem(w, c);
        if (flags & LN_HAS_BIAS) v += load_elem(b, c);
        store_elem(y, row * cols + c, v);
    }
    if (flags & LN_SAVE_STATS) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

__kernel void layernorm_backward_dx_ref(LN_BACKWARD_ARGS)
{
    LN_BACKWARD_OFFSETS;
    ulong row = get_global_id(0);
    if (row >= rows) return;
    float mu = mean[row], rs = rstd[row];
    float c1 = 0.0f, c2 = 0.0f;
    for (uint c = 0; c < cols; c++) {
        float g = load_dy(dy, row * cols + c);
        if (flags & LN_HAS_WEIGHT) g *= load_elem(w, c);
        c1 += g * (load_elem(x, row * cols + c) - mu) * rs;
        c2 += g;
    }
    c1 /= cols;
    c2 /= cols;
    for (uint c = 0; c < cols; c++) {
        float g = load_dy(dy, row * cols + c);
        if (flags & LN_HAS_WEIGHT) g *= load_elem(w, c);
        float xhat = (load_elem(x, row * cols + c) - mu) * rs;
        store_elem(dx, row * cols + c, (g - (xhat * c1 + c2)) * rs);
    }
}

/* partial[0, c] = dweight[c], partial[0, cols + c] = dbias[c]: one chunk holding all rows. */
__kernel void layernorm_param_grads_ref(LN_BACKWARD_ARGS)
{
    LN_BACKWARD_OFFSETS;
    uint c = get_global_id(0);
    if (c >= cols) return;
    float dw = 0.0f, db = 0.0f;
    for (ulong r = 0; r < rows; r++) {
        float g = load_dy(dy, r * cols + c);
        dw += g * (load_elem(x, r * cols + c) - mean[r]) * rstd[r];
        db += g;
    }
    partial[c] = dw;
    partial[cols + c] = db;
}

/* ---- tiled variant ---------------------------------------------------------------------- */

#define load_v MCL_CAT(load_vec, LN_VEC)
#define store_v MCL_CAT(store_vec, LN_VEC)

/* Work-item `lane` of a row owns the LN_VEC-wide column groups lane, lane + LN_TPR, ...: item j
 * covers columns [(lane + j * LN_TPR) * LN_VEC, ... + LN_VEC). The host makes cols a multiple of
 * LN_VEC. */
inline uint item_col(uint lane, uint j) { return (lane + j * LN_TPR) * LN_VEC; }

__kernel __attribute__((reqd_work_group_size(LN_WG, 1, 1)))
void layernorm_forward(LN_FORWARD_ARGS)
{
    LN_FORWARD_OFFSETS;
    __local float scratch[LN_WG];
    uint lid = get_local_id(0), lane = lid % LN_TPR;
    ulong row = (ulong)get_group_id(0) * LN_ROWS + lid / LN_TPR;
    bool active = row < rows; /* inactive work-items still reach every barrier */
    __global const store_t *xr = x + (active ? row : 0) * cols;

    float v[LN_ITEMS][LN_VEC];
    float sum = 0.0f;
    for (uint j = 0; j < LN_ITEMS; j++) {
        uint c = item_col(lane, j);
        if (active && c < cols)
            load_v(xr, c, v[j]);
        else
            for (uint k = 0; k < LN_VEC; k++) v[j][k] = 0.0f;
        for (uint k = 0; k < LN_VEC; k++) sum += v[j][k];
    }
    float mu = group_sum(sum, scratch, lid, LN_TPR) / cols;
    float sq = 0.0f;
    for (uint j = 0; j < LN_ITEMS; j++) {
        bool ok = active && item_col(lane, j) < cols;
        for (uint k = 0; k < LN_VEC; k++) {
            float d = ok ? v[j][k] - mu : 0.0f;
            sq += d * d;
        }
    }
    float rs = 1.0f / sqrt(group_sum(sq, scratch, lid, LN_TPR) / cols + eps);
    if (!active) return; /* no barrier follows */
    for (uint j = 0; j < LN_ITEMS && !(flags & LN_STATS_ONLY); j++) {
        uint c = item_col(lane, j);
        if (c >= cols) break;
        float wv[LN_VEC], bv[LN_VEC], out[LN_VEC];
        if (flags & LN_HAS_WEIGHT) load_v(w, c, wv);
        if (flags & LN_HAS_BIAS) load_v(b, c, bv);
        for (uint k = 0; k < LN_VEC; k++) {
            out[k] = (v[j][k] - mu) * rs;
            if (flags & LN_HAS_WEIGHT) out[k] *= wv[k];
            if (flags & LN_HAS_BIAS) out[k] += bv[k];
        }
        store_v(y, row * cols + c, out);
    }
    if ((flags & LN_SAVE_STATS) && lane == 0) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

/* Work-group g handles rows [g * rows_per_group, (g + 1) * rows_per_group). */
__kernel __attribute__((reqd_work_group_size(LN_WG, 1, 1)))
void layernorm_backward(LN_BACKWARD_ARGS)
{
    LN_BACKWARD_OFFSETS;
    __local float2 scratch[LN_WG];
    uint lid = get_local_id(0), lane = lid % LN_TPR, slot = lid / LN_TPR;
    ulong first = (ulong)get_group_id(0) * rows_per_group;
    ulong end = min(rows, first + rows_per_group);

    float gw[LN_ITEMS][LN_VEC], acc_dw[LN_ITEMS][LN_VEC], acc_db[LN_ITEMS][LN_VEC];
    for (uint j = 0; j < LN_ITEMS; j++) {
        uint c = item_col(lane, j);
        if ((flags & LN_HAS_WEIGHT) && c < cols)
            load_v(w, c, gw[j]);
        else
            for (uint k = 0; k < LN_VEC; k++) gw[j][k] = 1.0f;
        for (uint k = 0; k < LN_VEC; k++) acc_dw[j][k] = acc_db[j][k] = 0.0f;
    }

    /* the trip count is the same for every work-item of the group: barriers inside are safe */
    ulong steps = (rows_per_group + LN_ROWS - 1) / LN_ROWS;
    for (ulong step = 0; step < steps; step++) {
        ulong row = first + step * LN_ROWS + slot;
        bool active = row < end;
        float mu = active ? mean[row] : 0.0f, rs = active ? rstd[row] : 0.0f;
        float xhat[LN_ITEMS][LN_VEC], g[LN_ITEMS][LN_VEC];
        float2 c12 = (float2)(0.0f, 0.0f);
        for (uint j = 0; j < LN_ITEMS; j++) {
            uint c = item_col(lane, j);
            float xv[LN_VEC], dv[LN_VEC];
            if (active && c < cols) {
                load_v(x, row * cols + c, xv);
                load_dy_v(dy, row * cols + c, dv);
            } else {
                for (uint k = 0; k < LN_VEC; k++) xv[k] = mu, dv[k] = 0.0f;
            }
            for (uint k = 0; k < LN_VEC; k++) {
                xhat[j][k] = (xv[k] - mu) * rs;
                acc_dw[j][k] += dv[k] * xhat[j][k];
                acc_db[j][k] += dv[k];
                g[j][k] = dv[k] * gw[j][k];
                c12 += (float2)(g[j][k] * xhat[j][k], g[j][k]);
            }
        }
        c12 = group_sum2(c12, scratch, lid, LN_TPR) / (float)cols;
        if (active && (flags & LN_WANT_DX)) {
            for (uint j = 0; j < LN_ITEMS; j++) {
                uint c = item_col(lane, j);
                if (c >= cols) break;
                float out[LN_VEC];
                for (uint k = 0; k < LN_VEC; k++)
                    out[k] = (g[j][k] - (xhat[j][k] * c12.x + c12.y)) * rs;
                store_v(dx, row * cols + c, out);
            }
        }
    }

    if (!(flags & LN_WANT_PARAMS)) return; /* uniform over the group */
    /* sum each column's accumulators over the group's row slots, in slot order */
    __local float *column = (__local float *)scratch;
    __global float *out = partial + (ulong)get_group_id(0) * 2 * cols;
    for (uint j = 0; j < LN_ITEMS; j++) {
        uint c0 = item_col(lane, j);
        for (uint k = 0; k < LN_VEC; k++) {
            for (uint which = 0; which < 2; which++) {
                column[lid] = which == 0 ? acc_dw[j][k] : acc_db[j][k];
                barrier(CLK_LOCAL_MEM_FENCE);
                if (slot == 0 && c0 < cols) {
                    float s = 0.0f;
                    for (uint r = 0; r < LN_ROWS; r++) s += column[r * LN_TPR + lane];
                    out[which * cols + c0 + k] = s;
                }
                barrier(CLK_LOCAL_MEM_FENCE);
            }
        }
    }
}

/* Sums the per-chunk partials [chunks, 2 * cols] in chunk order and stores dweight (first cols
 * entries) and dbias (next cols). Work-group (32, LN_REDUCE_SPLIT): each of the
 * LN_REDUCE_SPLIT rows of work-items sums every LN_REDUCE_SPLIT-th chunk, then a fixed
 * sequence combines them. */
__kernel __attribute__((reqd_work_group_size(32, LN_REDUCE_SPLIT, 1)))
void layernorm_reduce_partials(__global const float *partial, ulong partial_off, ulong chunks, uint cols,
                               __global store_t *dweight, ulong dweight_off,
                               __global store_t *dbias, ulong dbias_off, uint flags)
{
    partial += partial_off;
    __local float sums[LN_REDUCE_SPLIT][32];
    uint tx = get_local_id(0), ty = get_local_id(1);
    uint c = get_group_id(0) * 32 + tx;
    bool active = c < 2 * cols;
    float s = 0.0f;
    for (ulong k = ty; active && k < chunks; k += LN_REDUCE_SPLIT) s += partial[k * 2 * cols + c];
    sums[ty][tx] = s;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (ty != 0 || !active) return;
    for (uint r = 1; r < LN_REDUCE_SPLIT; r++) s += sums[r][tx];
    if (c < cols) {
        if (flags & LN_WANT_DWEIGHT) store_elem(dweight + dweight_off, c, s);
    } else if (flags & LN_WANT_DBIAS) {
        store_elem(dbias + dbias_off, c - cols, s);
    }
}
