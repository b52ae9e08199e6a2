/* Test helpers (see common.h). */
#include "common.h"

#include <math.h>
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

/* ---- tensors inside larger buffers ------------------------------------------------------ */

const char *const test_offset_names[OFF_MODES] = {"0", "8k", "odd", "mixed"};

/* Element offset of a call's i-th tensor: 0, multiples of 8, odd, or the two kinds mixed. */
size_t test_offset_of(int mode, int i)
{
    size_t k = (size_t)i;
    switch (mode) {
    case OFF_VEC: return 8 * (k + 1);
    case OFF_ODD: return 2 * k + 1;
    case OFF_MIXED: return k % 2 ? 2 * k + 1 : 8 * (k + 1);
    }
    return 0;
}

/* A buffer of TEST_POISON bytes with src's n elements (none if src is NULL) at element offset off. */
cl_mem test_place(mcl_context *ctx, mcl_dtype dt, const float *src, size_t n, size_t off)
{
    size_t es = mcl_dtype_size(dt);
    cl_mem mem = test_buffer(ctx, (off + n + TEST_GUARD) * es, TEST_POISON);
    if (src) {
        void *bytes = malloc(n * es);
        host_to_storage(dt, src, bytes, n);
        cl_int err = clEnqueueWriteBuffer(mcl_context_queue(ctx), mem, CL_TRUE, off * es, n * es,
                                          bytes, 0, NULL, NULL);
        cr_assert_eq(err, CL_SUCCESS);
        free(bytes);
    }
    return mem;
}

/* The n elements at off as floats; every byte around them must still be TEST_POISON. */
float *test_fetch(mcl_context *ctx, cl_mem mem, mcl_dtype dt, size_t n, size_t off,
                    const char *label, const char *what)
{
    size_t es = mcl_dtype_size(dt), lo = off * es, hi = lo + n * es, total = hi + TEST_GUARD * es;
    unsigned char *bytes = test_read_all(ctx, mem, total);
    size_t stray = 0, first = 0;
    for (size_t j = total; j-- > 0;)
        if ((j < lo || j >= hi) && bytes[j] != TEST_POISON) stray++, first = j;
    cr_expect_eq(stray, 0, "%s: %s: %zu bytes outside the tensor written, the first at byte %zu "
                 "(tensor bytes [%zu, %zu))", label, what, stray, first, lo, hi);
    float *out = malloc(n * sizeof *out);
    host_from_storage(dt, bytes + lo, out, n);
    free(bytes);
    return out;
}

/* Every element within tol * (|ref| + 1): storage rounding, plus fp32 cancellation near 0. */
void test_expect_close(const char *label, const char *what, const float *out, const double *ref,
                         size_t n, mcl_dtype dt)
{
    double tol = host_tolerance(dt), worst_ratio = 0.0;
    size_t bad = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        double ratio = fabs(out[i] - ref[i]) / (tol * (fabs(ref[i]) + 1.0));
        if (!(ratio <= 1.0)) {
            if (isnan(ratio)) ratio = INFINITY;
            if (!bad++ || ratio > worst_ratio) worst = i, worst_ratio = ratio;
        }
    }
    cr_expect_eq(bad, 0, "%s: %s: %zu of %zu elements off; worst at %zu: got %.9g, expected %.9g "
                 "(tol %.1g)", label, what, bad, n, worst, (double)out[worst], ref[worst], tol);
}

/* A gate far out in sigmoid's tails (where exp overflows in fp32), rounded to dt. */
float test_extreme(host_rng *rng, mcl_dtype dt)
{
    static const float mags[] = {8.0f, 20.0f, 40.0f, 100.0f, 1e4f};
    float v = mags[(size_t)host_uniform(rng, 0.0f, 4.999f)] * (host_uniform(rng, -1, 1) < 0 ? -1 : 1);
    host_quantize(dt, &v, 1);
    return v;
}
