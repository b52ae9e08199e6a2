/* LayerNorm over a [4, 256] tensor with megacl: the README's example. */
#include <megacl.h>
#include <stdio.h>

int main(void)
{
    enum { ROWS = 4, COLS = 256 };
    float x[ROWS * COLS], y[ROWS * COLS];
    for (int i = 0; i < ROWS * COLS; i++) x[i] = (float)(i % 17) - 8.0f;

    mcl_context *ctx;
    mcl_status status = mcl_context_create(NULL, &ctx); /* MEGACL_DEVICE, else a GPU, else CPU */
    if (status != MCL_OK) {
        fprintf(stderr, "%s: %s\n", mcl_status_name(status), mcl_last_error());
        return 1;
    }
    cl_context cl = mcl_context_cl_context(ctx);
    cl_mem xbuf = clCreateBuffer(cl, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof x, x, NULL);
    cl_mem ybuf = clCreateBuffer(cl, CL_MEM_WRITE_ONLY, sizeof y, NULL, NULL);

    mcl_layernorm_desc desc = {.rows = ROWS, .cols = COLS, .dtype = MCL_F32, .eps = 1e-5f};
    mcl_layernorm_fwd_tensors t = {.x = {xbuf, 0}, .y = {ybuf, 0}}; /* no weight, bias or stats */
    status = mcl_layernorm_forward(ctx, &desc, &t, NULL);
    if (status == MCL_OK)
        clEnqueueReadBuffer(mcl_context_queue(ctx), ybuf, CL_TRUE, 0, sizeof y, y, 0, NULL, NULL);
    else
        fprintf(stderr, "%s: %s\n", mcl_status_name(status), mcl_last_error());

    if (status == MCL_OK) printf("y[0..3] = %.4f %.4f %.4f %.4f on %s\n", y[0], y[1], y[2], y[3],
                                 mcl_context_device(ctx)->name);
    clReleaseMemObject(xbuf);
    clReleaseMemObject(ybuf);
    mcl_context_release(ctx);
    return status == MCL_OK ? 0 : 1;
}
