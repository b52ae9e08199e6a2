/* Prelude of every kernel source: storage types, loads and stores that widen to fp32,
 * work-group reductions and the logistic function. The host puts it before the family's
 * helpers and the kernel's own file.
 *
 * MCL_DTYPE selects the storage type of the op's tensors: 0 = f32, 1 = bf16, 2 = f16. bf16 is
 * the upper half of an f32 (stores round to nearest even); f16 goes through vload_half and
 * vstore_half, which need no cl_khr_fp16. */
#ifndef MCL_DTYPE
#define MCL_DTYPE 0
#endif

#if MCL_DTYPE == 0
typedef float store_t;
inline float load_elem(__global const store_t *p, size_t i) { return p[i]; }
inline void store_elem(__global store_t *p, size_t i, float v) { p[i] = v; }
#elif MCL_DTYPE == 1
typedef ushort store_t;
inline float load_elem(__global const store_t *p, size_t i) { return as_float((uint)p[i] << 16); }
inline void store_elem(__global store_t *p, size_t i, float v)
{
    uint u = as_uint(v);
    /* round to nearest even; a NaN stays a (quiet) NaN instead of rounding into infinity */
    u = isnan(v) ? 0x7fc00000u : u + 0x7fffu + ((u >> 16) & 1u);
    p[i] = (ushort)(u >> 16);
}
#elif MCL_DTYPE == 2
typedef half store_t;
inline float load_elem(__global const store_t *p, size_t i) { return vload_half(i, p); }
inline void store_elem(__global store_t *p, size_t i, float v) { vstore_half_rte(v, i, p); }
#else
#error "MCL_DTYPE must be 0 (f32), 1 (bf16) or 2 (f16)"
#endif

/* Vector access: load_vecN / store_vecN move N consecutive elements starting at element i
 * between a buffer and a private float array. The address must be aligned to N elements (the
 * host checks offsets and row lengths before choosing N > 1). */
#if MCL_DTYPE == 0
#define MCL_LOADV(n, p, i) (*(__global const float##n *)((p) + (i)))
#define MCL_STOREV(n, p, i, v) (*(__global float##n *)((p) + (i)) = (v))
#elif MCL_DTYPE == 1
#define MCL_LOADV(n, p, i) as_float##n(convert_uint##n(*(__global const ushort##n *)((p) + (i))) << 16)
#define MCL_STOREV(n, p, i, v)                                                                 \
    do {                                                                                       \
        uint##n u_ = as_uint##n(v);                                                            \
        u_ = select(u_ + 0x7fffu + ((u_ >> 16) & 1u), (uint##n)(0x7fc00000u),                 \
                    as_uint##n(isnan(v)));                                                     \
        *(__global ushort##n *)((p) + (i)) = convert_ushort##n(u_ >> 16);                      \
    } while (0)
#else
#define MCL_LOADV(n, p, i) vloada_half##n(0, (p) + (i))
#define MCL_STOREV(n, p, i, v) vstorea_half##n##_rte((v), 0, (p) + (i))
#endif

#define MCL_VEC_FUNCS(n)                                                                       \
    inline void load_vec##n(__global const store_t *p, size_t i, float *dst)                   \
    {                                                                                          \
        vstore##n(MCL_LOADV(n, p, i), 0, dst);                                                 \
    }                                                                                          \
    inline void store_vec##n(__global store_t *p, size_t i, const float *src)                  \
    {                                                                                          \
        MCL_STOREV(n, p, i, vload##n(0, src));                                                 \
    }
MCL_VEC_FUNCS(2)
MCL_VEC_FUNCS(4)
MCL_VEC_FUNCS(8)
inline void load_vec1(__global const store_t *p, size_t i, float *dst) { dst[0] = load_elem(p, i); }
inline void store_vec1(__global store_t *p, size_t i, const float *src) { store_elem(p, i, src[0]); }

/* The same for fp32 buffers whatever the storage type (an op's fp32 intermediates). */
inline float load_f32(__global const float *p, size_t i) { return p[i]; }
inline void store_f32(__global float *p, size_t i, float v) { p[i] = v; }
#define MCL_F32_VEC_FUNCS(n)                                                                   \
    inline void load_f32_vec##n(__global const float *p, size_t i, float *dst)                 \
    {                                                                                          \
        vstore##n(*(__global const float##n *)(p + i), 0, dst);                                \
    }                                                                                          \
    inline void store_f32_vec##n(__global float *p, size_t i, const float *src)                \
    {                                                                                          \
        *(__global float##n *)(p + i) = vload##n(0, src);                                      \
    }
MCL_F32_VEC_FUNCS(2)
MCL_F32_VEC_FUNCS(4)
MCL_F32_VEC_FUNCS(8)
inline void load_f32_vec1(__global const float *p, size_t i, float *dst) { dst[0] = p[i]; }
inline void store_f32_vec1(__global float *p, size_t i, const float *src) { p[i] = src[0]; }

/* The logistic function; exp overflows to +inf for x below about -88, which gives 0. */
inline float mcl_sigmoid(float x) { return 1.0f / (1.0f + exp(-x)); }
inline float4 mcl_sigmoid4(float4 x) { return 1.0f / (1.0f + exp(-x)); }

/* #pragma with macro arguments expanded (a tuning parameter's unroll count) */
#define MCL_PRAGMA_(x) _Pragma(#x)
#define MCL_PRAGMA(x) MCL_PRAGMA_(x)

#define MCL_CAT_(a, b) a##b
#define MCL_CAT(a, b) MCL_CAT_(a, b)

/* name(v, scratch, lid, width) sums `v` over each run of `width` consecutive work-items (width a
 * power of two dividing the work-group size) with a fixed tree, so results are deterministic.
 * `scratch` holds one value per work-item. Every work-item of the group must call it (it
 * contains barriers). */
#define MCL_GROUP_SUM(name, type)                                                            \
    inline type name(type v, __local type *scratch, uint lid, uint width)                    \
    {                                                                                        \
        scratch[lid] = v;                                                                    \
        barrier(CLK_LOCAL_MEM_FENCE);                                                        \
        for (uint s = width / 2; s > 0; s >>= 1) {                                           \
            if ((lid & (width - 1)) < s) scratch[lid] += scratch[lid + s];                   \
            barrier(CLK_LOCAL_MEM_FENCE);                                                    \
        }                                                                                    \
        type total = scratch[lid & ~(width - 1)];                                            \
        barrier(CLK_LOCAL_MEM_FENCE); /* scratch may be reused right after */                \
        return total;                                                                        \
    }
MCL_GROUP_SUM(group_sum, float)
MCL_GROUP_SUM(group_sum2, float2) /* the LayerNorm backward's pair of row reductions */

/* The largest v over the work-group's `width` work-items (width a power of two, the whole
 * group), by a fixed tree; `scratch` holds one value per work-item. Every work-item of the group
 * must call it (it contains barriers). */
inline float group_max(float v, __local float *scratch, uint lid, uint width)
{
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = width / 2; s > 0; s >>= 1) {
        if (lid < s) scratch[lid] = fmax(scratch[lid], scratch[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float largest = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE); /* scratch may be reused right after */
    return largest;
}
