/* FLuRKA's feature maps, shared by its kernels (lib/ops/flurka/flurka.c sets the defines).
 * FL_MAP: 0 FAVOR+, 1 ReLU kernel, 2 elu + 1, 3 softmax (Linformer). FL_D is the head dim, FL_L
 * the length of a query's feature vector: m for FAVOR+ and ReLU, D for elu + 1, the projected
 * keys k for softmax. A query's features are f_r = g(a . A_r) for the rows A_r of an [L, D]
 * matrix (W, or the projected keys), where FAVOR+ and softmax exponentiate after subtracting the
 * row's largest argument (it cancels in the normalised output) and elu + 1 reads the query
 * itself. */
#ifndef FL_MAP
#define FL_MAP 0
#endif
#ifndef FL_D
#define FL_D 64
#endif
#ifndef FL_L
#define FL_L 256
#endif

#define FL_FAVOR 0
#define FL_RELU 1
#define FL_ELU 2
#define FL_SOFTMAX 3
#define FL_EXPONENTIAL (FL_MAP == FL_FAVOR || FL_MAP == FL_SOFTMAX)
#define FL_RELU_EPS 1e-3f
#define FL_DV (FL_D + 1) /* a row of [S | z]: the values and their normaliser */

inline float fl_elu1(float x) { return x > 0.0f ? x + 1.0f : exp(x); }

/* d phi / d (its argument) from phi itself and, for elu + 1, the coordinate x it maps: phi for
 * the exponential maps (the stabiliser is a constant), the step of ReLU (its argument is
 * positive exactly where phi exceeds the offset), 1 or phi for elu + 1. */
inline float fl_map_slope(float x, float phi)
{
#if FL_EXPONENTIAL
    return phi;
#elif FL_MAP == FL_RELU
    return phi > FL_RELU_EPS ? 1.0f : 0.0f;
#else
    return x > 0.0f ? 1.0f : phi;
#endif
}

/* sum over d of a[d] * b[d] for a in global memory (fp32) and b in local memory */
inline float fl_dot_gl(__global const float *a, __local const float *b)
{
    float s = 0.0f;
    for (uint d = 0; d < FL_D; d++) s += a[d] * b[d];
    return s;
}

/* phi(k~)_r of the key row x (fp32) for the kernel maps, w at W's first row; for FAVOR+ the
 * exponent w_r . k' - |k'|^2 / 2 (k' = a_scale k~) before fl_key_feature's exponential. */
inline float fl_key_argument(__global const float *x, __global const float *w, uint r, float a_scale)
{
#if FL_MAP == FL_ELU
    return fl_elu1(x[r]);
#else
    __global const float *wr = w + r * FL_D;
    float dot = 0.0f, square = 0.0f;
    for (uint d = 0; d < FL_D; d++) dot += wr[d] * x[d], square += x[d] * x[d];
#if FL_MAP == FL_RELU
    return fmax(a_scale * dot, 0.0f) + FL_RELU_EPS;
#else
    return a_scale * dot - 0.5f * a_scale * a_scale * square;
#endif
#endif
}

/* FAVOR+'s key features exp(exponent - c) / sqrt(m), c the head's largest exponent (it cancels in
 * the ratio); the other maps' as they are */
inline float fl_key_feature(__global const float *x, __global const float *w, uint r, float a_scale, float c)
{
#if FL_MAP == FL_FAVOR
    return rsqrt((float)FL_L) * exp(fl_key_argument(x, w, r, a_scale) - c);
#else
    return fl_key_argument(x, w, r, a_scale);
#endif
}

/* the head's largest FAVOR+ key exponent from its chunks' maxima, in order */
inline float fl_head_max(__global const float *maxima, ulong chunks)
{
    float c = -INFINITY;
    for (ulong i = 0; i < chunks; i++) c = fmax(c, maxima[i]);
    return c;
}
