/* The unfused baselines' dense products and transposes: CLBlast on the context's queue, each
 * command counted in the bench's profiling window. */
#include "bench.h"

#include <clblast_c.h>
#include <stdio.h>

/* The status of a CLBlast call; its event joins the profiling window. */
static mcl_status finish(mcl_context *ctx, CLBlastStatusCode code, cl_event event, const char *what)
{
    if (code != CLBlastSuccess) {
        fprintf(stderr, "%s failed: CLBlast status %d\n", what, (int)code);
        return code == CLBlastTempBufferAllocFailure || code == CLBlastOpenCLOutOfResources ? MCL_ERR_OUT_OF_MEMORY
                                                                                           : MCL_ERR_OPENCL;
    }
    mcl_status status = mcl_profile_add_event(ctx, event);
    clReleaseEvent(event);
    return status;
}

static CLBlastTranspose op(int trans) { return trans ? CLBlastTransposeYes : CLBlastTransposeNo; }

mcl_status bench_sgemm(mcl_context *ctx, int trans_a, int trans_b, size_t m, size_t n, size_t k, cl_mem a,
                       size_t lda, cl_mem b, size_t ldb, cl_mem c, size_t ldc)
{
    cl_command_queue queue = mcl_context_queue(ctx);
    cl_event event = NULL;
    CLBlastStatusCode code = CLBlastSgemm(CLBlastLayoutRowMajor, op(trans_a), op(trans_b), m, n, k, 1.0f, a, 0, lda,
                                          b, 0, ldb, 0.0f, c, 0, ldc, &queue, &event);
    return finish(ctx, code, event, "CLBlastSgemm");
}

mcl_status bench_sgemm_batched(mcl_context *ctx, int trans_a, int trans_b, size_t m, size_t n, size_t k, cl_mem a,
                               size_t lda, cl_mem b, size_t ldb, cl_mem c, size_t ldc, size_t batch)
{
    cl_command_queue queue = mcl_context_queue(ctx);
    cl_event event = NULL;
    CLBlastStatusCode code = CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, op(trans_a), op(trans_b), m, n, k, 1.0f, a, 0, lda, m * k, b, 0, ldb, k * n, 0.0f, c,
        0, ldc, m * n, batch, &queue, &event);
    return finish(ctx, code, event, "CLBlastSgemmStridedBatched");
}

mcl_status bench_transpose(mcl_context *ctx, size_t rows, size_t cols, cl_mem a, cl_mem b)
{
    cl_command_queue queue = mcl_context_queue(ctx);
    cl_event event = NULL;
    CLBlastStatusCode code =
        CLBlastSomatcopy(CLBlastLayoutRowMajor, CLBlastTransposeYes, rows, cols, 1.0f, a, 0, cols, b, 0, rows, &queue,
                         &event);
    return finish(ctx, code, event, "CLBlastSomatcopy");
}
