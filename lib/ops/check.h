/* Validation shared by every op: each tensor argument is checked against the shape and dtype
 * the op's descriptor gives it, before anything is enqueued. */
#ifndef MCL_OPS_CHECK_H
#define MCL_OPS_CHECK_H

#include "../runtime/context.h"

#define MCL_MAX_DIMS 6
#define MCL_MAX_TENSORS 32 /* tensor arguments of one op call */

typedef struct mcl_tensor_check {
    const char *name;
    const mcl_tensor *tensor;
    int required;
    int is_output;
    size_t elem_size;
    const char *dtype_name;
    size_t dims[MCL_MAX_DIMS];
    int ndims;
    const char *may_alias; /* name of an input this output may exactly alias (in place) */
} mcl_tensor_check;

/* Checks presence, offset alignment, element-count overflow, the buffer's context and size,
 * and that no output overlaps another tensor. Messages start with `op`. */
mcl_status mcl_check_tensors(mcl_context *ctx, const char *op, const mcl_tensor_check *checks,
                             size_t count);

/* a * b, failing with MCL_ERR_SIZE_OVERFLOW naming `what` */
mcl_status mcl_mul_size(size_t a, size_t b, size_t *out, const char *op, const char *what);

/* The widest vector (<= 8 elements) every given tensor's offset is aligned to. */
unsigned mcl_offset_vec_limit(size_t elem_size, const mcl_tensor *const *tensors, size_t n);

/* true if the tensor is given */
static inline int mcl_has(const mcl_tensor *t) { return t->mem != NULL; }

/* The element offset a kernel receives for a tensor (0 for an absent one). */
static inline cl_ulong mcl_elem_offset(const mcl_tensor *t, size_t elem_size)
{
    return t->mem ? (cl_ulong)(t->offset / elem_size) : 0;
}

#endif
