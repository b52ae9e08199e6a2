/* megacl — portable OpenCL kernels for the attention-heavy parts of modern models.
 *
 * One header. Every fallible function returns an mcl_status: 0 on success, a negative
 * MCL_ERR_* value otherwise; mcl_last_error() then holds a message saying exactly what was wrong.
 * The library never aborts, exits or prints (unless MEGACL_LOG asks it to log to stderr).
 *
 * Tensors are the caller's cl_mem buffers plus a byte offset, contiguous and row-major. Each op
 * has a descriptor (sizes, dtype, flags) and a tensors struct; an unused optional tensor has
 * mem == NULL. Ops enqueue on the context's in-order queue and never block.
 */
#ifndef MEGACL_H
#define MEGACL_H

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MCL_BUILDING_LIBRARY) && defined(__GNUC__)
#define MCL_API __attribute__((visibility("default")))
#else
#define MCL_API
#endif

/* ---- Version --------------------------------------------------------------------------- */

#define MCL_VERSION_MAJOR 0
#define MCL_VERSION_MINOR 1
#define MCL_VERSION_PATCH 0
#define MCL_VERSION_NUMBER (MCL_VERSION_MAJOR * 10000 + MCL_VERSION_MINOR * 100 + MCL_VERSION_PATCH)
#define MCL_VERSION_STRING "0.1.0"

MCL_API unsigned mcl_version(void);              /* MCL_VERSION_NUMBER of the linked library */
MCL_API const char *mcl_version_string(void);    /* "0.1.0" */

/* ---- Status codes ---------------------------------------------------------------------- */

/* The one list of statuses: names, numbers and messages cannot drift apart. */
#define MCL_STATUS_MAP(X)                                                                      \
    X(OK, 0, "success")                                                                        \
    X(ERR_NULL_POINTER, -1, "a required pointer or buffer is NULL")                            \
    X(ERR_INVALID_SIZE, -2, "a size is zero or does not match another")                        \
    X(ERR_SIZE_OVERFLOW, -3, "an element or byte count overflows")                             \
    X(ERR_BUFFER_TOO_SMALL, -4, "a buffer is smaller than the tensor it must hold")            \
    X(ERR_UNSUPPORTED_DTYPE, -5, "the op does not support this dtype")                         \
    X(ERR_UNSUPPORTED, -6, "the op does not support this combination of options")             \
    X(ERR_INVALID_ARGUMENT, -7, "an argument is out of range or inconsistent")                 \
    X(ERR_DEVICE_NOT_FOUND, -8, "no OpenCL device matches the selector")                       \
    X(ERR_DEVICE_LIMIT, -9, "the request exceeds a limit of the device")                       \
    X(ERR_OPENCL, -10, "an OpenCL call failed")                                                \
    X(ERR_BUILD, -11, "an OpenCL program failed to build")                                     \
    X(ERR_OUT_OF_MEMORY, -12, "host or device memory could not be allocated")                  \
    X(ERR_IO, -13, "a file could not be read or written")                                      \
    X(ERR_PARSE, -14, "a file or string could not be parsed")                                 \
    X(ERR_CORRUPT, -15, "a cache entry is corrupt or truncated")                               \
    X(ERR_EXHAUSTED, -16, "the loader has delivered every step it was asked for")

typedef enum mcl_status {
#define MCL_STATUS_ENUM_(name, value, message) MCL_##name = value,
    MCL_STATUS_MAP(MCL_STATUS_ENUM_)
#undef MCL_STATUS_ENUM_
} mcl_status;

MCL_API const char *mcl_status_name(mcl_status status); /* "MCL_ERR_BUFFER_TOO_SMALL" */
MCL_API const char *mcl_status_str(mcl_status status);  /* "a buffer is smaller than ..." */

/* The detail of the last failure on the calling thread, e.g. "layernorm: y buffer holds 1024
 * bytes from offset 0, shape [4,384] f32 needs 6144". Empty after a success-only history. */
MCL_API const char *mcl_last_error(void);

/* ---- Data types ------------------------------------------------------------------------ */

/* Storage types. Arithmetic, statistics and accumulation are always fp32. */
typedef enum mcl_dtype {
    MCL_F32 = 0,
    MCL_BF16 = 1,
    MCL_F16 = 2,
} mcl_dtype;

MCL_API size_t mcl_dtype_size(mcl_dtype dtype);       /* bytes per element; 0 for an unknown dtype */
MCL_API const char *mcl_dtype_name(mcl_dtype dtype);  /* "f32", "bf16", "f16"; "?" if unknown */

/* A tensor argument: a caller's buffer and a byte offset into it (a multiple of the element
 * size). Shapes and dtypes live in the op's descriptor. */
typedef struct mcl_tensor {
    cl_mem mem;
    size_t offset;
} mcl_tensor;

/* ---- Devices --------------------------------------------------------------------------- */

typedef enum mcl_vendor {
    MCL_VENDOR_OTHER = 0,
    MCL_VENDOR_NVIDIA,
    MCL_VENDOR_AMD,
    MCL_VENDOR_INTEL,
    MCL_VENDOR_POCL, /* the Portable Computing Language runtime (CPU devices) */
} mcl_vendor;

MCL_API const char *mcl_vendor_name(mcl_vendor vendor); /* "nvidia", "amd", "intel", "pocl", "other" */

/* What megacl knows of a device: normalised, plus capabilities proven by probe kernels. */
typedef struct mcl_device_info {
    unsigned platform_index, device_index; /* the P:D selector of this device */
    mcl_vendor vendor;
    int is_gpu;
    char platform_name[128];
    char platform_version[128];
    char name[128];
    char arch[64];           /* "sm_90", "gfx90a", or the CPU model PoCL targets */
    char driver_version[64];
    char device_version[128]; /* CL_DEVICE_VERSION */
    char opencl_c_version[64];
    unsigned compute_units;
    unsigned clock_mhz;
    uint64_t global_mem_bytes;
    uint64_t local_mem_bytes;
    uint64_t max_alloc_bytes;
    uint64_t global_cache_bytes; /* the last-level cache in front of global memory; 0 if unknown */
    size_t max_work_group_size;
    unsigned simd_width;      /* warp / wavefront width; 1 where the device has no such notion */
    int has_fp16;             /* cl_khr_fp16 arithmetic (storage never needs it) */
    int has_fp64;
    int has_mma_sync;         /* NVIDIA inline-PTX mma.sync ran and gave the right answer */
} mcl_device_info;

/* All devices of all platforms, in platform-then-device order. *count is set to the number
 * there are; at most `capacity` entries are written. */
MCL_API mcl_status mcl_devices_list(mcl_device_info *infos, size_t capacity, size_t *count);

/* ---- Contexts -------------------------------------------------------------------------- */

typedef struct mcl_context mcl_context;

/* Device selectors: "cpu", "gpu", "nvidia", "amd", "intel", "pocl", or "P:D" (platform and
 * device index, as `megacl devices` lists them). NULL or "" reads MEGACL_DEVICE, and if that is
 * unset picks the first GPU, else the first CPU. A selector that matches nothing fails with
 * MCL_ERR_DEVICE_NOT_FOUND and a message listing the devices there are. The context owns a new
 * cl_context and an in-order queue with profiling enabled. */
MCL_API mcl_status mcl_context_create(const char *selector, mcl_context **context);

/* Adopt a caller's queue (retained; released with the context). Profiling-based timing needs
 * the queue to have CL_QUEUE_PROFILING_ENABLE. An out-of-order queue is refused. */
MCL_API mcl_status mcl_context_create_from_queue(cl_command_queue queue, mcl_context **context);

MCL_API void mcl_context_release(mcl_context *context); /* NULL is fine */

MCL_API cl_context mcl_context_cl_context(const mcl_context *context);
MCL_API cl_command_queue mcl_context_queue(const mcl_context *context);
MCL_API const mcl_device_info *mcl_context_device(const mcl_context *context);

/* Waits for everything enqueued on the context's queue. */
MCL_API mcl_status mcl_finish(mcl_context *context);

/* Counters of a context: program builds and caches, library-owned device memory. */
typedef struct mcl_context_stats {
    uint64_t programs_built;       /* compiled from source */
    uint64_t program_cache_hits;   /* found in the in-memory cache */
    uint64_t binary_cache_hits;    /* loaded from the on-disk binary cache */
    uint64_t binary_cache_writes;  /* stored into the on-disk binary cache */
    uint64_t workspace_bytes;      /* scratch memory the context holds now */
    uint64_t workspace_peak_bytes; /* the most it has held since the last reset */
} mcl_context_stats;

MCL_API void mcl_context_get_stats(const mcl_context *context, mcl_context_stats *stats);
/* Resets workspace_peak_bytes to the current workspace size (for per-op peak reports). */
MCL_API void mcl_context_reset_peak(mcl_context *context);
/* Gives back the scratch memory the context holds (it grows again on demand). */
MCL_API mcl_status mcl_context_trim(mcl_context *context);

/* ---- LayerNorm ------------------------------------------------------------------------- */

/* y = (x - mean) * rstd * weight + bias over the last dimension of a contiguous [rows, cols]
 * tensor; rstd = 1 / sqrt(var + eps) with the biased variance. weight and bias are [cols] of
 * the same dtype as x and are optional (NULL mem: weight 1, bias 0). mean and rstd are fp32
 * [rows]; the forward writes them when given (the backward needs them). */
typedef struct mcl_layernorm_desc {
    size_t rows, cols;
    mcl_dtype dtype;
    float eps; /* >= 0 and finite; AF3 uses 1e-5 */
} mcl_layernorm_desc;

typedef struct mcl_layernorm_fwd_tensors {
    mcl_tensor x;      /* in  [rows, cols] */
    mcl_tensor weight; /* in  [cols], optional */
    mcl_tensor bias;   /* in  [cols], optional */
    mcl_tensor y;      /* out [rows, cols]; may be x itself (in place) */
    mcl_tensor mean;   /* out [rows] fp32, optional */
    mcl_tensor rstd;   /* out [rows] fp32, optional (given together with mean) */
} mcl_layernorm_fwd_tensors;

typedef struct mcl_layernorm_bwd_tensors {
    mcl_tensor x;       /* in  [rows, cols], the forward's input */
    mcl_tensor weight;  /* in  [cols], optional (as in the forward) */
    mcl_tensor mean;    /* in  [rows] fp32, saved by the forward */
    mcl_tensor rstd;    /* in  [rows] fp32, saved by the forward */
    mcl_tensor dy;      /* in  [rows, cols] */
    mcl_tensor dx;      /* out [rows, cols], optional; may be dy itself (in place) */
    mcl_tensor dweight; /* out [cols], optional; reduced over rows deterministically */
    mcl_tensor dbias;   /* out [cols], optional; reduced over rows deterministically */
} mcl_layernorm_bwd_tensors;

/* `event`, when not NULL, receives the event of the op's last command (release it). */
MCL_API mcl_status mcl_layernorm_forward(mcl_context *context, const mcl_layernorm_desc *desc,
                                 const mcl_layernorm_fwd_tensors *tensors, cl_event *event);
MCL_API mcl_status mcl_layernorm_backward(mcl_context *context, const mcl_layernorm_desc *desc,
                                  const mcl_layernorm_bwd_tensors *tensors, cl_event *event);
/* Scratch bytes the backward takes from the context's workspace (0 without dweight/dbias). */
MCL_API mcl_status mcl_layernorm_backward_workspace_size(mcl_context *context,
                                                 const mcl_layernorm_desc *desc, size_t *bytes);

/* ---- EvoAttention ----------------------------------------------------------------------
 * AF3 triangle attention, MSA row attention and single attention with pair bias.
 *   Q, K, V, G, O, Y: [B, N, S, H, D]     mask bias: [B, N, S]     pair bias: [B, H, S, S]
 *   lse: [B, N, H, S] fp32
 * For each (b, n, h) and query i:
 *   s_ij = scale * q_i . k_j + mask[b, n, j] + pair[b, h, i, j]
 *   O_i  = sum_j softmax_j(s_i) v_j,      Y = sigmoid(G) * O when G is given.
 * A mask bias at or below MCL_EVOATTN_MASKED (-1e9 and -inf qualify) removes key j outright: it
 * gets probability 0, and a query whose keys are all removed gets O = 0 and lse = -inf (never
 * NaN). The forward stores O (and Y) and the natural-log log-sum-exp; nothing of size S x S is
 * stored. Storage f32, bf16 or f16 for every tensor but lse; arithmetic in fp32. */
#define MCL_EVOATTN_MASKED (-1e8f)

typedef struct mcl_evoattn_desc {
    size_t batch, rows, seq, heads, head_dim; /* B, N, S, H, D; D from 1 to 256 */
    mcl_dtype dtype;
    float scale; /* 0 means 1 / sqrt(D) */
} mcl_evoattn_desc;

typedef struct mcl_evoattn_fwd_tensors {
    mcl_tensor q, k, v;  /* in */
    mcl_tensor mask;     /* in [B, N, S], optional */
    mcl_tensor pair;     /* in [B, H, S, S], optional */
    mcl_tensor gate;     /* in [B, N, S, H, D], optional: gate logits G */
    mcl_tensor out;      /* out O */
    mcl_tensor gated;    /* out Y = sigmoid(G) * O; required exactly when gate is given */
    mcl_tensor lse;      /* out [B, N, H, S] fp32, optional (the backward needs it) */
} mcl_evoattn_fwd_tensors;

typedef struct mcl_evoattn_bwd_tensors {
    mcl_tensor q, k, v, mask, pair, gate; /* in: as given to the forward */
    mcl_tensor out;   /* in: O saved by the forward */
    mcl_tensor lse;   /* in: saved by the forward */
    mcl_tensor dout;  /* in: dY when gated, else dO */
    mcl_tensor dq, dk, dv;   /* out, optional */
    mcl_tensor dgate;        /* out, optional (needs gate) */
    mcl_tensor dmask;        /* out [B, N, S], optional (needs mask): sum of dS over heads, queries */
    mcl_tensor dpair;        /* out [B, H, S, S], optional (needs pair): sum of dS over N */
} mcl_evoattn_bwd_tensors;

MCL_API mcl_status mcl_evoattn_forward(mcl_context *context, const mcl_evoattn_desc *desc,
                                       const mcl_evoattn_fwd_tensors *tensors, cl_event *event);
/* Deterministic: no float atomics; bias gradients are reduced from per-split partials in a
 * fixed order. */
MCL_API mcl_status mcl_evoattn_backward(mcl_context *context, const mcl_evoattn_desc *desc,
                                        const mcl_evoattn_bwd_tensors *tensors, cl_event *event);
/* Scratch bytes the backward takes from the context's workspace for these outputs. */
MCL_API mcl_status mcl_evoattn_backward_workspace_size(mcl_context *context,
                                                       const mcl_evoattn_desc *desc,
                                                       const mcl_evoattn_bwd_tensors *tensors,
                                                       size_t *bytes);

/* ---- LayerNorm + Linear ----------------------------------------------------------------
 * y [rows, out] = LN(x) W + b for x [rows, in]: LN exactly as mcl_layernorm (biased variance,
 * eps, optional ln_weight and ln_bias [in]), W [in, out] row-major, b [out] optional. The
 * normalised x is formed while the GEMM loads its operand and is never stored; the forward
 * writes mean and rstd [rows] fp32 for the backward. The backward recomputes LN(x) for dW the
 * same way and stores dLN(x) = dy W^T (in the storage dtype) in dx, which the LayerNorm
 * backward then turns into dx in place, so it needs little more memory than its outputs (dLN(x)
 * takes workspace only when dx is not asked for); weight and bias gradients are reduced in a
 * fixed order. */
typedef struct mcl_ln_linear_desc {
    size_t rows, in_features, out_features;
    mcl_dtype dtype;
    float eps; /* >= 0 and finite */
} mcl_ln_linear_desc;

typedef struct mcl_ln_linear_fwd_tensors {
    mcl_tensor x;                   /* in  [rows, in] */
    mcl_tensor ln_weight, ln_bias;  /* in  [in], optional */
    mcl_tensor weight;              /* in  [in, out] */
    mcl_tensor bias;                /* in  [out], optional */
    mcl_tensor y;                   /* out [rows, out] */
    mcl_tensor mean, rstd;          /* out [rows] fp32 */
} mcl_ln_linear_fwd_tensors;

typedef struct mcl_ln_linear_bwd_tensors {
    mcl_tensor x, ln_weight, ln_bias, weight; /* in: as given to the forward */
    mcl_tensor mean, rstd;                    /* in: saved by the forward */
    mcl_tensor dy;                            /* in  [rows, out] */
    mcl_tensor dx;                            /* out [rows, in], optional */
    mcl_tensor dln_weight, dln_bias;          /* out [in], optional */
    mcl_tensor dweight;                       /* out [in, out], optional */
    mcl_tensor dbias;                         /* out [out], optional */
} mcl_ln_linear_bwd_tensors;

MCL_API mcl_status mcl_ln_linear_forward(mcl_context *context, const mcl_ln_linear_desc *desc,
                                         const mcl_ln_linear_fwd_tensors *tensors, cl_event *event);
MCL_API mcl_status mcl_ln_linear_backward(mcl_context *context, const mcl_ln_linear_desc *desc,
                                          const mcl_ln_linear_bwd_tensors *tensors, cl_event *event);
/* Scratch bytes the backward takes from the context's workspace for these outputs. */
MCL_API mcl_status mcl_ln_linear_backward_workspace_size(mcl_context *context,
                                                         const mcl_ln_linear_desc *desc,
                                                         const mcl_ln_linear_bwd_tensors *tensors,
                                                         size_t *bytes);

/* ---- Linear ----------------------------------------------------------------------------
 * y [rows, out] = x W + b + r for x [rows, in], W [in, out] row-major, b [out] optional and a
 * residual r [rows, out] optional (a residual connection, z + f(z), in the GEMM's epilogue
 * instead of a pass of its own; y may be r itself, updating it in place). The backward gives
 * dx = dy W^T (+ dx_acc: the gradient x has from its other uses, so that a tensor read by several
 * projections sums their gradients in the same epilogue; dx may be dx_acc itself), dW = x^T dy
 * and db = the column sums of dy, the sums over rows reduced in a fixed order. The residual's
 * own gradient is dy: the caller passes dy on. */
typedef struct mcl_linear_desc {
    size_t rows, in_features, out_features;
    mcl_dtype dtype;
} mcl_linear_desc;

typedef struct mcl_linear_fwd_tensors {
    mcl_tensor x;        /* in  [rows, in] */
    mcl_tensor weight;   /* in  [in, out] */
    mcl_tensor bias;     /* in  [out], optional */
    mcl_tensor residual; /* in  [rows, out], optional */
    mcl_tensor y;        /* out [rows, out]; may be residual itself (in place) */
} mcl_linear_fwd_tensors;

typedef struct mcl_linear_bwd_tensors {
    mcl_tensor x, weight; /* in: as given to the forward */
    mcl_tensor dy;        /* in  [rows, out] */
    mcl_tensor dx_acc;    /* in  [rows, in], optional (needs dx): added to dx */
    mcl_tensor dx;        /* out [rows, in], optional; may be dx_acc itself (in place) */
    mcl_tensor dweight;   /* out [in, out], optional */
    mcl_tensor dbias;     /* out [out], optional */
} mcl_linear_bwd_tensors;

MCL_API mcl_status mcl_linear_forward(mcl_context *context, const mcl_linear_desc *desc,
                                      const mcl_linear_fwd_tensors *tensors, cl_event *event);
MCL_API mcl_status mcl_linear_backward(mcl_context *context, const mcl_linear_desc *desc,
                                       const mcl_linear_bwd_tensors *tensors, cl_event *event);
/* Scratch bytes the forward and the backward (every output asked for) take from the context's
 * workspace: the split partials of their GEMMs. */
MCL_API mcl_status mcl_linear_workspace_size(mcl_context *context, const mcl_linear_desc *desc,
                                             size_t *forward_bytes, size_t *backward_bytes);

/* ---- FLuRKA: low-rank and kernel attention ---------------------------------------------
 * FLuRKA (arXiv 2306.15799) and the two methods it fuses, non-causal, per (b, h) of
 * Q, K, V, O [B, H, N, D]:
 *   projection  K~ = E K, V~ = F V with E, F [k, N] shared by every head, or [H, k, N] one per
 *               head (shared over the batch); without projection K~ = K, V~ = V (k = N)
 *   kernel map  O_i = phi(q_i) S / max(phi(q_i) z, FLT_MIN),  S = phi(K~)^T V~ [m, D],
 *               z = phi(K~)^T 1 [m]
 *   softmax     O_i = sum_j softmax_j(q_i . k~_j / sqrt(D)) v~_j   (Linformer)
 * Feature maps phi, W [m, D] the random features (fp32, see mcl_flurka_draw_features):
 *   FAVOR+  x' = x D^-1/4, phi(x)_r = exp(w_r . x' - |x'|^2 / 2 - c) / sqrt(m), c the largest
 *           exponent of the query's row (queries) or of the head's keys (keys); c cancels in the
 *           ratio and keeps the exponentials finite in fp32
 *   ReLU    phi(x)_r = max(w_r . x, 0) + 1e-3
 *   elu+1   phi(x)_d = elu(x_d) + 1 (m = D, no W)
 * FLuRKA is a projection with a kernel map, Linformer a projection with softmax, Performer a
 * kernel map without projection (full attention is mcl_evoattn). The denominator is held at
 * FLT_MIN or above, so a query whose features all underflow gives O = 0, never NaN; the forward
 * may store it (stabilised: scaled by exp(-c) of the query and of the keys). Storage f32, bf16
 * or f16 for Q, K, V, E, F, O and their gradients; W, the normaliser and all arithmetic fp32.
 * Nothing of size N x m is stored: phi(Q) is formed a chunk of query rows at a time in a bounded
 * workspace (32 MiB by default, the flurka family's CHUNK_KIB; twice that backward), phi(K~) in
 * local memory a tile of keys at a time (the Performer's phi(K) too). The backward recomputes
 * the forward's intermediates and gives dQ, dK, dV, dE, dF deterministically: sums over rows
 * and heads are reduced in a fixed order, no float atomics. */
typedef enum mcl_flurka_map {
    MCL_FLURKA_FAVOR = 0,   /* FAVOR+ positive random features of the softmax kernel */
    MCL_FLURKA_RELU = 1,    /* generalized ReLU kernel, ReLU(W x) + 1e-3 */
    MCL_FLURKA_ELU = 2,     /* elu(x) + 1 */
    MCL_FLURKA_SOFTMAX = 3, /* exact softmax over the projected keys (Linformer) */
} mcl_flurka_map;

typedef enum mcl_flurka_projection {
    MCL_FLURKA_NO_PROJECTION = 0, /* Performer: keys and values as given */
    MCL_FLURKA_SHARED = 1,        /* E, F [k, N] for every head */
    MCL_FLURKA_PER_HEAD = 2,      /* E, F [H, k, N] */
} mcl_flurka_projection;

typedef struct mcl_flurka_desc {
    size_t batch, heads, seq, head_dim; /* B, H, N, D; D from 1 to 256 */
    size_t rank;     /* k, 1 to N with a projection; 0 without */
    size_t features; /* m, the rows of W for FAVOR+ and ReLU (1 to 4096); 0 for elu+1 and softmax */
    mcl_flurka_map map;
    mcl_flurka_projection projection;
    mcl_dtype dtype;
} mcl_flurka_desc;

typedef struct mcl_flurka_fwd_tensors {
    mcl_tensor q, k, v;     /* in  [B, H, N, D] */
    mcl_tensor e, f;        /* in  [k, N] or [H, k, N]; exactly with a projection */
    mcl_tensor w;           /* in  [m, D] fp32; exactly for FAVOR+ and ReLU */
    mcl_tensor out;         /* out [B, H, N, D] */
    mcl_tensor normalizer;  /* out [B, H, N] fp32, optional: the (stabilised) denominator */
} mcl_flurka_fwd_tensors;

typedef struct mcl_flurka_bwd_tensors {
    mcl_tensor q, k, v, e, f, w; /* in: as given to the forward */
    mcl_tensor dout;             /* in  [B, H, N, D] */
    mcl_tensor dq, dk, dv;       /* out [B, H, N, D], optional */
    mcl_tensor de, df;           /* out shaped as e and f, optional (need the projection) */
} mcl_flurka_bwd_tensors;

MCL_API mcl_status mcl_flurka_forward(mcl_context *context, const mcl_flurka_desc *desc,
                                      const mcl_flurka_fwd_tensors *tensors, cl_event *event);
MCL_API mcl_status mcl_flurka_backward(mcl_context *context, const mcl_flurka_desc *desc,
                                       const mcl_flurka_bwd_tensors *tensors, cl_event *event);
/* Scratch bytes the forward and the backward (every gradient asked for) take from the
 * context's workspace: K~, V~, phi(K~), S and z, and the backward's per-chunk partial sums. */
MCL_API mcl_status mcl_flurka_workspace_size(mcl_context *context, const mcl_flurka_desc *desc,
                                             size_t *forward_bytes, size_t *backward_bytes);

typedef enum mcl_flurka_norms {
    MCL_FLURKA_CHI_NORMS = 0,  /* each row's norm drawn from chi(D), as a Gaussian row's */
    MCL_FLURKA_SQRT_D_NORMS = 1, /* every row of norm sqrt(D) */
} mcl_flurka_norms;

/* FAVOR+'s random features W [m, D] (row-major fp32, host memory) drawn from `seed`: blocks of
 * D Gaussian rows (SplitMix64 and Box-Muller), each block orthonormalised by modified
 * Gram-Schmidt in double (the last block keeps its first m mod D rows), every row then scaled
 * to its norm. Host arithmetic only, so the same seed gives the same W for every device; draw
 * with a new seed per step to redraw. Also the ReLU kernel's W. */
MCL_API mcl_status mcl_flurka_draw_features(uint64_t seed, size_t features, size_t head_dim,
                                            mcl_flurka_norms norms, float *w);

/* ---- Add -------------------------------------------------------------------------------
 * y = a + b, elementwise over `count` elements (a residual connection's sum, forward or of
 * gradients). Backward: da = dy, db = dy. */
typedef struct mcl_add_desc {
    size_t count;
    mcl_dtype dtype;
} mcl_add_desc;

typedef struct mcl_add_fwd_tensors {
    mcl_tensor a, b; /* in  [count] */
    mcl_tensor y;    /* out [count]; may be a itself (in place: a += b) */
} mcl_add_fwd_tensors;

typedef struct mcl_add_bwd_tensors {
    mcl_tensor dy;     /* in  [count] */
    mcl_tensor da, db; /* out [count], optional (at least one); da may be dy itself (then only db is written) */
} mcl_add_bwd_tensors;

MCL_API mcl_status mcl_add_forward(mcl_context *context, const mcl_add_desc *desc,
                                   const mcl_add_fwd_tensors *tensors, cl_event *event);
MCL_API mcl_status mcl_add_backward(mcl_context *context, const mcl_add_desc *desc,
                                    const mcl_add_bwd_tensors *tensors, cl_event *event);

/* ---- Transpose -------------------------------------------------------------------------
 * The pair representation's layout changes: y [batch, cols, rows, width] with
 *   y[t, j, i, :] = x[t, i, j, :]   for x [batch, rows, cols, width],
 * each of its `width` values moved whole. Swapping i and j of a pair tensor [N, N, c] is
 * {1, N, N, c} (triangle attention around the ending node); [N, N, H] -> [H, N, N] (a pair-bias
 * projection into EvoAttention's layout) is {1, N*N, H, 1}; [B, S, H, D] -> [B, H, S, D] is
 * {B, S, H, D}. The backward is the transpose back: dx[t, i, j, :] = dy[t, j, i, :]. */
typedef struct mcl_transpose_desc {
    size_t batch, rows, cols, width;
    mcl_dtype dtype;
} mcl_transpose_desc;

typedef struct mcl_transpose_fwd_tensors {
    mcl_tensor x; /* in  [batch, rows, cols, width] */
    mcl_tensor y; /* out [batch, cols, rows, width] */
} mcl_transpose_fwd_tensors;

typedef struct mcl_transpose_bwd_tensors {
    mcl_tensor dy; /* in  [batch, cols, rows, width] */
    mcl_tensor dx; /* out [batch, rows, cols, width] */
} mcl_transpose_bwd_tensors;

MCL_API mcl_status mcl_transpose_forward(mcl_context *context, const mcl_transpose_desc *desc,
                                         const mcl_transpose_fwd_tensors *tensors, cl_event *event);
MCL_API mcl_status mcl_transpose_backward(mcl_context *context, const mcl_transpose_desc *desc,
                                          const mcl_transpose_bwd_tensors *tensors, cl_event *event);

/* ---- Sigmoid gating --------------------------------------------------------------------
 * y = x * sigmoid(g), elementwise over `count` elements of x, g and y (AF3's output gates).
 * Backward: dx = dy * sigmoid(g), dg = dy * x * sigmoid(g) * (1 - sigmoid(g)). */
typedef struct mcl_gating_desc {
    size_t count;
    mcl_dtype dtype;
} mcl_gating_desc;

typedef struct mcl_gating_fwd_tensors {
    mcl_tensor x, g; /* in  [count] */
    mcl_tensor y;    /* out [count]; may be x itself (in place) */
} mcl_gating_fwd_tensors;

typedef struct mcl_gating_bwd_tensors {
    mcl_tensor x, g, dy; /* in  [count] */
    mcl_tensor dx, dg;   /* out [count], optional (at least one); dx may be dy itself */
} mcl_gating_bwd_tensors;

MCL_API mcl_status mcl_gating_forward(mcl_context *context, const mcl_gating_desc *desc,
                                      const mcl_gating_fwd_tensors *tensors, cl_event *event);
MCL_API mcl_status mcl_gating_backward(mcl_context *context, const mcl_gating_desc *desc,
                                       const mcl_gating_bwd_tensors *tensors, cl_event *event);

/* ---- SwiGLU ----------------------------------------------------------------------------
 * For x [rows, 2 * features] split into halves a (the SiLU half) and b:
 *   y [rows, features] = silu(a) * b,   silu(a) = a * sigmoid(a).
 * silu_half says which half a is: AF3 applies SiLU to the first half, MegaFold's and
 * OpenFold's code to the second. Backward: dx = [da, db] (in x's layout) with
 *   da = dy * b * sigmoid(a) * (1 + a * (1 - sigmoid(a))),   db = dy * silu(a). */
typedef enum mcl_swiglu_half {
    MCL_SWIGLU_SILU_FIRST = 0,
    MCL_SWIGLU_SILU_SECOND = 1,
} mcl_swiglu_half;

typedef struct mcl_swiglu_desc {
    size_t rows, features;
    mcl_dtype dtype;
    mcl_swiglu_half silu_half;
} mcl_swiglu_desc;

typedef struct mcl_swiglu_fwd_tensors {
    mcl_tensor x; /* in  [rows, 2 * features] */
    mcl_tensor y; /* out [rows, features] */
} mcl_swiglu_fwd_tensors;

typedef struct mcl_swiglu_bwd_tensors {
    mcl_tensor x;  /* in  [rows, 2 * features], the forward's input */
    mcl_tensor dy; /* in  [rows, features] */
    mcl_tensor dx; /* out [rows, 2 * features] */
} mcl_swiglu_bwd_tensors;

MCL_API mcl_status mcl_swiglu_forward(mcl_context *context, const mcl_swiglu_desc *desc,
                                      const mcl_swiglu_fwd_tensors *tensors, cl_event *event);
MCL_API mcl_status mcl_swiglu_backward(mcl_context *context, const mcl_swiglu_desc *desc,
                                       const mcl_swiglu_bwd_tensors *tensors, cl_event *event);

/* ---- Transition ------------------------------------------------------------------------
 * AF3's transition block: y [rows, c] = SwiGLU(LN(x) W1) W2 for x [rows, c], with LN as
 * mcl_layernorm (optional ln_weight and ln_bias [c]), W1 [c, 2F] whose output halves feed
 * SwiGLU as silu_half says, W2 [F, c], and no biases (AF3 uses F = 4c). The forward keeps
 * what the backward needs: mean and rstd [rows] fp32 and the pre-activation h = LN(x) W1
 * [rows, 2F]; LN(x) and the SwiGLU output are formed as the GEMMs load their operands and are
 * never stored. The backward recomputes both the same way and works through the rows a chunk
 * at a time: it stores the chunk's dh [chunk_rows, 2F] in the workspace through the second
 * GEMM's SwiGLU-backward epilogue, and writes its rows of dLN(x) into dx, which the LayerNorm
 * backward then turns into dx in place (dLN(x) takes workspace only when dx is not asked for).
 * Weight gradients are reduced in a fixed order. */
typedef struct mcl_transition_desc {
    size_t rows, channels, hidden; /* rows, c, F */
    mcl_dtype dtype;
    float eps;
    mcl_swiglu_half silu_half;
    size_t chunk_rows; /* rows per backward chunk: fewer save memory; 0 picks 32768 */
} mcl_transition_desc;

typedef struct mcl_transition_fwd_tensors {
    mcl_tensor x;                  /* in  [rows, c] */
    mcl_tensor ln_weight, ln_bias; /* in  [c], optional */
    mcl_tensor w1;                 /* in  [c, 2F] */
    mcl_tensor w2;                 /* in  [F, c] */
    mcl_tensor y;                  /* out [rows, c] */
    mcl_tensor mean, rstd;         /* out [rows] fp32 */
    mcl_tensor h;                  /* out [rows, 2F]: LN(x) W1, kept for the backward */
} mcl_transition_fwd_tensors;

typedef struct mcl_transition_bwd_tensors {
    mcl_tensor x, ln_weight, ln_bias, w1, w2; /* in: as given to the forward */
    mcl_tensor mean, rstd, h;                 /* in: saved by the forward */
    mcl_tensor dy;                            /* in  [rows, c] */
    mcl_tensor dx;                            /* out [rows, c], optional */
    mcl_tensor dln_weight, dln_bias;          /* out [c], optional */
    mcl_tensor dw1;                           /* out [c, 2F], optional */
    mcl_tensor dw2;                           /* out [F, c], optional */
} mcl_transition_bwd_tensors;

MCL_API mcl_status mcl_transition_forward(mcl_context *context, const mcl_transition_desc *desc,
                                          const mcl_transition_fwd_tensors *tensors, cl_event *event);
MCL_API mcl_status mcl_transition_backward(mcl_context *context, const mcl_transition_desc *desc,
                                           const mcl_transition_bwd_tensors *tensors, cl_event *event);
MCL_API mcl_status mcl_transition_backward_workspace_size(mcl_context *context,
                                                          const mcl_transition_desc *desc,
                                                          const mcl_transition_bwd_tensors *tensors,
                                                          size_t *bytes);

/* ---- Triangle multiplicative update ----------------------------------------------------
 * AF3's triangle multiplication over a pair representation z [N, N, c] (rows i, j; c channels)
 * with an optional pair mask [N, N]:
 *   p  = LN(z) W_in, W_in [c, 4h + c]: column blocks a_proj, a_gate, b_proj, b_gate (h each)
 *        and the output gate g (c);
 *   a  = sigmoid(a_gate) * a_proj * mask,   b = sigmoid(b_gate) * b_proj * mask;
 *   t  = sum_k a[i, k] * b[j, k] per channel (outgoing), or sum_k a[k, i] * b[k, j] (incoming);
 *   out = sigmoid(g) * (LN(t) W_out), W_out [h, c].
 * Both LayerNorms are as mcl_layernorm with optional weights and biases; no Linear biases
 * (AF3). The forward keeps t [N, N, h] and both LayerNorms' statistics for the backward, which
 * recomputes p; the k-sum runs as a batched GEMM over channels, a chunk of channels at a time,
 * so the workspace holds a chunk's share of p, not all of it. The backward's gradients reach
 * both LayerNorms' backward in fp32, so their weight and bias gradients sum unrounded values. */
typedef enum mcl_trimul_direction {
    MCL_TRIMUL_OUTGOING = 0,
    MCL_TRIMUL_INCOMING = 1,
} mcl_trimul_direction;

typedef struct mcl_trimul_desc {
    size_t n, channels, hidden; /* N, c, h */
    mcl_dtype dtype;
    float eps;
    mcl_trimul_direction direction;
} mcl_trimul_desc;

typedef struct mcl_trimul_fwd_tensors {
    mcl_tensor z;                          /* in  [N, N, c] */
    mcl_tensor mask;                       /* in  [N, N], optional */
    mcl_tensor ln_in_weight, ln_in_bias;   /* in  [c], optional */
    mcl_tensor w_in;                       /* in  [c, 4h + c] */
    mcl_tensor ln_out_weight, ln_out_bias; /* in  [h], optional */
    mcl_tensor w_out;                      /* in  [h, c] */
    mcl_tensor out;                        /* out [N, N, c] */
    mcl_tensor t;                          /* out [N, N, h], kept for the backward */
    mcl_tensor mean_in, rstd_in;           /* out [N, N] fp32 */
    mcl_tensor mean_out, rstd_out;         /* out [N, N] fp32 */
} mcl_trimul_fwd_tensors;

typedef struct mcl_trimul_bwd_tensors {
    mcl_tensor z, mask, ln_in_weight, ln_in_bias, w_in, ln_out_weight, ln_out_bias, w_out; /* in */
    mcl_tensor t, mean_in, rstd_in, mean_out, rstd_out;    /* in: saved by the forward */
    mcl_tensor dout;                                       /* in  [N, N, c] */
    mcl_tensor dz;                                         /* out [N, N, c], optional */
    mcl_tensor dln_in_weight, dln_in_bias;                 /* out [c], optional */
    mcl_tensor dw_in;                                      /* out [c, 4h + c], optional */
    mcl_tensor dln_out_weight, dln_out_bias;               /* out [h], optional */
    mcl_tensor dw_out;                                     /* out [h, c], optional */
} mcl_trimul_bwd_tensors;

MCL_API mcl_status mcl_trimul_forward(mcl_context *context, const mcl_trimul_desc *desc,
                                      const mcl_trimul_fwd_tensors *tensors, cl_event *event);
MCL_API mcl_status mcl_trimul_backward(mcl_context *context, const mcl_trimul_desc *desc,
                                       const mcl_trimul_bwd_tensors *tensors, cl_event *event);
/* Scratch bytes of the forward (the triangle sum's operands) and of the backward. */
MCL_API mcl_status mcl_trimul_workspace_size(mcl_context *context, const mcl_trimul_desc *desc,
                                             size_t *forward_bytes, size_t *backward_bytes);

/* ---- ACSR sparse attention (SPLAT) -----------------------------------------------------
 * Attention of every query row over the key columns a mask gives it, for masks whose rows are
 * regular (SPLAT's affine rows):
 *   Q, K, V, O: [B, H, N, D]      lse: [B, H, N] fp32
 *   O_i = sum_{j in mask row i} softmax_j(scale * q_i . k_j) v_j
 * A row with no column gets O = 0 and lse = -inf. One mask serves every batch and head.
 *
 * A mask is held in ACSR: each row's columns are split into at most MCL_ACSR_MAX_COMPONENTS
 * arithmetic progressions (start, stride, count), so its metadata is O(N), not O(nonzeros); a
 * row that needs more goes whole to a CSR fallback. Building a mask verifies every row's split
 * against its columns, groups rows by the key lattices they read (stride and start mod stride)
 * and builds the transposed pattern the backward's key-side kernel walks. Kernels are
 * specialised on that analysis; its device metadata is owned by the mask. Build a mask once
 * and reuse it; it belongs to the context it was built on. */
#define MCL_ACSR_MAX_COMPONENTS 4

typedef struct mcl_acsr_mask mcl_acsr_mask;

/* Patterns, for query row i and key column j of an N x N mask. */
typedef enum mcl_acsr_pattern_kind {
    MCL_ACSR_WINDOW = 0,      /* |i - j| <= width */
    MCL_ACSR_CAUSAL_WINDOW,   /* 0 <= i - j <= width */
    MCL_ACSR_DILATED,         /* |i - j| <= width and i - j divisible by step */
    MCL_ACSR_STRIDED,         /* i - j divisible by step */
    MCL_ACSR_BLOCKED,         /* |i / block - j / block| <= width (a block sees width blocks each side) */
    MCL_ACSR_BLOCK_DIAGONAL,  /* i / block == j / block */
    MCL_ACSR_GLOBAL,          /* i < count or j < count: count global tokens see and are seen by all */
} mcl_acsr_pattern_kind;

typedef struct mcl_acsr_pattern {
    mcl_acsr_pattern_kind kind;
    size_t width; /* WINDOW, CAUSAL_WINDOW, DILATED: < N; BLOCKED: blocks each side */
    size_t step;  /* DILATED, STRIDED: 1 .. N */
    size_t block; /* BLOCKED, BLOCK_DIAGONAL: 1 .. N */
    size_t count; /* GLOBAL: 1 .. N */
} mcl_acsr_pattern;

/* The union of `count` patterns over N = seq rows and columns. */
MCL_API mcl_status mcl_acsr_mask_from_patterns(mcl_context *context, size_t seq, const mcl_acsr_pattern *patterns,
                                               size_t count, mcl_acsr_mask **mask);
/* From a dense [seq, seq] row-major mask: a nonzero byte at (i, j) lets query i see key j. */
MCL_API mcl_status mcl_acsr_mask_from_dense(mcl_context *context, size_t seq, const uint8_t *dense,
                                            mcl_acsr_mask **mask);
/* From CSR: row i's columns are cols[row_ptr[i] .. row_ptr[i + 1]), in any order (repeats are
 * one column); row_ptr has seq + 1 entries from 0. */
MCL_API mcl_status mcl_acsr_mask_from_csr(mcl_context *context, size_t seq, const uint64_t *row_ptr,
                                          const uint32_t *cols, mcl_acsr_mask **mask);
MCL_API void mcl_acsr_mask_release(mcl_acsr_mask *mask); /* NULL is fine */

/* How a builder split a mask. */
typedef struct mcl_acsr_mask_info {
    size_t seq;
    uint64_t nonzeros;
    size_t components;                               /* the most progressions of any affine row */
    size_t component_rows[MCL_ACSR_MAX_COMPONENTS];  /* rows with a c-th progression */
    size_t fallback_rows;                            /* rows held in CSR */
    uint64_t fallback_nonzeros;
    size_t empty_rows;
    size_t lattices;      /* groups of rows reading the same key lattices */
    size_t transposed_fallback_rows; /* key columns the backward walks through CSR */
} mcl_acsr_mask_info;

MCL_API mcl_status mcl_acsr_mask_get_info(const mcl_acsr_mask *mask, mcl_acsr_mask_info *info);

typedef enum mcl_acsr_mode {
    MCL_ACSR_FUSED = 0,   /* one pass with an online softmax; nothing of size nonzeros is stored */
    MCL_ACSR_UNFUSED = 1, /* SPLAT's pipeline: scores -> row softmax -> P V, the scores held in
                             B * H * nonzeros fp32 of workspace (forward only) */
} mcl_acsr_mode;

typedef struct mcl_acsr_desc {
    size_t batch, heads, seq, head_dim; /* B, H, N, D; D from 1 to 256 */
    mcl_dtype dtype;
    float scale;                        /* 0 means 1 / sqrt(D) */
    mcl_acsr_mask *mask;                /* built for this N on this context (its device tilings are made on first use) */
    mcl_acsr_mode mode;                 /* of the forward */
} mcl_acsr_desc;

typedef struct mcl_acsr_fwd_tensors {
    mcl_tensor q, k, v; /* in */
    mcl_tensor out;     /* out O */
    mcl_tensor lse;     /* out [B, H, N] fp32, optional (the backward needs it) */
} mcl_acsr_fwd_tensors;

typedef struct mcl_acsr_bwd_tensors {
    mcl_tensor q, k, v, out, lse; /* in: as given to and saved by the forward */
    mcl_tensor dout;              /* in: dO */
    mcl_tensor dq, dk, dv;        /* out, optional (at least one) */
} mcl_acsr_bwd_tensors;

MCL_API mcl_status mcl_acsr_forward(mcl_context *context, const mcl_acsr_desc *desc,
                                    const mcl_acsr_fwd_tensors *tensors, cl_event *event);
/* Deterministic: every dQ row and every dK, dV row has one owner (the latter through the
 * transposed pattern); no float atomics. */
MCL_API mcl_status mcl_acsr_backward(mcl_context *context, const mcl_acsr_desc *desc,
                                     const mcl_acsr_bwd_tensors *tensors, cl_event *event);
/* Scratch bytes the forward (in its mode) and the backward take from the context's workspace. */
MCL_API mcl_status mcl_acsr_workspace_size(mcl_context *context, const mcl_acsr_desc *desc,
                                           size_t *forward_bytes, size_t *backward_bytes);

/* ---- MSA feature pipeline --------------------------------------------------------------
 * MegaFold's data-pipeline fix for AF3-style training: the deterministic MSA features of each
 * chain are computed ahead of time from its alignments (A3M and Stockholm) into a
 * content-addressed on-disk cache that is memory-mapped at load, and a prefetching loader keeps
 * only the stochastic steps (MSA row sampling, cropping) online, on worker threads, staging the
 * next batches onto the device while the current step computes. The exact feature definitions
 * are in lib/pipeline/msa_features.c; in short, for the de-duplicated rows of a chain:
 *   tokens         [depth, length] u8: ARNDCQEGHILKMFPSTWYV = 0..19, X = 20, gap = 21
 *   deletions      residues the row inserts before each query column, held sparse (most are 0:
 *                  97 of 74 752 in a real HHblits alignment): the nonzero counts row by row;
 *                  mcl_msa_deletions_dense gives AlphaFold's dense [depth, length] matrix
 *   profile        [length, 22] f32: per column, the share of rows holding each token
 *   deletion_mean  [length] f32: per column, the mean of deletions over the rows
 *   has_deletion = deletions > 0, deletion_value = 2/pi * arctan(deletions / 3) (per element,
 *   formed by the loader for the sampled rows, or by mcl_msa_deletion_value). */

#define MCL_MSA_FEATURE_VERSION 1   /* part of every cache key: bump when a definition changes */
#define MCL_MSA_CLASSES 22          /* 20 amino acids, X, gap */
#define MCL_MSA_TOKEN_UNKNOWN 20
#define MCL_MSA_TOKEN_GAP 21
#define MCL_MSA_MAX_LINE_BYTES ((size_t)1 << 20) /* a longer line in an alignment is an error */

/* A chain's features; immutable and safe to read from any thread. Read from the cache, they are
 * the memory-mapped entry itself (uncompressed entries) or its decompressed arrays. */
typedef struct mcl_msa_features mcl_msa_features;

typedef struct mcl_msa_arrays {
    size_t depth;               /* rows after de-duplication, the query first */
    size_t length;              /* columns: the query's residues */
    const uint8_t *tokens;      /* [depth, length] */
    /* The nonzero deletion counts, compressed rows (CSR): those of row r are deletion_counts[k]
     * at column deletion_columns[k] for k in [deletion_row_start[r], deletion_row_start[r + 1]),
     * columns increasing; every other count is 0. */
    size_t deletion_nonzero;              /* nonzero counts in all */
    const uint64_t *deletion_row_start;   /* [depth + 1], from 0 to deletion_nonzero */
    const uint32_t *deletion_columns;     /* [deletion_nonzero] */
    const int32_t *deletion_counts;       /* [deletion_nonzero], each >= 1 */
    const float *profile;       /* [length, MCL_MSA_CLASSES] */
    const float *deletion_mean; /* [length] */
} mcl_msa_arrays;

/* Parses a chain's alignments (".a3m" for A3M, ".sto" or ".stockholm" for Stockholm, by name)
 * and computes its features; the first file's first sequence is the query, and every file must
 * have its length. A malformed file fails with MCL_ERR_PARSE (MCL_ERR_IO if unreadable) and a
 * message naming the file, the line and the problem. */
MCL_API mcl_status mcl_msa_features_from_files(const char *const *paths, size_t count,
                                               mcl_msa_features **features);
MCL_API void mcl_msa_features_release(mcl_msa_features *features); /* NULL is fine */
MCL_API void mcl_msa_features_arrays(const mcl_msa_features *features, mcl_msa_arrays *arrays);

/* Rows first_row .. first_row + rows - 1 of the deletion counts as a dense [rows, length] matrix
 * (AlphaFold's deletion_matrix) in the caller's `counts`. */
MCL_API mcl_status mcl_msa_deletions_dense(const mcl_msa_arrays *arrays, size_t first_row, size_t rows,
                                           int32_t *counts);

/* 2/pi * arctan(count / 3): AlphaFold's transformed deletion value. */
MCL_API float mcl_msa_deletion_value(int32_t count);

/* A training example: one chain, its alignment files in the order their rows are merged. */
typedef struct mcl_msa_example {
    const char *name;          /* shown by `megacl cache ls`; not part of the cache key */
    const char *const *paths;
    size_t path_count;
} mcl_msa_example;

/* The chains under a directory, sorted by name: each subdirectory holding .a3m/.sto files is a
 * chain of those files in name order (OpenFold's alignment directory layout), and an alignment
 * file directly in dir is a chain of its own. Free with mcl_msa_examples_free. */
MCL_API mcl_status mcl_msa_examples_scan(const char *dir, mcl_msa_example **examples, size_t *count);
MCL_API void mcl_msa_examples_free(mcl_msa_example *examples, size_t count);

/* The on-disk feature cache: a directory of entries, one file each, named by the XXH3-128 hash of
 * the feature version and the chain's input files (format and contents, in order). An entry has
 * a header (magic, format and feature versions, shapes, dtypes, array offsets, checksums) and
 * 64-byte-aligned arrays, raw or zstd-compressed; it is written under a temporary name in the
 * same directory and renamed, so readers and concurrent writers of the same key (threads or
 * processes) never see a partial entry. A corrupt or truncated entry is reported (MEGACL_LOG=
 * warn), deleted and rebuilt. A cache handle may be used from several threads at once.
 * A key index beside the entries (<dir>/index, as git's index) maps what stat says of a chain's
 * files (path, device, inode, size, mtime and ctime in ns) to their key, so that reading an
 * unchanged chain does not read and hash its alignments; any change through the file system moves
 * the ctime and sends the read back to hashing, and an unsound record only costs a re-hash.
 * lib/pipeline/key_index.c says what it assumes; MEGACL_KEY_INDEX=0 (read at open) turns it off. */
typedef struct mcl_feature_cache mcl_feature_cache;

/* Opens (creating it if needed) a cache directory. compression_level 0 stores raw arrays
 * (read by mapping the file, no copy); 1 to 19 compresses new entries with zstd at that level. */
MCL_API mcl_status mcl_feature_cache_open(const char *dir, int compression_level, mcl_feature_cache **cache);
MCL_API void mcl_feature_cache_close(mcl_feature_cache *cache); /* NULL is fine */

/* The features of an example: its entry when there is a sound one, else parsed, stored and
 * returned. Nothing is stored when parsing fails. */
MCL_API mcl_status mcl_feature_cache_get(mcl_feature_cache *cache, const mcl_msa_example *example,
                                         mcl_msa_features **features);

/* The 32-hex-digit key of an example's entry (reads and hashes its files). */
MCL_API mcl_status mcl_feature_cache_key(const mcl_msa_example *example, char key[33]);

typedef struct mcl_feature_cache_stats {
    uint64_t hits;          /* entries read */
    uint64_t misses;        /* entries built (parsed and written) */
    uint64_t corrupt;       /* entries found corrupt or truncated, deleted and rebuilt */
    uint64_t indexed;       /* hits whose key came from the key index, the inputs unread */
    double read_seconds;    /* in reads of hits, finding the key (index or hash) included */
    double build_seconds;   /* in parsing, computing and writing misses */
} mcl_feature_cache_stats;

MCL_API void mcl_feature_cache_get_stats(mcl_feature_cache *cache, mcl_feature_cache_stats *stats);

/* What an entry holds, as `megacl cache ls` and `verify` show it. */
typedef struct mcl_cache_entry_info {
    char key[33];
    char name[64];           /* the example's name when the entry was written */
    char path[1024];
    uint32_t format_version, feature_version;
    uint64_t depth, length;
    uint64_t file_bytes;     /* on disk */
    uint64_t array_bytes;    /* the arrays uncompressed */
    int compressed;
    mcl_status check;        /* MCL_OK, or why the entry is unsound (MCL_ERR_CORRUPT, ...) */
    char problem[256];       /* the detail when check is not MCL_OK */
} mcl_cache_entry_info;

/* Calls visit for every entry in key order (a nonzero return stops the walk). full = 0 checks
 * headers only (fast: `ls`, `stats`); full = 1 checks every checksum and array (`verify`).
 * Unsound entries are reported through info->check, not deleted. */
typedef int (*mcl_cache_visit)(const mcl_cache_entry_info *info, void *user);
MCL_API mcl_status mcl_feature_cache_walk(mcl_feature_cache *cache, int full, mcl_cache_visit visit,
                                          void *user);
MCL_API mcl_status mcl_feature_cache_remove(mcl_feature_cache *cache, const char *key);

/* Ahead-of-time build: the examples whose index i has i % shard_count == shard_index (a batch
 * system's job array splits the work that way, each writing its entries into a shared
 * directory) on `jobs` threads. report, when given, is called on the calling thread about ten
 * times a second and once per failed example; the build goes on past failures and returns the
 * status of the failed example of lowest index (its message names it), MCL_OK if none failed. */
typedef struct mcl_cache_build_progress {
    size_t total;     /* examples of this shard */
    size_t done;      /* of them, finished */
    size_t built;     /* parsed and written */
    size_t present;   /* found in the cache already */
    size_t failed;
    const mcl_msa_example *failed_example; /* set when reporting a failure, else NULL */
    mcl_status failed_status;
    const char *failed_message;
} mcl_cache_build_progress;

typedef struct mcl_cache_build_desc {
    size_t jobs;                      /* worker threads; 0 means 1 */
    size_t shard_index, shard_count;  /* shard_count 0 means 1 */
    void (*report)(const mcl_cache_build_progress *progress, void *user);
    void *user;
} mcl_cache_build_desc;

MCL_API mcl_status mcl_feature_cache_build(mcl_feature_cache *cache, const mcl_msa_example *examples,
                                           size_t count, const mcl_cache_build_desc *desc,
                                           mcl_cache_build_progress *result);

/* The prefetching loader. Step s of a run is the batch of examples s*B .. s*B+B-1 of the
 * example stream, which visits the examples in a fresh seeded order every epoch. Each example
 * of a batch gets its features (from the cache, built on a miss; parsed every time without a
 * cache), then its stochastic steps from a generator seeded by (seed, step, place in batch),
 * so a step's batch depends on the seed only, never on thread timing:
 *   - MSA rows: the query, then min(rows - 1, depth - 1) other rows drawn without replacement
 *     in a random order; the remaining rows are padding;
 *   - crop: a window of min(crop, length) consecutive columns at a uniformly drawn start.
 * Padding has token gap, zero features and mask 0. Worker threads prepare `prefetch` batches
 * ahead into host buffers and, with a context, write each into a device buffer of its own with
 * a non-blocking write on a queue of the loader's, so the consumer only waits when the workers
 * fall behind. */
typedef struct mcl_loader mcl_loader;

typedef struct mcl_loader_desc {
    mcl_feature_cache *cache;          /* NULL: parse every example online (no cache) */
    const mcl_msa_example *examples;   /* borrowed until mcl_loader_destroy */
    size_t example_count;
    uint64_t seed;
    size_t batch_size;                 /* B, >= 1 */
    size_t msa_rows;                   /* R: rows per example, the query included, >= 1 */
    size_t crop_size;                  /* C: columns per example, >= 1 */
    size_t steps;                      /* batches to deliver; 0: one epoch */
    size_t workers;                    /* threads; 0 picks 2 */
    size_t prefetch;                   /* batches prepared ahead; 0 picks 2 */
    mcl_context *context;              /* NULL: host batches only */
} mcl_loader_desc;

/* A delivered batch. The host arrays stay valid until mcl_loader_release. With a context, the
 * device copy lives in one buffer of the loader's, at the offsets of the tensors below; next()
 * has already made the context's queue wait for its write, so commands enqueued on that queue
 * afterwards read it whole (for another queue, wait on `ready`). */
typedef struct mcl_batch {
    size_t step;
    size_t batch_size, rows, cols;   /* B, R, C */
    const uint8_t *tokens;           /* [B, R, C] */
    const float *has_deletion;       /* [B, R, C] */
    const float *deletion_value;     /* [B, R, C] */
    const float *msa_mask;           /* [B, R, C]: 1 for a real row and column, else 0 */
    const float *profile;            /* [B, C, MCL_MSA_CLASSES] */
    const float *deletion_mean;      /* [B, C] */
    const int32_t *residue_index;    /* [B, C]: the query column of each cropped column, -1 pad */
    const int32_t *example_index;    /* [B]: index into desc.examples */
    mcl_tensor d_tokens, d_has_deletion, d_deletion_value, d_msa_mask, d_profile,
        d_deletion_mean, d_residue_index; /* device copies (mem NULL without a context) */
    cl_event ready;                  /* the device write; owned by the loader */
    double wait_seconds;             /* how long next() waited for this batch */
} mcl_batch;

MCL_API mcl_status mcl_loader_create(const mcl_loader_desc *desc, mcl_loader **loader);

/* The next step's batch, in step order; waits only if the workers have not prepared it. A step
 * whose example failed returns that failure (its message names the example) and the next call
 * moves on; after the last step it returns MCL_ERR_EXHAUSTED. One batch at a time: release it
 * before asking for the next. */
MCL_API mcl_status mcl_loader_next(mcl_loader *loader, mcl_batch *batch);

/* Gives the batch back once the commands reading its device copy are enqueued on the context's
 * queue (the loader refills the buffer only after they complete). */
MCL_API mcl_status mcl_loader_release(mcl_loader *loader, mcl_batch *batch);

typedef struct mcl_loader_stats {
    uint64_t steps;              /* batches delivered */
    double wait_seconds;         /* the consumer's total wait in next() */
    double max_wait_seconds;     /* its longest wait for one step */
    uint64_t cache_hits, cache_misses; /* features read from / built into the cache */
} mcl_loader_stats;

MCL_API void mcl_loader_get_stats(mcl_loader *loader, mcl_loader_stats *stats);

/* Stops the workers (a batch in preparation is finished, so no cache entry is left half
 * written), waits for the device writes in flight and frees everything. NULL is fine. */
MCL_API void mcl_loader_destroy(mcl_loader *loader);

/* ---- Experimental API -------------------------------------------------------------------
 * Interfaces that may change between minor versions, as zstd's static-linking-only section:
 * define MCL_EXPERIMENTAL before including this header to use them. */
#ifdef MCL_EXPERIMENTAL

/* Fixes a kernel family's tuning parameters on this context: "NAME=VALUE,..." over the
 * family's defaults (`megacl params` lists families and legal values). NULL goes back to the
 * tuning databases. Illegal names, values or combinations fail and change nothing. The tuner,
 * `megacl bench` and the tests use this to run every variant through the ops' own entry
 * points. */
MCL_API mcl_status mcl_context_set_params(mcl_context *context, const char *family,
                                  const char *assignments);

/* Lets f32 calls take the tensor cores in tf32 (operands rounded to 10-bit mantissas, fp32
 * sums), as PyTorch's allow_tf32: the fused operators' GEMMs, EvoAttention and ACSR, each only
 * where its family's tuned parameters choose a tensor-core variant (gemm MMA; evoattn and acsr
 * FWD_MMA, DQ_MMA, DKV_MMA) and the device's mma.sync probe passed. Off by default; 0 turns it
 * off again. */
MCL_API mcl_status mcl_context_allow_tf32(mcl_context *context, int allow);
/* Whether the context allows tf32 (0 for NULL). */
MCL_API int mcl_context_tf32_allowed(const mcl_context *context);

/* The kernel families and their tuning parameters, as `megacl params` and the tuner list them. */
typedef struct mcl_family_info {
    const char *name;          /* "layernorm" */
    const char *define_prefix; /* "LN_": a kernel parameter TPR is built as -DLN_TPR=... */
    const char *shape_names;   /* "rows,cols": what the shape of mcl_context_get_params holds */
    size_t shape_rank;
    const size_t *example_shape; /* shape_rank sizes of a typical AF3 call */
    size_t param_count;
} mcl_family_info;

typedef struct mcl_param_info {
    const char *name;          /* "TPR" */
    int default_value;
    const int *legal_values;
    size_t legal_count;
    const char *kernel;        /* the kernel source it is a define of; NULL: a host choice */
} mcl_param_info;

MCL_API size_t mcl_family_count(void);
MCL_API mcl_status mcl_family_get(size_t index, mcl_family_info *info);
MCL_API mcl_status mcl_family_param(size_t family_index, size_t param_index, mcl_param_info *info);

/* The parameters the context runs a family with for a dtype and shape (shape_rank sizes, as
 * mcl_family_info names them), and where they come from. */
typedef struct mcl_param_choice {
    char values[1024]; /* "TPR=32,VEC=4,...", every parameter of the family */
    char origin[128];  /* "override", "<database> (arch)", "defaults", ... */
} mcl_param_choice;

MCL_API mcl_status mcl_context_get_params(mcl_context *context, const char *family, mcl_dtype dtype,
                                          const size_t *shape, size_t shape_rank, mcl_param_choice *choice);

/* The parameter lookups the context's ops make, recorded while on (turning it on forgets earlier
 * ones): which family, dtype and shape bucket each call runs with. The tuner finds what a
 * workload's calls depend on this way. */
typedef struct mcl_lookup_info {
    const char *family;
    mcl_dtype dtype;
    char bucket[64];
    size_t shape[8]; /* shape_rank sizes of the first call that met the bucket */
    size_t shape_rank;
} mcl_lookup_info;

MCL_API mcl_status mcl_context_trace_lookups(mcl_context *context, int on);
MCL_API size_t mcl_context_lookup_count(const mcl_context *context);
MCL_API mcl_status mcl_context_lookup(const mcl_context *context, size_t index, mcl_lookup_info *info);

/* Reads the tuning databases again at the next lookup (after `megacl tune` wrote one). */
MCL_API mcl_status mcl_context_reload_tuning(mcl_context *context);

/* ---- Tuning: the autotuner behind `megacl tune` ------------------------------------------
 * mcl_tune searches a family's declared space for one (dtype, shape bucket) on the context's
 * device: it verifies and times the family's defaults (the reference configuration), then
 * candidates stage by stage, each stage starting from the best of those before. Candidates are
 * compiled ahead on host threads (contexts of their own that build programs and enqueue
 * nothing), then each is run once on poisoned outputs and compared with the reference
 * configuration's outputs, and timed with event profiling (warm-up, median of reps; a
 * candidate slower than 1.5x the best after its warm-up is not timed further). Only the
 * lookups of the target's bucket see the candidate: the other buckets of the same calls keep
 * their parameters, so the time measured is the calls' time as users run them. */
typedef struct mcl_tune_output {
    const char *name;
    mcl_tensor tensor;
    mcl_dtype dtype;
    size_t count;      /* elements */
    double tolerance;  /* relative 2-norm difference allowed from the reference configuration */
} mcl_tune_output;

typedef struct mcl_tune_target {
    const char *label;   /* names the job in the record ("transition pair M=147456 c=128 F=512 f32") */
    const char *family;  /* whose parameters vary */
    mcl_dtype dtype;
    const size_t *shape; /* a lookup shape of the bucket tuned (the family's shape_rank sizes) */
    /* enqueues one run of the calls on `context` over input set `set` (< input_sets); the
     * outputs of set 0 are the ones compared */
    mcl_status (*run)(void *user, mcl_context *context, size_t set);
    size_t input_sets;   /* rotated between timed runs where caches would flatter; >= 1 */
    const mcl_tune_output *outputs;
    size_t output_count;
    void *user;
} mcl_tune_target;

typedef enum mcl_tune_strategy {
    MCL_TUNE_AUTO = 0,    /* exhaustive where a stage fits the candidate budget, else annealing */
    MCL_TUNE_EXHAUSTIVE,  /* every legal candidate (up to the candidate budget) */
    MCL_TUNE_RANDOM,      /* a seeded random sample without repeats */
    MCL_TUNE_ANNEALING,   /* simulated annealing over neighbours (one axis moved one value) */
} mcl_tune_strategy;

MCL_API const char *mcl_tune_strategy_name(mcl_tune_strategy strategy); /* "auto", "exhaustive", ... */

typedef struct mcl_tune_progress {
    const char *label, *stage;
    size_t done, total;      /* candidates of the stage */
    double best_ms, reference_ms;
    double seconds_left;     /* of the budget; negative without one */
} mcl_tune_progress;

typedef struct mcl_tune_settings {
    mcl_tune_strategy strategy;
    double budget_seconds;   /* wall time for the target; 0: none */
    size_t max_candidates;   /* per stage; 0: 128 */
    int warmup, reps;        /* 0: 1 and 5 */
    unsigned compile_threads; /* 0: the host's processors, at most 16 */
    uint64_t seed;
    /* JSON lines every result is appended to (flushed as it is measured); a run given the record
     * of an interrupted one takes the results there instead of measuring again. NULL: none */
    const char *record;
    void (*progress)(void *user, const mcl_tune_progress *progress);
    void *progress_user;
} mcl_tune_settings;

typedef struct mcl_tune_result {
    char bucket[64];
    char params[1024];           /* the winner: every parameter of the family */
    char reference_params[1024]; /* the family's defaults on the device */
    double ms, reference_ms;     /* medians of the winner and of the defaults */
    size_t measured, failed;     /* candidates timed, and failed (any reason) */
    size_t resumed;              /* candidates whose results came from an earlier run's record */
    int finished_before;         /* the record holds the job's winner: nothing was measured */
} mcl_tune_result;

MCL_API mcl_status mcl_tune(mcl_context *context, const mcl_tune_target *target,
                            const mcl_tune_settings *settings, mcl_tune_result *result);

/* Where a tuning entry applies: the device's exact name, its architecture, its vendor. */
typedef enum mcl_tune_level { MCL_TUNE_DEVICE = 0, MCL_TUNE_ARCH, MCL_TUNE_VENDOR } mcl_tune_level;

/* Stores a tuning result in the database at `path` (NULL: the user database,
 * MEGACL_TUNING_DB or <cache root>/tuning.json), replacing an entry of the same family, key,
 * dtype and bucket: read, changed, written to a temporary file and renamed, so a reader never
 * sees half a file. A file that is not a database of this format is refused, not overwritten. */
typedef struct mcl_tuning_entry {
    const char *family;
    mcl_tune_level level;
    mcl_dtype dtype;
    const char *bucket;
    const char *params;   /* "NAME=VALUE,..." */
    double ms, default_ms;
    const char *command;  /* how it was measured */
} mcl_tuning_entry;

MCL_API mcl_status mcl_tuning_db_store(const char *path, const mcl_device_info *device,
                                       const mcl_tuning_entry *entry);

/* The tuning entries that match the context's device (exact name, architecture, vendor or any
 * device), the user database's first, then the built-in one's, each most specific first; in_use
 * marks the entry a lookup of its family, dtype and bucket takes. */
typedef struct mcl_tuning_entry_info {
    char origin[256];    /* the database file, or "built-in tuning database" */
    char level[16];      /* "device", "arch", "vendor" or "any device" */
    char family[32];
    char dtype[8];       /* "f32", ..., or "*" */
    char bucket[64];     /* "" for every bucket */
    char params[256];
    double ms, default_ms; /* NaN where the entry does not say */
    char measured_on[128];
    char command[256];
    int in_use;
} mcl_tuning_entry_info;

MCL_API size_t mcl_context_tuning_entry_count(mcl_context *context);
MCL_API mcl_status mcl_context_tuning_entry(mcl_context *context, size_t index, mcl_tuning_entry_info *info);

/* The user database's path (MEGACL_TUNING_DB, else <cache root>/tuning.json). */
MCL_API mcl_status mcl_tuning_db_path(char *out, size_t capacity);

/* Device time of everything the context enqueues between begin and end, from the first
 * command's start to the last command's end (event profiling; needs a profiling queue). end
 * waits for the commands to finish. */
MCL_API mcl_status mcl_profile_begin(mcl_context *context);
MCL_API mcl_status mcl_profile_end(mcl_context *context, double *milliseconds);

/* One command of a profiling window: the kernel it ran (megacl's kernel name, or the name given
 * to mcl_profile_add_named_event; "external" for mcl_profile_add_event's) and its device time.
 * Names are string literals: they stay valid after the window closes. */
typedef struct mcl_profile_kernel {
    const char *name;
    double milliseconds;
} mcl_profile_kernel;

/* mcl_profile_end that also reports each command of the window in the order it was enqueued:
 * the first `capacity` into `kernels`, how many there were in *count (for a per-kernel
 * breakdown of a timed call). */
MCL_API mcl_status mcl_profile_end_kernels(mcl_context *context, double *milliseconds,
                                           mcl_profile_kernel *kernels, size_t capacity,
                                           size_t *count);

/* Counts a command the caller enqueued on the context's queue itself (a CLBlast call, say) in
 * the open profiling window; outside a window it does nothing. The context retains the event. */
MCL_API mcl_status mcl_profile_add_event(mcl_context *context, cl_event event);
/* The same, naming the command for mcl_profile_end_kernels (`name`: a string literal). */
MCL_API mcl_status mcl_profile_add_named_event(mcl_context *context, cl_event event,
                                               const char *name);

#endif /* MCL_EXPERIMENTAL */

#ifdef __cplusplus
}
#endif
#endif /* MEGACL_H */
