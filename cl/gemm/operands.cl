/* The storage of the GEMM's operands (cl/gemm/gemm.cl, sums.cl): each of A, B and C is of the
 * call's storage type (store_t), or fp32 where GEMM_A_F32, GEMM_B_F32 or GEMM_C_F32 is set (an
 * op's fp32 intermediate, as FLuRKA's projected keys beside bf16 tensors). A residual is laid out
 * and stored as C; LayerNorm's weights, the bias and SwiGLU's h stay of the storage type. */
#ifndef GEMM_A_F32
#define GEMM_A_F32 0
#endif
#ifndef GEMM_B_F32
#define GEMM_B_F32 0
#endif
#ifndef GEMM_C_F32
#define GEMM_C_F32 0
#endif

/* x_t the element type; LOAD_X_ELEM(p, i) one element as a float; LOAD_X_VEC##n / STORE_C_VEC##n
 * n consecutive elements (the load_vecN family of cl/common.cl or its fp32 twin) */
#if GEMM_A_F32
#define a_t float
#define LOAD_A_ELEM load_f32
#define LOAD_A_VEC load_f32_vec
#else
#define a_t store_t
#define LOAD_A_ELEM load_elem
#define LOAD_A_VEC load_vec
#endif
#if GEMM_B_F32
#define b_t float
#define LOAD_B_ELEM load_f32
#define LOAD_B_VEC load_f32_vec
#else
#define b_t store_t
#define LOAD_B_ELEM load_elem
#define LOAD_B_VEC load_vec
#endif
#if GEMM_C_F32
#define c_t float
#define LOAD_C_ELEM load_f32
#define STORE_C_ELEM store_f32
#define LOAD_C_VEC load_f32_vec
#define STORE_C_VEC store_f32_vec
#else
#define c_t store_t
#define LOAD_C_ELEM load_elem
#define STORE_C_ELEM store_elem
#define LOAD_C_VEC load_vec
#define STORE_C_VEC store_vec
#endif
