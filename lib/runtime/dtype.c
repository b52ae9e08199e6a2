/* Storage dtypes. */
#include "dtype.h"

#include <math.h>
#include <string.h>

size_t mcl_dtype_size(mcl_dtype dtype)
{
    switch (dtype) {
    case MCL_F32: return 4;
    case MCL_BF16:
    case MCL_F16: return 2;
    }
    return 0;
}

const char *mcl_dtype_name(mcl_dtype dtype)
{
    switch (dtype) {
    case MCL_F32: return "f32";
    case MCL_BF16: return "bf16";
    case MCL_F16: return "f16";
    }
    return "?";
}

static float bits_to_float(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* IEEE binary16: subnormals scaled by 2^-24, infinities and NaN kept. */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    if (exponent == 0) {
        float magnitude = ldexpf((float)mantissa, -24);
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 31) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));
    return bits_to_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

void mcl_dtype_to_float(mcl_dtype dtype, const void *src, float *dst, size_t n)
{
    const uint16_t *half = src;
    switch (dtype) {
    case MCL_F32: memcpy(dst, src, n * sizeof *dst); break;
    case MCL_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = bits_to_float((uint32_t)half[i] << 16);
        break;
    case MCL_F16:
        for (size_t i = 0; i < n; i++) dst[i] = half_to_float(half[i]);
        break;
    }
}

void mcl_dtype_nan(mcl_dtype dtype, unsigned char out[4])
{
    const uint32_t f32 = 0x7fc00000u;
    const uint16_t bf16 = 0x7fc0, f16 = 0x7e00;
    if (dtype == MCL_F32) memcpy(out, &f32, 4);
    else memcpy(out, dtype == MCL_BF16 ? &bf16 : &f16, 2);
}

int mcl_dtype_takes_mma(mcl_dtype dtype, int tf32_allowed) { return dtype != MCL_F32 || tf32_allowed; }
