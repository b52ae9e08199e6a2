/* Test helpers (see common.h). */
#include "common.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *test_selector(void)
{
    const char *env = getenv("MEGACL_DEVICE");
    return env && *env ? env : "pocl";
}

mcl_context *test_context(void)
{
    mcl_context *ctx = NULL;
    mcl_status status = mcl_context_create(test_selector(), &ctx);
    cr_assert_eq(status, MCL_OK, "no context on '%s': %s: %s", test_selector(),
                 mcl_status_name(status), mcl_last_error());
    return ctx;
}

cl_mem test_buffer(mcl_context *ctx, size_t bytes, unsigned char byte)
{
    cl_int err;
    cl_mem mem = clCreateBuffer(mcl_context_cl_context(ctx), CL_MEM_READ_WRITE, bytes, NULL, &err);
    cr_assert_eq(err, CL_SUCCESS, "clCreateBuffer(%zu) failed: %d", bytes, err);
    err = clEnqueueFillBuffer(mcl_context_queue(ctx), mem, &byte, 1, 0, bytes, 0, NULL, NULL);
    cr_assert_eq(err, CL_SUCCESS);
    clFinish(mcl_context_queue(ctx));
    return mem;
}

void *test_read_all(mcl_context *ctx, cl_mem mem, size_t bytes)
{
    void *data = malloc(bytes);
    cr_assert_not_null(data);
    cl_int err = clEnqueueReadBuffer(mcl_context_queue(ctx), mem, CL_TRUE, 0, bytes, data, 0, NULL, NULL);
    cr_assert_eq(err, CL_SUCCESS);
    return data;
}

uint64_t test_seed(void)
{
    const char *env = getenv("MEGACL_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0)
                        : (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid() << 16;
    cr_log_info("seed %llu (MEGACL_TEST_SEED reproduces it)", (unsigned long long)seed);
    return seed;
}
