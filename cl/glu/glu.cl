/* Sigmoid gating, SwiGLU and the add, forward and backward. Elementwise and memory-bound: each
 * work-item moves GLU_VEC consecutive elements per step of a grid-stride loop (the grid is
 * sized from the device's compute units, so element counts past 2^32 need no more
 * work-items). The host picks GLU_VEC to divide the element count (the features for SwiGLU)
 * and every tensor's offset, so vector accesses are always aligned and in bounds. */
#ifndef GLU_VEC
#define GLU_VEC 4
#endif
#ifndef GLU_WG
#define GLU_WG 256
#endif

#define GLU_WANT_DX 1u
#define GLU_WANT_DG 2u
#define GLU_WANT_DA 1u
#define GLU_WANT_DB 2u

#define LOADV(p, i, dst) MCL_CAT(load_vec, GLU_VEC)(p, i, dst)
#define STOREV(p, i, src) MCL_CAT(store_vec, GLU_VEC)(p, i, src)
#define FOR_EACH_VECTOR(v, count)                                                              \
    for (ulong v = get_global_id(0); v < (count); v += get_global_size(0))


/* y = x * sigmoid(g) over nvec vectors */
__kernel __attribute__((reqd_work_group_size(GLU_WG, 1, 1)))
void gating_forward(__global const store_t *x, ulong x_off, __global const store_t *g, ulong g_off,
                    __global store_t *y, ulong y_off, ulong nvec)
{
    x += x_off; g += g_off; y += y_off;
    FOR_EACH_VECTOR(v, nvec) {
        float xv[GLU_VEC], gv[GLU_VEC], yv[GLU_VEC];
        LOADV(x, v * GLU_VEC, xv);
        LOADV(g, v * GLU_VEC, gv);
        for (uint e = 0; e < GLU_VEC; e++) yv[e] = xv[e] * mcl_sigmoid(gv[e]);
        STOREV(y, v * GLU_VEC, yv);
    }
}

/* dx = dy * s, dg = dy * x * s * (1 - s) with s = sigmoid(g); each optional (flags) */
__kernel __attribute__((reqd_work_group_size(GLU_WG, 1, 1)))
void gating_backward(__global const store_t *x, ulong x_off, __global const store_t *g, ulong g_off,
                     __global const store_t *dy, ulong dy_off, __global store_t *dx, ulong dx_off,
                     __global store_t *dg, ulong dg_off, ulong nvec, uint flags)
{
    x += x_off; g += g_off; dy += dy_off; dx += dx_off; dg += dg_off;
    FOR_EACH_VECTOR(v, nvec) {
        float xv[GLU_VEC], gv[GLU_VEC], dyv[GLU_VEC], dxv[GLU_VEC], dgv[GLU_VEC];
        LOADV(g, v * GLU_VEC, gv);
        LOADV(dy, v * GLU_VEC, dyv);
        if (flags & GLU_WANT_DG) LOADV(x, v * GLU_VEC, xv);
        for (uint e = 0; e < GLU_VEC; e++) {
            float s = mcl_sigmoid(gv[e]);
            dxv[e] = dyv[e] * s;
            dgv[e] = (flags & GLU_WANT_DG) ? dyv[e] * xv[e] * s * (1.0f - s) : 0.0f;
        }
        if (flags & GLU_WANT_DX) STOREV(dx, v * GLU_VEC, dxv);
        if (flags & GLU_WANT_DG) STOREV(dg, v * GLU_VEC, dgv);
    }
}

/* Element offsets of vector v's SiLU half (a) and other half (b) in x [rows, 2F], and of its
 * place in y [rows, F]. */
inline void swiglu_index(ulong v, uint features, uint silu_second, ulong *a, ulong *b, ulong *y)
{
    ulong i = v * GLU_VEC, row = i / features, col = i % features;
    ulong first = row * 2 * features + col, second = first + features;
    *a = silu_second ? second : first;
    *b = silu_second ? first : second;
    *y = i;
}

/* y = silu(a) * b */
__kernel __attribute__((reqd_work_group_size(GLU_WG, 1, 1)))
void swiglu_forward(__global const store_t *x, ulong x_off, __global store_t *y, ulong y_off,
                    ulong nvec, uint features, uint silu_second)
{
    x += x_off; y += y_off;
    FOR_EACH_VECTOR(v, nvec) {
        ulong ia, ib, iy;
        swiglu_index(v, features, silu_second, &ia, &ib, &iy);
        float av[GLU_VEC], bv[GLU_VEC], yv[GLU_VEC];
        LOADV(x, ia, av);
        LOADV(x, ib, bv);
        for (uint e = 0; e < GLU_VEC; e++) yv[e] = av[e] * mcl_sigmoid(av[e]) * bv[e];
        STOREV(y, iy, yv);
    }
}

/* da = dy * b * s (1 + a (1 - s)), db = dy * silu(a), with s = sigmoid(a) */
__kernel __attribute__((reqd_work_group_size(GLU_WG, 1, 1)))
void swiglu_backward(__global const store_t *x, ulong x_off, __global const store_t *dy, ulong dy_off,
                     __global store_t *dx, ulong dx_off, ulong nvec, uint features, uint silu_second)
{
    x += x_off; dy += dy_off; dx += dx_off;
    FOR_EACH_VECTOR(v, nvec) {
        ulong ia, ib, iy;
        swiglu_index(v, features, silu_second, &ia, &ib, &iy);
        float av[GLU_VEC], bv[GLU_VEC], dyv[GLU_VEC], dav[GLU_VEC], dbv[GLU_VEC];
        LOADV(x, ia, av);
        LOADV(x, ib, bv);
        LOADV(dy, iy, dyv);
        for (uint e = 0; e < GLU_VEC; e++) {
            float s = mcl_sigmoid(av[e]);
            dav[e] = dyv[e] * bv[e] * s * (1.0f + av[e] * (1.0f - s));
            dbv[e] = dyv[e] * av[e] * s;
        }
        STOREV(dx, ia, dav);
        STOREV(dx, ib, dbv);
    }
}

/* y = a + b */
__kernel __attribute__((reqd_work_group_size(GLU_WG, 1, 1)))
void add_forward(__global const store_t *a, ulong a_off, __global const store_t *b, ulong b_off,
                 __global store_t *y, ulong y_off, ulong nvec)
{
    a += a_off; b += b_off; y += y_off;
    FOR_EACH_VECTOR(v, nvec) {
        float av[GLU_VEC], bv[GLU_VEC], yv[GLU_VEC];
        LOADV(a, v * GLU_VEC, av);
        LOADV(b, v * GLU_VEC, bv);
        for (uint e = 0; e < GLU_VEC; e++) yv[e] = av[e] + bv[e];
        STOREV(y, v * GLU_VEC, yv);
    }
}

/* da = dy, db = dy; each optional (flags) */
__kernel __attribute__((reqd_work_group_size(GLU_WG, 1, 1)))
void add_backward(__global const store_t *dy, ulong dy_off, __global store_t *da, ulong da_off,
                  __global store_t *db, ulong db_off, ulong nvec, uint flags)
{
    dy += dy_off; da += da_off; db += db_off;
    FOR_EACH_VECTOR(v, nvec) {
        float dyv[GLU_VEC];
        LOADV(dy, v * GLU_VEC, dyv);
        if (flags & GLU_WANT_DA) STOREV(da, v * GLU_VEC, dyv);
        if (flags & GLU_WANT_DB) STOREV(db, v * GLU_VEC, dyv);
    }
}
