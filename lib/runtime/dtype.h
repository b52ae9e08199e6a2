/* Storage dtypes on the host side of the library: what the tuner needs to poison outputs and
 * read them back for comparison. */
#ifndef MCL_RUNTIME_DTYPE_H
#define MCL_RUNTIME_DTYPE_H

#include "megacl.h"

/* Converts n stored elements to float. */
void mcl_dtype_to_float(mcl_dtype dtype, const void *src, float *dst, size_t n);

/* The bytes of a quiet NaN in the dtype (the first mcl_dtype_size(dtype) of them). */
void mcl_dtype_nan(mcl_dtype dtype, unsigned char out[4]);

/* Whether calls of this dtype may take the tensor cores: 16-bit ones, and f32 ones in tf32 where
 * the context allows it (mcl_context_allow_tf32). */
int mcl_dtype_takes_mma(mcl_dtype dtype, int tf32_allowed);

#endif
