/* Host-side helpers (see host.h). */
#include "host.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

host_rng host_rng_seeded(uint64_t seed)
{
    return (host_rng){seed ? seed : 0x9e3779b97f4a7c15ull};
}

static uint64_t next_u64(host_rng *rng)
{
    uint64_t x = rng->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng->state = x;
    return x * 0x2545f4914f6cdd1dull;
}

float host_uniform(host_rng *rng, float lo, float hi)
{
    double u = (double)(next_u64(rng) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

void host_fill_uniform(host_rng *rng, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) x[i] = host_uniform(rng, lo, hi);
}

float *host_random(host_rng *rng, mcl_dtype dtype, size_t n, float lo, float hi)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (!x) return NULL;
    host_fill_uniform(rng, x, n, lo, hi);
    host_quantize(dtype, x, n);
    return x;
}

static uint16_t float_to_bf16(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    if (isnan(v)) return 0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float bf16_to_float(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* IEEE binary16, round to nearest even (subnormals, overflow to infinity, NaN kept). */
static uint16_t float_to_f16(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    uint32_t sign = (u >> 16) & 0x8000u, abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (abs < 0x38800000u) {                                   /* subnormal or zero in f16 */
        /* scale so the f16 subnormal step (2^-24) becomes one integer unit, then round */
        float scaled;
        uint32_t a = abs;
        memcpy(&scaled, &a, sizeof scaled);
        scaled *= 16777216.0f; /* 2^24, exact */
        uint32_t units = (uint32_t)scaled;
        float rest = scaled - (float)units;
        if (rest > 0.5f || (rest == 0.5f && (units & 1u))) units++;
        return (uint16_t)(sign | units);
    }
    uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
    return (uint16_t)(sign | ((rounded - 0x38000000u) >> 13));
}

static float f16_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    float v;
    if (exp == 0) {
        v = (float)mant * (1.0f / 16777216.0f); /* subnormal: mant x 2^-24 */
        uint32_t u;
        memcpy(&u, &v, sizeof u);
        u |= sign;
        memcpy(&v, &u, sizeof v);
        return v;
    }
    uint32_t u = sign | (exp == 31 ? 0x7f800000u | (mant << 13) : ((exp + 112u) << 23) | (mant << 13));
    memcpy(&v, &u, sizeof v);
    return v;
}

void host_to_storage(mcl_dtype dtype, const float *src, void *dst, size_t n)
{
    if (dtype == MCL_F32) {
        memcpy(dst, src, n * sizeof(float));
    } else if (dtype == MCL_BF16) {
        uint16_t *out = dst;
        for (size_t i = 0; i < n; i++) out[i] = float_to_bf16(src[i]);
    } else {
        uint16_t *out = dst;
        for (size_t i = 0; i < n; i++) out[i] = float_to_f16(src[i]);
    }
}

void host_from_storage(mcl_dtype dtype, const void *src, float *dst, size_t n)
{
    if (dtype == MCL_F32) {
        memcpy(dst, src, n * sizeof(float));
    } else if (dtype == MCL_BF16) {
        const uint16_t *in = src;
        for (size_t i = 0; i < n; i++) dst[i] = bf16_to_float(in[i]);
    } else {
        const uint16_t *in = src;
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_float(in[i]);
    }
}

void host_quantize(mcl_dtype dtype, float *x, size_t n)
{
    if (dtype == MCL_F32) return;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits; /* room for any dtype; 16-bit ones use the first two bytes */
        host_to_storage(dtype, &x[i], &bits, 1);
        host_from_storage(dtype, &bits, &x[i], 1);
    }
}

cl_mem host_upload(mcl_context *ctx, mcl_dtype dtype, const float *src, size_t n)
{
    size_t bytes = n * mcl_dtype_size(dtype);
    cl_int err;
    cl_mem mem = clCreateBuffer(mcl_context_cl_context(ctx), CL_MEM_READ_WRITE, bytes ? bytes : 1,
                                NULL, &err);
    if (err != CL_SUCCESS) return NULL;
    if (!src) {
        host_poison(ctx, mem, dtype, n);
        return mem;
    }
    void *staging = malloc(bytes ? bytes : 1);
    host_to_storage(dtype, src, staging, n);
    clEnqueueWriteBuffer(mcl_context_queue(ctx), mem, CL_TRUE, 0, bytes, staging, 0, NULL, NULL);
    free(staging);
    return mem;
}

void host_poison(mcl_context *ctx, cl_mem mem, mcl_dtype dtype, size_t n)
{
    float nan_value = NAN;
    unsigned char pattern[4];
    host_to_storage(dtype, &nan_value, pattern, 1);
    size_t size = mcl_dtype_size(dtype);
    if (n) clEnqueueFillBuffer(mcl_context_queue(ctx), mem, pattern, size, 0, n * size, 0, NULL, NULL);
    clFinish(mcl_context_queue(ctx));
}

void host_download(mcl_context *ctx, cl_mem mem, mcl_dtype dtype, float *dst, size_t n)
{
    size_t bytes = n * mcl_dtype_size(dtype);
    void *staging = malloc(bytes ? bytes : 1);
    clEnqueueReadBuffer(mcl_context_queue(ctx), mem, CL_TRUE, 0, bytes, staging, 0, NULL, NULL);
    host_from_storage(dtype, staging, dst, n);
    free(staging);
}

double host_tolerance(mcl_dtype dtype)
{
    switch (dtype) {
    case MCL_F32: return 1e-5;
    case MCL_BF16: return 2e-2;
    case MCL_F16: return 3e-3;
    }
    return 0.0;
}
