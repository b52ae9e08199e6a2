/* Validation shared by every op: each tensor argument is checked against the shape and dtype
 * the op's descriptor gives it, before anything is enqueued. Also the offsets and size
 * arithmetic the ops' plans share. */
#ifndef MCL_OPS_CHECK_H
#define MCL_OPS_CHECK_H

#include "runtime/context.h"
#include "runtime/error.h"
#include "runtime/family.h"

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
    const char *needs;     /* name of a tensor that must be given when this one is */
} mcl_tensor_check;

/* What a tensor argument is to the op. */
enum { MCL_OPTIONAL_IN = 0, MCL_REQUIRED_IN = 1, MCL_OPTIONAL_OUT = 2, MCL_REQUIRED_OUT = 3 };

/* The check of tensor `t` called `name` for an op: of `dtype` storage, `role` one of the above,
 * shape the sizes that follow: MCL_TENSOR("x", &t->x, d->dtype, MCL_REQUIRED_IN, d->rows, cols). */
#define MCL_TENSOR(name, t, dtype, role, ...)                                                  \
    mcl_tensor_check_of(name, t, dtype, role, (const size_t[]){__VA_ARGS__},                   \
                        MCL_COUNT(((const size_t[]){__VA_ARGS__})))

static inline mcl_tensor_check mcl_tensor_check_of(const char *name, const mcl_tensor *t, mcl_dtype dtype, int role,
                                                   const size_t *dims, size_t ndims)
{
    mcl_tensor_check c = {name, t, role & 1, role >> 1, mcl_dtype_size(dtype), mcl_dtype_name(dtype), {0},
                          (int)ndims, NULL, NULL};
    for (size_t i = 0; i < ndims && i < MCL_MAX_DIMS; i++) c.dims[i] = dims[i];
    return c;
}

/* Check c, its output allowed to be exactly the input called `input` (an in-place call). */
static inline mcl_tensor_check mcl_in_place_of(mcl_tensor_check c, const char *input)
{
    c.may_alias = input;
    return c;
}

/* Check c, the tensor allowed only together with the one called `other`. */
static inline mcl_tensor_check mcl_needing(mcl_tensor_check c, const char *other)
{
    c.needs = other;
    return c;
}

/* Checks that an op whose outputs are all optional is asked for one; each tensor's presence,
 * offset alignment, element-count overflow, buffer context and size; that every given tensor's
 * `needs` is given; and that no output overlaps another tensor. Messages start with `op`. */
mcl_status mcl_check_tensors(mcl_context *ctx, const char *op, const mcl_tensor_check *checks,
                             size_t count);

/* On-demand tuning (MEGACL_TUNE=ondemand, lib/tune/ondemand.c): before a validated call runs,
 * each shape bucket it looks up that no database or override covers is tuned on this very call,
 * rerun through `again`, and the winner stored in the user database. A call with an output in
 * place of an input cannot be rerun and is not tuned. Returns MCL_OK whatever the tuning did
 * (a failed tuning costs a warning, never the call). */
typedef mcl_status (*mcl_call_again)(mcl_context *ctx, const void *desc, const void *tensors);
mcl_status mcl_tune_on_demand(mcl_context *ctx, const char *op, mcl_call_again again, const void *desc,
                              const void *tensors);

/* Defines <entry>_again, the mcl_call_again of a public entry point. */
#define MCL_CALL_AGAIN(entry)                                                                    \
    static mcl_status entry##_again(mcl_context *ctx, const void *desc, const void *tensors)    \
    {                                                                                            \
        return entry(ctx, desc, tensors, NULL);                                                  \
    }

/* The public entry point mcl_<op>_<pass> (its descriptor d, its tensors t of kind fwd or bwd),
 * after the mcl_call_again that on-demand tuning reruns it through. */
#define MCL_ENTRY_POINT(op, pass, kind)                                                          \
    MCL_CALL_AGAIN(mcl_##op##_##pass)                                                            \
    mcl_status mcl_##op##_##pass(mcl_context *ctx, const mcl_##op##_desc *d,                      \
                                 const mcl_##op##_##kind##_tensors *t, cl_event *event)

/* How every entry point's body starts: MCL_VALIDATE_CALL with the op's validate_desc and the
 * tensor checks that follow, then on-demand tuning of the call. */
#define MCL_ENTER(op, pass, validate_desc, ...)                                                  \
    do {                                                                                         \
        MCL_VALIDATE_CALL(#op "_" #pass, ctx, d, t, validate_desc, __VA_ARGS__);                 \
        MCL_TRY(mcl_tune_on_demand(ctx, #op "_" #pass, mcl_##op##_##pass##_again, d, t));        \
    } while (0)

/* MCL_ERR_NULL_POINTER naming the op unless the context, descriptor and tensors are given. */
mcl_status mcl_check_call(const char *op, const void *ctx, const void *desc, const void *tensors);

/* What every entry point checks before anything else, each failure returned with a message that
 * starts with `op`: the context, descriptor and tensors given (mcl_check_call), the descriptor
 * (validate_desc(desc, op), the op's own function), then the tensors: mcl_check_tensors over
 * the mcl_tensor_checks that follow, built only once the pointers they read are known to be
 * given. */
#define MCL_VALIDATE_CALL(op, ctx, desc, tensors, validate_desc, ...)                            \
    do {                                                                                         \
        MCL_TRY(mcl_check_call(op, ctx, desc, tensors));                                         \
        MCL_TRY(validate_desc(desc, op));                                                        \
        const mcl_tensor_check mcl_checks_[] = {__VA_ARGS__};                                    \
        MCL_TRY(mcl_check_tensors(ctx, op, mcl_checks_, MCL_COUNT(mcl_checks_)));                \
    } while (0)

/* MCL_ERR_UNSUPPORTED_DTYPE unless dtype is f32, bf16 or f16. */
mcl_status mcl_check_dtype(mcl_dtype dtype, const char *op);

/* MCL_ERR_INVALID_ARGUMENT unless a LayerNorm's eps is finite and >= 0. */
mcl_status mcl_check_eps(float eps, const char *op);

/* MCL_ERR_INVALID_ARGUMENT unless the descriptor's field `what` holds one of the two values of
 * its enum, `names` in words: "silu_half 2 is not MCL_SWIGLU_SILU_FIRST or _SECOND". */
mcl_status mcl_check_either(int value, int first, int second, const char *op, const char *what, const char *names);

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

static inline size_t mcl_ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }
static inline size_t mcl_round_up(size_t a, size_t to) { return mcl_ceil_div(a, to) * to; }

#endif
