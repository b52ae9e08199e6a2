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
/* the work-items of the kernels that reduce a row or a key (the family's ROW_WG) */
#ifndef FL_GROUP
#define FL_GROUP 64
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
