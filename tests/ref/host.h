/* Host-side helpers shared by the tests and `megacl bench`: random data, storage conversion
 * (round to nearest even, as the kernels do), device transfers and error norms. */
#ifndef MCL_TESTS_HOST_H
#define MCL_TESTS_HOST_H

#include "megacl.h"

#include <stddef.h>
#include <stdint.h>

/* xorshift64*: fresh data per seed; seed 0 is replaced by a fixed non-zero value */
typedef struct host_rng {
    uint64_t state;
} host_rng;

host_rng host_rng_seeded(uint64_t seed);
float host_uniform(host_rng *rng, float lo, float hi);
void host_fill_uniform(host_rng *rng, float *x, size_t n, float lo, float hi);

/* n uniform values in [lo, hi) already rounded to `dtype` (malloc'd; NULL if out of memory). */
float *host_random(host_rng *rng, mcl_dtype dtype, size_t n, float lo, float hi);

/* Rounds every value to what `dtype` storage holds, so references see the device's inputs. */
void host_quantize(mcl_dtype dtype, float *x, size_t n);

/* float <-> storage bytes (n elements). */
void host_to_storage(mcl_dtype dtype, const float *src, void *dst, size_t n);
void host_from_storage(mcl_dtype dtype, const void *src, float *dst, size_t n);

/* A device buffer holding `n` elements of `dtype` converted from `src` (NULL: poisoned). */
cl_mem host_upload(mcl_context *ctx, mcl_dtype dtype, const float *src, size_t n);
/* Fills a buffer with NaN in its dtype, so an element the op fails to write shows. */
void host_poison(mcl_context *ctx, cl_mem mem, mcl_dtype dtype, size_t n);
/* Reads n elements back as floats (blocking). */
void host_download(mcl_context *ctx, cl_mem mem, mcl_dtype dtype, float *dst, size_t n);

/* The tolerance the design card sets for a dtype's storage (fp32 arithmetic inside). */
double host_tolerance(mcl_dtype dtype);

#endif
