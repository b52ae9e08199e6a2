/* The unfused baselines' dense GEMMs: CLBlast's SGEMM on the context's queue, each command
 * counted in the bench's profiling window. */
#include "bench.h"

#include <clblast_c.h>
#include <stdio.h>

mcl_status bench_sgemm(mcl_context *ctx, int trans_a, int trans_b, size_t m, size_t n, size_t k, cl_mem a,
                       size_t lda, cl_mem b, size_t ldb, cl_mem c, size_t ldc)
{
    cl_command_queue queue = mcl_context_queue(ctx);
    cl_event event = NULL;
    CLBlastStatusCode code =
        CLBlastSgemm(CLBlastLayoutRowMajor, trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
                     trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, 1.0f, a, 0, lda, b, 0, ldb, 0.0f,
                     c, 0, ldc, &queue, &event);
    if (code != CLBlastSuccess) {
        fprintf(stderr, "CLBlastSgemm(%zu x %zu x %zu) failed: status %d\n", m, n, k, (int)code);
        return code == CLBlastTempBufferAllocFailure || code == CLBlastOpenCLOutOfResources ? MCL_ERR_OUT_OF_MEMORY
                                                                                        : MCL_ERR_OPENCL;
    }
    mcl_status status = mcl_profile_add_event(ctx, event);
    clReleaseEvent(event);
    return status;
}
