/* The flags the host passes to the kernels of cl/gemm/ (lib/ops/gemm/gemm.c sets them). */
#define GEMM_HAS_GAMMA 1u   /* LayerNorm on A: its weight is given */
#define GEMM_HAS_BETA 2u    /* LayerNorm on A: its bias is given */
#define GEMM_HAS_BIAS 4u    /* C gets a bias per column */
#define GEMM_PARTIAL 8u     /* write fp32 partials of this split instead of C */
#define GEMM_ACCUMULATE 16u /* with GEMM_PARTIAL: add to the slot's partials */
#define GEMM_HAS_RESIDUAL 32u /* C gets a residual added, a matrix laid out as C */
