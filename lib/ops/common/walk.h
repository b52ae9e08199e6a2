/* A composite op's sequence of steps, written once as one function and walked twice: a sizing
 * pass records how many bytes each part of the workspace must hold (every step asks for its
 * parts, and planning a GEMM says what its split partials take), then, once the workspace is
 * taken, an enqueue pass runs the same steps with the parts at their offsets. Sizing the
 * workspace and running the op cannot drift apart, and an error inside a step names the op and
 * the step ("trimul_backward: dW_in GEMM: ..."). */
#ifndef MCL_OPS_WALK_H
#define MCL_OPS_WALK_H

#include "ops/common/check.h"
#include "runtime/context.h"

#define MCL_WALK_MAX_PARTS 16

typedef struct mcl_walk {
    mcl_context *ctx;
    const char *op;  /* "trimul_backward" */
    int enqueue;     /* 0 in the sizing pass */
    size_t bytes[MCL_WALK_MAX_PARTS];
    size_t offsets[MCL_WALK_MAX_PARTS];
    cl_mem workspace; /* NULL when the steps take none */
} mcl_walk;

/* The steps of an op, given its arguments (an mcl_op_args, or the op's own struct). */
typedef mcl_status (*mcl_steps)(mcl_walk *walk, const void *args);

/* An op's descriptor and tensors struct, as its steps receive them. */
typedef struct mcl_op_args {
    const void *desc, *tensors;
} mcl_op_args;

/* Part `part` holding at least `bytes` bytes. The sizing pass grows the part and returns
 * {NULL, 0}; the enqueue pass returns its place in the workspace. Parts may be asked for by
 * several steps: they run one after another on the in-order queue and share its bytes. */
mcl_tensor mcl_walk_part(mcl_walk *walk, int part, size_t bytes);

/* The status of step `step`, a failure's message prefixed with the op's and the step's names
 * (the op's alone for a NULL step: an op of one step). */
mcl_status mcl_walk_step(const mcl_walk *walk, const char *step, mcl_status status);

/* The sizing pass alone: the workspace bytes the steps take. */
mcl_status mcl_walk_size(mcl_context *ctx, const char *op, mcl_steps steps, const void *args, size_t *bytes);

/* Both passes: sizes the parts, takes the workspace, enqueues the steps. */
mcl_status mcl_walk_run(mcl_context *ctx, const char *op, mcl_steps steps, const void *args);

/* An op's public entry point after validation: mcl_walk_run, then the op's last event to the
 * caller when asked for. */
mcl_status mcl_walk_op(mcl_context *ctx, const char *op, mcl_steps steps, const void *args, cl_event *event);

/* The public entry point mcl_<op>_<pass> of an op made of walks: MCL_ENTER with the op's
 * validate_desc and the tensor checks that follow (which see the call's descriptor as d and its
 * tensors as t), then <pass>_steps over an mcl_op_args. */
#define MCL_WALKED_ENTRY_POINT(op, pass, kind, ...)                                              \
    MCL_ENTRY_POINT(op, pass, kind)                                                              \
    {                                                                                            \
        MCL_ENTER(op, pass, validate_desc, __VA_ARGS__);                                         \
        return mcl_walk_op(ctx, #op "_" #pass, pass##_steps, &(mcl_op_args){d, t}, event);       \
    }

/* The public mcl_<op>_backward_workspace_size of an op made of walks: validate_desc, then the
 * sizing pass of backward_steps. */
#define MCL_WALKED_WORKSPACE_SIZE(op)                                                            \
    mcl_status mcl_##op##_backward_workspace_size(mcl_context *ctx, const mcl_##op##_desc *desc,   \
                                                  const mcl_##op##_bwd_tensors *tensors, size_t *bytes) \
    {                                                                                            \
        const char *name = #op "_backward_workspace_size";                                      \
        if (!ctx || !desc || !tensors || !bytes)                                                 \
            return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL argument", name);                    \
        MCL_TRY(validate_desc(desc, name));                                                      \
        return mcl_walk_size(ctx, name, backward_steps, &(mcl_op_args){desc, tensors}, bytes);   \
    }

/* The public mcl_<op>_workspace_size(ctx, desc, &forward_bytes, &backward_bytes) of an op made of
 * walks whose backward's steps take a bwd_args {desc, tensors, wants}: validate_desc, then the
 * sizing passes of forward_steps over no tensors and of backward_steps over no tensors with every
 * output wanted (`every_output`, the wants' value): the most the backward takes. */
#define MCL_WALKED_WORKSPACE_SIZES(op, every_output)                                              \
    mcl_status mcl_##op##_workspace_size(mcl_context *ctx, const mcl_##op##_desc *desc, size_t *forward_bytes, \
                                         size_t *backward_bytes)                                  \
    {                                                                                            \
        const char *name = #op "_workspace_size";                                               \
        if (!ctx || !desc || !forward_bytes || !backward_bytes)                                  \
            return mcl_fail(MCL_ERR_NULL_POINTER, "%s: NULL argument", name);                    \
        MCL_TRY(validate_desc(desc, name));                                                      \
        const mcl_##op##_fwd_tensors none_fwd = {0};                                             \
        const mcl_##op##_bwd_tensors none_bwd = {0};                                             \
        MCL_TRY(mcl_walk_size(ctx, name, forward_steps, &(mcl_op_args){desc, &none_fwd}, forward_bytes)); \
        return mcl_walk_size(ctx, name, backward_steps, &(bwd_args){desc, &none_bwd, every_output}, backward_bytes); \
    }

#endif
